"""The contract every segmentation meta-architecture implements.

A model owns a feature extractor and heads, and exposes:
  preprocess   uint8/float images -> model input (per feature extractor)
  predict      model input -> dict of logits by head (aux heads in training)
  loss         predictions + labels -> dict of named, weighted losses
  postprocess  logits -> labels / probabilities at the input size
plus the layer lists that fine-tuning restores and freezing uses.

A meta-architecture is a subclass, registered under its field of the
`model` oneof of protos/model.proto. It stores its settings in __init__,
reads its own config fields in `kwargs_from_config`, and builds its layers in
`_build_heads`; the base class builds the Keras models after construction:

  @model.register("tiny_net")
  class TinyNet(model.SegmentationModel):
    def __init__(self, num_classes, ignore_label, feature_extractor,
                 conv_hyperparams, loss, binary_output=None, depth=64):
      super().__init__(num_classes, ignore_label, feature_extractor,
                       conv_hyperparams, loss, "tiny_net", binary_output)
      self.depth = depth

    @classmethod
    def kwargs_from_config(cls, config, field_path):
      return {"depth": config_checks.positive(config.depth,
                                              f"{field_path}.depth")}

    def _build_heads(self, images):
      x = self.feature_extractor.build(images)["stage5"]
      x = self.conv_bn(x, self.depth, 3, name="tiny_net_conv")
      return x, {fields.PredictionFields.logits:
                 self.classifier("tiny_net_classifier")(x)}

The memory-saving recomputation it can switch on lives in core/recompute.py.
"""

import abc
import collections
import math

import tensorflow as tf
import tf_keras as keras

from fast_seg.core import losses
from fast_seg.core import recompute
from fast_seg.core import registry
from fast_seg.core import standard_fields as fields
from fast_seg.protos import train_pb2

# Head name of the auxiliary binary target (Loss.auxiliary_target).
AUX_TARGET = "aux_target"

_ARCHITECTURES = registry.Registry("model")


def register(config_name):
  """Class decorator: the model builder builds this class for `config_name`.

  A new architecture is its module (the class, decorated) plus its message
  in protos/model.proto, added to the `model` oneof; no table to edit.

  Args:
    config_name: the class's field in the `model` oneof, e.g. 'icnet'.

  Returns:
    The decorator; it returns the class unchanged.

  Raises:
    ValueError: another class is registered under `config_name`.
  """
  def decorator(cls):
    _ARCHITECTURES.add(config_name, cls)
    return cls
  return decorator


def unregister(config_name):
  """Undoes register(config_name), e.g. after a test's toy architecture."""
  _ARCHITECTURES.remove(config_name)


def get(config_name):
  """The SegmentationModel class registered for a `model` oneof field."""
  return _ARCHITECTURES.get(config_name)


def registered_names():
  """Sorted `model` oneof fields that have a registered class."""
  return _ARCHITECTURES.names()


class BinaryOutput(collections.namedtuple(
    "BinaryOutput", ["foreground_class_ids", "threshold"])):
  """A single sigmoid channel: foreground vs background.

  foreground_class_ids: dataset ids that are foreground (empty: every id >= 1).
  threshold: sigmoid probability above which a pixel is foreground.
  """
  __slots__ = ()

  @classmethod
  def from_proto(cls, config):
    """From a BinaryOutput proto message (validated by the model builder)."""
    return cls(tuple(config.foreground_class_ids), config.threshold)

  def foreground_ids(self, num_classes):
    """The foreground dataset ids, the empty-means-every-id->=1 rule applied.

    This is the one place that rule is written; losses, metrics, class
    weights, palettes and names all ask here.
    """
    return tuple(self.foreground_class_ids) or tuple(range(1, num_classes))


