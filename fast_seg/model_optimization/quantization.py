"""Quantization-aware training's model: every layer annotated, then wrapped.

tfmot quantizes the layers its registry knows; fast_seg's own resize and
pooling layers, and any other layer it does not know, get a QuantizeConfig
that quantizes nothing, so that quantize_apply accepts the whole model.
tfmot_lib.apply builds a run's QAT model with quantize_model.
"""

from absl import logging
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from fast_seg.core import layers as seg_layers

# fast_seg's own layers, annotated with PassThroughQuantizeConfig.
CUSTOM_LAYERS = (seg_layers.ResizeByFactor, seg_layers.ResizeLike,
                 seg_layers.AdaptiveAveragePool, seg_layers.WindowAveragePool)


class PassThroughQuantizeConfig(tfmot.quantization.keras.QuantizeConfig):
  """Quantizes nothing in the layer: no weights, no output quantizer.

  For fast_seg's resize and adaptive-pooling layers (no weights), which
  tfmot's registry does not know: TFLite's int8 AVERAGE_POOL_2D needs its
  input's scale on its output, so they must not get a quantizer of their
  own; the converter carries the scale of their input through them. Also
  lets quantize_apply accept any other layer it does not know, which then
  runs in float after conversion.
  """

  def get_weights_and_quantizers(self, layer):
    return []

  def get_activations_and_quantizers(self, layer):
    return []

  def set_quantize_weights(self, layer, quantize_weights):
    pass

  def set_quantize_activations(self, layer, quantize_activations):
    pass

  def get_output_quantizers(self, layer):
    return []

  def get_config(self):
    return {}


def _annotate(layer, registry):
  """`layer` annotated with its QuantizeConfig (None: tfmot's default)."""
  if isinstance(layer, CUSTOM_LAYERS):
    quantize_config = PassThroughQuantizeConfig()
  elif (registry.supports(layer)
        or isinstance(layer, keras.layers.BatchNormalization)):
    # tfmot's default. Batch norm is not in the registry: tfmot's Conv+BN
    # transforms handle it (TFLite folds it into the conv), and only when
    # it has no QuantizeConfig of its own.
    quantize_config = None
  else:
    logging.warning("quantization_aware_training: %s (%s) is not quantized",
                    layer.name, type(layer).__name__)
    quantize_config = PassThroughQuantizeConfig()
  return tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config)


def quantize_model(keras_model):
  """A fake-quantized copy of `keras_model` (tfmot default 8-bit scheme).

  Every layer is annotated: tfmot's default where its registry (or its
  Conv+BatchNorm transforms) know the layer, PassThroughQuantizeConfig for
  CUSTOM_LAYERS and any other layer. Layer names are kept inside the
  `quant_<name>` wrappers; the weights are copied.
  """
  registry = tfmot.quantization.keras.default_8bit.Default8BitQuantizeRegistry()
  annotated = keras.models.clone_model(
      keras_model, clone_function=lambda layer: _annotate(layer, registry))
  # quantize_apply clones the model through its config.
  custom_objects = {type(layer).__name__: type(layer)
                    for layer in keras_model.layers}
  custom_objects.update(PassThroughQuantizeConfig=PassThroughQuantizeConfig)
  with tfmot.quantization.keras.quantize_scope(custom_objects):
    return tfmot.quantization.keras.quantize_apply(annotated)
