"""The contract every segmentation meta-architecture implements.

A model owns a feature extractor and heads, and exposes:
  preprocess   uint8/float images -> model input (per feature extractor)
  predict      model input -> dict of logits by head (aux heads in training)
  loss         predictions + labels -> dict of named, weighted losses
  postprocess  logits -> labels / probabilities at the input size
plus the layer lists that fine-tuning restores and freezing uses.
"""

import abc
import collections
import contextlib
import math

import tensorflow as tf
import tf_keras as keras

from fast_seg.core import losses
from fast_seg.core import standard_fields as fields
from fast_seg.protos import train_pb2

# Head name of the auxiliary binary target (Loss.auxiliary_target).
AUX_TARGET = "aux_target"

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


class SegmentationModel(abc.ABC):
  """Base class: builds a tf_keras functional model once and wraps it.

  Subclasses implement `_build_heads(preprocessed_images)` returning the
  dict of logits by head name; the main head's logits come from
  `self.main_head(features, name)` and aux heads' from `self.classifier(name)`,
  so binary outputs and the auxiliary target work for every architecture.
  """

  def __init__(self, num_classes, ignore_label, feature_extractor, conv_hyperparams,
               loss, name, binary_output=None):
    if num_classes is None or num_classes < 1:
      raise ValueError(f"model.{name}.num_classes must be >= 1, got {num_classes}")
    if 0 <= ignore_label < num_classes:
      raise ValueError(
          f"model.{name}.ignore_label ({ignore_label}) is a class id "
          f"(num_classes is {num_classes}); use a value outside 0..{num_classes - 1}")
    self.num_classes = num_classes
    self.ignore_label = ignore_label
    self.binary_output = binary_output
    self.feature_extractor = feature_extractor
    self.conv_hyperparams = conv_hyperparams
    self.loss_fn = loss
    self.name = name
    self.classifier_layer_names = set()
    self._main_features = None
    self._memory_saving = False
    self._recompute_plan = None
    inputs = keras.Input(shape=(None, None, 3), name="preprocessed_inputs")
    outputs = self._build_heads(inputs)
    if self._main_features is None:
      raise NotImplementedError(
          f"{type(self).__name__}._build_heads must make its main logits with "
          "self.main_head(features, name)")
    if AUX_TARGET in loss.head_weights:
      outputs[AUX_TARGET] = self._classifier(
          f"{name}_aux_target_classifier", 1)(self._main_features)
    outputs = {head: keras.layers.Activation("linear", dtype="float32",
                                             name=f"{head}_float32")(t)
               for head, t in outputs.items()}
    trained = {head: outputs[head] for head in loss.head_weights}
    main = fields.PredictionFields.logits
    # Training model: every head with a loss; inference model: main head only.
    self.keras_model = keras.Model(inputs, trained, name=f"{name}_train")
    self.inference_model = keras.Model(inputs, outputs[main], name=name)

  @abc.abstractmethod
  def _build_heads(self, preprocessed_images):
    """Builds layers on a KerasTensor and returns {head name: logits}."""

  def preprocess(self, images):
    """uint8 or float RGB images in 0..255 -> the feature extractor's input."""
    return self.feature_extractor.preprocess(tf.cast(images, tf.float32))

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
      self._recompute_plan = _RecomputePlan(
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
    if self.is_binary:
      threshold = self.binary_output.threshold if threshold is None else threshold
      # sigmoid(x) > t  <=>  x > log(t / (1 - t)): no sigmoid for the labels.
      logit_threshold = math.log(threshold / (1.0 - threshold))
      result = {fields.PredictionFields.labels:
                tf.cast(logits[..., 0] > logit_threshold, tf.int32)}
      if with_probabilities:
        result[fields.PredictionFields.probabilities] = tf.sigmoid(logits)
      return result
    result = {fields.PredictionFields.labels:
              tf.argmax(logits, axis=-1, output_type=tf.int32)}
    if with_probabilities:
      result[fields.PredictionFields.probabilities] = tf.nn.softmax(logits)
    return result

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

  def _classifier(self, name, width):
    self.classifier_layer_names.add(name)
    return keras.layers.Conv2D(
        width, 1, use_bias=True, name=name,
        kernel_initializer=self.conv_hyperparams.initializer(),
        kernel_regularizer=self.conv_hyperparams.regularizer)

  def classifier(self, name):
    """A 1x1 conv with bias: num_classes logits, or 1 if the model is binary."""
    return self._classifier(name, 1 if self.is_binary else self.num_classes)

  def main_head(self, features, name):
    """The main head's logits on `features`; the aux target head reads them too."""
    self._main_features = features
    return self.classifier(name)(features)

  def separable_conv_bn(self, x, filters, name, dilation_rate=1):
    """Depthwise 3x3 (dilated) + BN + ReLU, then 1x1 conv to `filters` + BN +
    ReLU: the mobile models' cheap 3x3 conv, split so each half is prunable."""
    x = self.conv_hyperparams.depthwise_conv2d(
        3, name=f"{name}_depthwise", dilation_rate=dilation_rate)(x)
    x = self.conv_hyperparams.batch_norm(name=f"{name}_depthwise_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_depthwise_relu")(x)
    return self.conv_bn(x, filters, 1, name=f"{name}_pointwise")

  def conv_bn(self, x, filters, kernel_size, name, strides=1, dilation_rate=1,
              relu=True):
    """conv -> batch norm (-> ReLU) with the model's hyperparams."""
    x = self.conv_hyperparams.conv2d(filters, kernel_size, name=name,
                                     strides=strides,
                                     dilation_rate=dilation_rate)(x)
    x = self.conv_hyperparams.batch_norm(name=f"{name}_bn")(x)
    if relu:
      x = keras.layers.ReLU(name=f"{name}_relu")(x)
    return x


class _Node:
  """One call of a layer in a functional model, as a step of a _RecomputePlan.

  Steps read and write `values`, a dict from Keras tensor id (as in
  Node.flat_input_ids) to the computed tensor.
  """

  def __init__(self, node):
    self.node = node
    self.name = node.layer.name
    self.layers = [node.layer]
    self.input_ids = node.flat_input_ids
    self.output_ids = node.flat_output_ids

  def run(self, values, training):
    counts = collections.Counter(self.input_ids)
    args, kwargs = self.node.map_arguments(
        {i: [values[i]] * n for i, n in counts.items()})
    kwargs.setdefault("training", training)
    outputs = self.node.layer(*args, **kwargs)
    values.update(zip(self.output_ids, tf.nest.flatten(outputs)))


def _run_steps(steps, values, keep_ids, training):
  """Runs `steps` in order on `values`; drops each value after its last
  reader unless in keep_ids, as Keras does, so eager runs do not hold every
  activation to the end."""
  reads = collections.Counter(i for step in steps for i in step.input_ids)
  for step in steps:
    step.run(values, training)
    for i in step.input_ids:
      reads[i] -= 1
      if reads[i] == 0 and i not in keep_ids:
        values.pop(i, None)


class _Segment:
  """Steps run as one unit in tf.recompute_grad: a feature-extractor stage."""

  def __init__(self, name, steps, input_ids, output_ids):
    self.name = name
    self.steps = steps
    self.input_ids = input_ids
    self.output_ids = output_ids

  @property
  def layers(self):
    return [layer for step in self.steps for layer in step.layers]

  def _forward(self, inputs, training):
    values = dict(zip(self.input_ids, inputs))
    _run_steps(self.steps, values, set(self.output_ids), training)
    return [values[i] for i in self.output_ids]

  def run(self, values, training):
    inputs = [values[i] for i in self.input_ids]
    if not (training and any(layer.trainable_weights for layer in self.layers)):
      # A frozen stage (freeze_backbone freezes the whole trunk, so no
      # gradient goes through it either): nothing to recompute.
      outputs = self._forward(inputs, training)
    else:
      outputs = self._recomputed(training)(*inputs)
    values.update(zip(self.output_ids, outputs))

  def _recomputed(self, training):
    calls = []

    def forward(*inputs):
      # tf.recompute_grad calls this once in the forward pass, then once
      # more per gradient: those calls must not move the batch-norm moving
      # averages again.
      recomputing = bool(calls)
      calls.append(recomputing)
      if not recomputing:
        return self._forward(inputs, training)
      with _moving_statistics_frozen(self.layers):
        return self._forward(inputs, training)

    return tf.recompute_grad(forward)


@contextlib.contextmanager
def _moving_statistics_frozen(layers):
  """Batch norms still normalize by the batch statistics but skip the
  moving-average assignments (tf_keras makes every one of them, fused or
  not, through these two methods)."""
  def keep(variable, *unused_args):
    return variable
  batch_norms = [layer for layer in layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
  for layer in batch_norms:
    # object.__setattr__: not through Keras' attribute tracking.
    object.__setattr__(layer, "_assign_moving_average", keep)
    object.__setattr__(layer, "_assign_new_value", keep)
  try:
    yield
  finally:
    for layer in batch_norms:
      object.__delattr__(layer, "_assign_moving_average")
      object.__delattr__(layer, "_assign_new_value")


class _RecomputePlan:
  """Runs a training keras_model with its trunk stages as recomputed segments.

  The functional model's own nodes are called in its own order, except that
  the nodes of a stage (found by layer name, so a clone with the same names
  works too) run together, where the stage's first node would run.
  """

  def __init__(self, keras_model, stage_io):
    self.model = keras_model
    by_depth = keras_model._nodes_by_depth  # pylint: disable=protected-access
    nodes = [_Node(node) for depth in sorted(by_depth, reverse=True)
             for node in by_depth[depth] if not node.is_input]
    stage_of = {name: stage.name for stage in stage_io
                for name in stage.layer_names}
    wrapped = [node.name for node in nodes
               if isinstance(node.node.layer, keras.layers.Wrapper)
               and node.node.layer.layer.name in stage_of]
    if wrapped:
      raise ValueError(
          "memory saving recomputes the feature extractor, whose layers are "
          f"tfmot wrappers here ({', '.join(wrapped[:3])}, ...): their "
          "training state would be updated again by the recomputation; "
          "memory_saving cannot be combined with magnitude_pruning or "
          "quantization_aware_training")
    self.output_ids = {head: str(id(tensor))
                       for head, tensor in keras_model.output.items()}
    outside_readers = collections.defaultdict(set)
    for node in nodes:
      for i in node.input_ids:
        outside_readers[i].add(stage_of.get(node.name))
    self.steps = []
    segments = {}
    for node in nodes:
      stage = stage_of.get(node.name)
      if stage is None:
        self.steps.append(node)
      elif stage in segments:
        segments[stage].steps.append(node)
      else:
        segments[stage] = _Segment(stage, [node], [], [])
        self.steps.append(segments[stage])
    for segment in segments.values():
      made = {i for step in segment.steps for i in step.output_ids}
      segment.input_ids = list(dict.fromkeys(
          i for step in segment.steps for i in step.input_ids
          if i not in made))
      segment.output_ids = [
          i for step in segment.steps for i in step.output_ids
          if i in self.output_ids.values()
          or outside_readers[i] - {segment.name}]
    self._check_order()

  def _check_order(self):
    available = {str(id(tensor)) for tensor in self.model.inputs}
    for step in self.steps:
      if any(i not in available for i in step.input_ids):
        raise ValueError(
            f"memory saving: {step.name} reads a tensor computed after it; "
            "a stage of this model cannot run as one unit")
      available.update(step.output_ids)

  @property
  def segments(self):
    return [step for step in self.steps if isinstance(step, _Segment)]

  def run(self, inputs, training):
    """keras_model(inputs, training=training), with the stages recomputed."""
    model_input = self.model.inputs[0]
    inputs = tf.convert_to_tensor(inputs)
    if inputs.dtype != model_input.dtype and model_input.dtype.is_floating:
      inputs = tf.cast(inputs, model_input.dtype)
    values = {str(id(model_input)): inputs}
    _run_steps(self.steps, values, set(self.output_ids.values()), training)
    return {head: values[i] for head, i in self.output_ids.items()}
