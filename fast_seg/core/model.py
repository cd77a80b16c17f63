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
import math

import tensorflow as tf
import tf_keras as keras

from fast_seg.core import losses
from fast_seg.core import standard_fields as fields
from fast_seg.protos import train_pb2

# Head name of the auxiliary binary target (Loss.auxiliary_target).
AUX_TARGET = "aux_target"

BinaryOutput = collections.namedtuple(
    "BinaryOutput", ["foreground_class_ids", "threshold"])
BinaryOutput.__doc__ = """A single sigmoid channel: foreground vs background.

foreground_class_ids: dataset ids that are foreground (empty: every id >= 1).
threshold: sigmoid probability above which a pixel is foreground.
"""


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
    if training:
      return self.keras_model(preprocessed_images, training=True)
    return {fields.PredictionFields.logits:
            self.inference_model(preprocessed_images, training=False)}

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
    return losses.binary_targets(labels, self.binary_output.foreground_class_ids,
                                 self.ignore_label)

  def output_class_names(self, class_names):
    """Names of the output classes given the dataset's class names."""
    if not self.is_binary or (self.num_classes == 2 and list(
        self.binary_output.foreground_class_ids) in ([], [1])):
      return list(class_names)
    ids = (self.binary_output.foreground_class_ids
           or range(1, self.num_classes))
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
