"""The contract every segmentation meta-architecture implements.

A model owns a feature extractor and heads, and exposes:
  preprocess   uint8/float images -> model input (per feature extractor)
  predict      model input -> dict of logits by head (aux heads in training)
  loss         predictions + labels -> dict of named, weighted losses
  postprocess  logits -> labels / probabilities at the input size
plus the layer lists that fine-tuning restores and freezing uses.
"""

import abc

import tensorflow as tf
import tf_keras as keras

from fast_seg.core import standard_fields as fields
from fast_seg.protos import train_pb2


class SegmentationModel(abc.ABC):
  """Base class: builds a tf_keras functional model once and wraps it.

  Subclasses implement `_build_heads(preprocessed_images)` returning the
  dict of logits by head name (main head under `fields.PredictionFields.logits`)
  and set `classifier_layer_names` (layers whose width is num_classes).
  """

  def __init__(self, num_classes, ignore_label, feature_extractor, conv_hyperparams,
               loss, name):
    if num_classes is None or num_classes < 1:
      raise ValueError(f"model.{name}.num_classes must be >= 1, got {num_classes}")
    if 0 <= ignore_label < num_classes:
      raise ValueError(
          f"model.{name}.ignore_label ({ignore_label}) is a class id "
          f"(num_classes is {num_classes}); use a value outside 0..{num_classes - 1}")
    self.num_classes = num_classes
    self.ignore_label = ignore_label
    self.feature_extractor = feature_extractor
    self.conv_hyperparams = conv_hyperparams
    self.loss_fn = loss
    self.name = name
    self.classifier_layer_names = set()
    inputs = keras.Input(shape=(None, None, 3), name="preprocessed_inputs")
    outputs = self._build_heads(inputs)
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

  def postprocess(self, logits, output_size, with_probabilities=False):
    """Upsamples logits to `output_size` and takes the arg-max.

    Args:
      logits: float [N, h, w, C] of the main head.
      output_size: (height, width) of the input images.
      with_probabilities: also return softmax probabilities.

    Returns:
      dict with labels int32 [N, H, W] (and probabilities float32 [N, H, W, C]).
    """
    logits = tf.image.resize(tf.cast(logits, tf.float32), output_size,
                             method="bilinear")
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

  def classifier(self, name):
    """A 1x1 conv with bias producing num_classes logits."""
    self.classifier_layer_names.add(name)
    return keras.layers.Conv2D(
        self.num_classes, 1, use_bias=True, name=name,
        kernel_initializer=self.conv_hyperparams.initializer(),
        kernel_regularizer=self.conv_hyperparams.regularizer)

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