class _BuiltAfterInit(abc.ABCMeta):
  """Calls `build()` on a new SegmentationModel once its __init__ returned.

  The whole __init__ chain runs first, so a subclass sets its attributes
  where it likes (usually after super().__init__) and the Keras models exist
  as soon as the constructor returns, whoever constructs the model.
  """

  def __call__(cls, *args, **kwargs):
    segmentation_model = super().__call__(*args, **kwargs)
    segmentation_model.build()
    return segmentation_model


class SegmentationModel(metaclass=_BuiltAfterInit):
  """Base class: builds a tf_keras functional model once and wraps it.

  A subclass stores its settings in `__init__` and implements
  `_build_heads(preprocessed_images)`, which returns `(features, heads)`:
  the tensor its main classifier reads and the dict of logits by head name
  (the main head's from `self.classifier(...)` under
  PredictionFields.logits, aux heads' likewise). `build()` runs once after
  construction and adds what every architecture shares: the auxiliary
  target's classifier on `features`, float32 outputs, and the training and
  inference Keras models.

  Config values are checked where they are read, naming the field: the
  shared ones by the model builder, the architecture's own by its
  `kwargs_from_config`. The constructors take them as given.
  """

  # Loss weight of each auxiliary head by head name, in the order that
  # Loss.aux_weights lists them.
  default_aux_weights = {}

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    """Constructor arguments from the architecture's own config fields.

    The model builder reads the fields every architecture message shares
    (num_classes, ignore_label, feature_extractor, hyperparams, loss,
    binary_output); this reads and checks the rest.

    Args:
      config: the architecture's proto message, e.g. model_pb2.ICNet.
      field_path: its place in the pipeline, e.g. 'model.icnet'.

    Returns:
      dict of keyword arguments for the constructor.

    Raises:
      ValueError: a bad value, naming its field.
    """
    del config, field_path  # An architecture without fields of its own.
    return {}

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, name, binary_output=None):
    self.num_classes = num_classes
    self.ignore_label = ignore_label
    self.binary_output = binary_output
    self.feature_extractor = feature_extractor
    self.conv_hyperparams = conv_hyperparams
    self.loss_fn = loss
    self.name = name
    self.classifier_layer_names = set()
    self.keras_model = None
    self.inference_model = None
    self._memory_saving = False
    self._recompute_plan = None

  @abc.abstractmethod
  def _build_heads(self, images):
    """Builds the architecture's layers on a KerasTensor.

    Args:
      images: the Keras input (preprocessed), [N, H, W, 3] float32.

    Returns:
      (features, heads): `features` is the tensor the main classifier reads
      (the auxiliary target's classifier reads it too); `heads` is
      {head name: logits}, the main logits under PredictionFields.logits.
    """

  def build(self):
    """Builds the Keras models; runs once, right after construction.

    The training model outputs every head that has a loss, the inference
    model the main head only (aux heads do not exist in exported graphs).

    Raises:
      ValueError: the model is already built.
      NotImplementedError: `_build_heads` returned no main logits, or no
        features where an auxiliary target is configured.
    """
    if self.keras_model is not None:
      raise ValueError(f"{self.name} is already built")
    inputs = keras.Input(shape=(None, None, 3), name="preprocessed_inputs")
    heads = self._heads_with_aux_target(
        self.feature_extractor.scale_input_channels(inputs))
    outputs = {head: keras.layers.Activation("linear", dtype="float32",
                                             name=f"{head}_float32")(t)
               for head, t in heads.items()}
    trained = {head: outputs[head] for head in self.loss_fn.head_weights}
    main = fields.PredictionFields.logits
    self.keras_model = keras.Model(inputs, trained, name=f"{self.name}_train")
    self.inference_model = keras.Model(inputs, outputs[main], name=self.name)

  def _heads_with_aux_target(self, inputs):
    features, heads = self._build_heads(inputs)
    heads = dict(heads)
    if fields.PredictionFields.logits not in heads:
      raise NotImplementedError(
          f"{type(self).__name__}._build_heads must return the main logits "
          f"under '{fields.PredictionFields.logits}'")
    if AUX_TARGET in self.loss_fn.head_weights:
      heads[AUX_TARGET] = self._classifier(
          f"{self.name}_aux_target_classifier", 1)(features)
    return heads

  def preprocess(self, images):
    """uint8 or float RGB images in 0..255 -> the feature extractor's input."""
    return self.feature_extractor.normalize_input(tf.cast(images, tf.float32))

  def predict(self, preprocessed_images, training=False):
    """Returns {head: logits}; only the main head unless training."""
    if training and self._memory_saving:
      return self._recompute_plan_for(self.keras_model).run(
          preprocessed_images, training=True)
    if training:
      return self.keras_model(preprocessed_images, training=True)
    return {fields.PredictionFields.logits:
            self.inference_model(preprocessed_images, training=False)}

  def enable_memory_saving(self):
    """Recomputes each feature-extractor stage in the backward pass.

    Afterwards predict(training=True) runs the same layers on the same
    variables, but each trunk stage is wrapped in tf.recompute_grad: only
    stage inputs and outputs are kept for the backward pass, and a stage's
    inner activations are recomputed when its gradient is needed (the TF1
    project's train_mem_saving.py). Outputs and gradients do not change;
    layers, names and weights do not either, so checkpoints are the same.
    The recomputation leaves batch-norm moving statistics alone: they are
    updated once per step, as without memory saving.

    Raises:
      ValueError: the training model's trunk has tfmot wrappers (pruning,
        quantization-aware training): their per-call state would be
        updated again by the recomputation.
    """
    self._recompute_plan_for(self.keras_model)
    self._memory_saving = True

  @property
  def memory_saving(self):
    """Whether predict(training=True) recomputes the trunk stages."""
    return self._memory_saving

  def _recompute_plan_for(self, keras_model):
    # A shallow copy of this model with another keras_model (tfmot_lib)
    # gets a plan of its own.
    plan = self._recompute_plan
    if plan is None or plan.model is not keras_model:
      self._recompute_plan = recompute.RecomputePlan(
          keras_model, self.feature_extractor.stage_io)
    return self._recompute_plan

  def loss(self, prediction_dict, labels):
    """Returns {'<head>_loss': weighted loss} for every trained head."""
    return self.loss_fn(prediction_dict, labels)

  @property
  def is_binary(self):
    return self.binary_output is not None

  @property
  def output_num_classes(self):
    """Classes of the model's output and metrics: 2 if binary, else num_classes."""
    return 2 if self.is_binary else self.num_classes

  def metric_labels(self, labels):
    """Dataset labels as the output classes: 0 / 1 / ignore for binary models."""
    if not self.is_binary:
      return labels
    return losses.binary_targets(
        labels, self.binary_output.foreground_ids(self.num_classes),
        self.ignore_label)

  def output_class_names(self, class_names):
    """Names of the output classes given the dataset's class names."""
    if not self.is_binary or (self.num_classes == 2 and list(
        self.binary_output.foreground_class_ids) in ([], [1])):
      return list(class_names)
    ids = self.binary_output.foreground_ids(self.num_classes)
    foreground = "+".join(class_names[i] for i in ids)
    return [f"not {foreground}", foreground]

  def postprocess(self, logits, output_size, with_probabilities=False,
                  threshold=None):
    """Upsamples logits to `output_size` and takes the arg-max (or threshold).

    Args:
      logits: float [N, h, w, C] of the main head (C = 1 if binary).
      output_size: (height, width) of the input images.
      with_probabilities: also return the probabilities.
      threshold: binary models: overrides the configured threshold.

    Returns:
      dict with labels int32 [N, H, W] (and probabilities float32
      [N, H, W, C]: softmax, or the sigmoid map [N, H, W, 1] if binary).
    """
    logits = tf.image.resize(tf.cast(logits, tf.float32), output_size,
                             method="bilinear")
    result = {fields.PredictionFields.labels:
              self.labels_of(logits, threshold)}
    if with_probabilities:
      result[fields.PredictionFields.probabilities] = (
          tf.sigmoid(logits) if self.is_binary else tf.nn.softmax(logits))
    return result

  def labels_of(self, logits, threshold=None):
    """int32 labels [...] of float logits [..., C] where they are: the
    arg-max, or a binary model's threshold (`threshold` overrides it)."""
    if self.is_binary:
      threshold = self.binary_output.threshold if threshold is None else threshold
      # sigmoid(x) > t  <=>  x > log(t / (1 - t)): no sigmoid for the labels.
      logit_threshold = math.log(threshold / (1.0 - threshold))
      return tf.cast(logits[..., 0] > logit_threshold, tf.int32)
    return tf.argmax(logits, axis=-1, output_type=tf.int32)

  @property
  def backbone_layers(self):
    return list(self.feature_extractor.layers)

  def restore_layers(self, fine_tune_checkpoint_type):
    """Layers with weights that a fine-tune checkpoint of this type restores.

    CLASSIFICATION: the feature extractor only. SEGMENTATION: every layer but
    the classifiers, so a model of another dataset's classes can start from it.
    """
    if fine_tune_checkpoint_type == train_pb2.TrainConfig.CLASSIFICATION:
      candidates = self.backbone_layers
    else:
      candidates = [layer for layer in self.keras_model.layers
                    if layer.name not in self.classifier_layer_names]
    return [layer for layer in candidates if layer.weights]

  def _classifier(self, name, width, kernel_size=1, use_bias=True):
    self.classifier_layer_names.add(name)
    return keras.layers.Conv2D(
        width, kernel_size, padding="same" if kernel_size > 1 else "valid",
        use_bias=use_bias, name=name,
        kernel_initializer=self.conv_hyperparams.initializer(),
        kernel_regularizer=self.conv_hyperparams.regularizer)

  def classifier(self, name, kernel_size=1, use_bias=True):
    """A conv (1x1 with bias unless told): num_classes logits, or 1 if the
    model is binary."""
    return self._classifier(name, 1 if self.is_binary else self.num_classes,
                            kernel_size, use_bias)

  def separable_conv_bn(self, x, filters, name, dilation_rate=1,
                        relu_max=None):
    """Depthwise 3x3 (dilated) + BN + ReLU, then 1x1 conv to `filters` + BN +
    ReLU: the mobile models' cheap 3x3 conv, split so each half is prunable.
    Both ReLUs are capped at relu_max if given (6.0: ReLU6)."""
    x = self.conv_hyperparams.depthwise_conv2d(
        3, name=f"{name}_depthwise", dilation_rate=dilation_rate)(x)
    x = self.conv_hyperparams.batch_norm(name=f"{name}_depthwise_bn")(x)
    x = keras.layers.ReLU(max_value=relu_max, name=f"{name}_depthwise_relu")(x)
    return self.conv_bn(x, filters, 1, name=f"{name}_pointwise",
                        relu_max=relu_max)

  def conv_bn(self, x, filters, kernel_size, name, strides=1, dilation_rate=1,
              relu=True, relu_max=None, relu_before_bn=False, use_bias=False):
    """conv -> batch norm (-> ReLU, capped at relu_max if given: 6.0 is
    ReLU6) with the model's hyperparams; relu_before_bn: conv -> ReLU ->
    batch norm, as Keras models that give the conv the activation."""
    x = self.conv_hyperparams.conv2d(filters, kernel_size, name=name,
                                     strides=strides, use_bias=use_bias,
                                     dilation_rate=dilation_rate)(x)
    if relu and relu_before_bn:
      x = keras.layers.ReLU(max_value=relu_max, name=f"{name}_relu")(x)
      return self.conv_hyperparams.batch_norm(name=f"{name}_bn")(x)
    x = self.conv_hyperparams.batch_norm(name=f"{name}_bn")(x)
    if relu:
      x = keras.layers.ReLU(max_value=relu_max, name=f"{name}_relu")(x)
    return x
