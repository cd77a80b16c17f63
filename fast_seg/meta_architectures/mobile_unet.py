"""MobileUNet: a MobileNet encoder and a light U-Net decoder (the hair model).

The encoder runs to stride 32; the decoder goes back up one octave at a time,
concatenating the encoder's stage output of the same stride (16, 8, 4, 2) and
mixing with a depthwise-separable block, then makes a last x2 step to the
input resolution, where the classifier runs. Upsampling is a 2x2 transposed
conv or a bilinear resize followed by a 1x1 conv.

Decoder widths scale with the encoder's filter_scale as well as with their
own multiplier, so a model that compress.py prunes to filter_scale 0.5 is
the same config built with 0.5.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks
from fast_seg.protos import model_pb2

UPSAMPLINGS = ("transposed_conv", "bilinear")

# (skip stride, nominal width) of the decoder steps, deepest first.
_DECODER_STEPS = ((16, 512), (8, 256), (4, 128), (2, 64))
# Nominal width of the last step, at the input resolution.
_FINAL_WIDTH = 32
_ENCODER_STRIDE = 32


def decoder_width(extractor, nominal, decoder_width_multiplier):
  """Width of a decoder conv: scaled by both multipliers, at least 1.

  Args:
    extractor: the encoder; its filter_scale applies to the decoder too, so
      pruning the model to a filter_scale narrows the decoder as well.
    nominal: the width of the full model (512, 256, 128, 64 or 32).
    decoder_width_multiplier: the decoder's own multiplier.

  Returns:
    int, max(1, round(nominal * decoder_width_multiplier * filter_scale)):
    plain rounding on every encoder, as filter pruning keeps round(scale *
    filters) filters.
  """
  return extractor.width(nominal * decoder_width_multiplier,
                         base.Rounding.PLAIN)


def skip_stages(extractor):
  """Stage name of the extractor's output at each stride 2, 4, ..., 32.

  Args:
    extractor: a FeatureExtractor with output_stride 32.

  Returns:
    dict stride -> stage name (the last stage of that stride).

  Raises:
    ValueError: some stride has no stage (output_stride below 32).
  """
  by_stride = {}
  for stage in extractor.stage_names:
    by_stride[extractor.stage_strides[stage]] = stage
  missing = [s for s in (2, 4, 8, 16, _ENCODER_STRIDE) if s not in by_stride]
  if missing:
    raise ValueError(
        f"MobileUNet needs {extractor.name} stages at strides 2..32 "
        f"(feature_extractor.output_stride 32, got "
        f"{extractor.output_stride}); none at {missing}")
  return by_stride


@model.register("mobile_unet")
class MobileUNet(model.SegmentationModel):
  """MobileNet encoder to stride 32, U-Net decoder to the input resolution."""

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, binary_output=None,
               decoder_width_multiplier=1.0, upsampling="transposed_conv"):
    # Not a config check: the config's enum always names a known one.
    if upsampling not in UPSAMPLINGS:
      raise ValueError(f"model.mobile_unet.upsampling: unknown '{upsampling}'; "
                       f"allowed: {', '.join(UPSAMPLINGS)}")
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="mobile_unet",
                     binary_output=binary_output)
    self.decoder_width_multiplier = float(decoder_width_multiplier)
    self.upsampling = upsampling

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    config_checks.require_output_stride(
        config, field_path, (_ENCODER_STRIDE,),
        "MobileUNet (its encoder goes down to 1/32)")
    return {
        "decoder_width_multiplier": config_checks.positive(
            config.decoder_width_multiplier,
            f"{field_path}.decoder_width_multiplier"),
        "upsampling": model_pb2.MobileUNet.Upsampling.Name(config.upsampling).lower(),
    }

  def decoder_width(self, nominal):
    """This model's width for a decoder conv of nominal width `nominal`."""
    return decoder_width(self.feature_extractor, nominal,
                         self.decoder_width_multiplier)

  def _upsample(self, x, reference, width, name):
    """x2 to `reference`'s size: transposed conv or bilinear + 1x1 conv."""
    if self.upsampling == "bilinear":
      x = layers.ResizeLike(name=f"{name}_resize")([x, reference])
      return self.conv_bn(x, width, 1, name=f"{name}_upsample")
    hyperparams = self.conv_hyperparams
    x = keras.layers.Conv2DTranspose(
        width, 2, strides=2, padding="same", use_bias=False,
        kernel_initializer=hyperparams.initializer(),
        kernel_regularizer=hyperparams.regularizer,
        name=f"{name}_upsample")(x)
    x = hyperparams.batch_norm(name=f"{name}_upsample_bn")(x)
    x = keras.layers.ReLU(name=f"{name}_upsample_relu")(x)
    # Exactly 2x; the reference is one pixel smaller where its input was odd.
    # Sizes are dynamic, so the resize is always there (identity when equal).
    return layers.ResizeLike(name=f"{name}_resize")([x, reference])

  def _build_heads(self, images):
    extractor = self.feature_extractor
    stages = skip_stages(extractor)
    endpoints = extractor.build(images)
    x = endpoints[stages[_ENCODER_STRIDE]]
    for stride, nominal in _DECODER_STEPS:
      name = f"mobile_unet_up{stride}"
      skip = endpoints[stages[stride]]
      width = self.decoder_width(nominal)
      x = self._upsample(x, skip, width, name)
      x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
      x = self.separable_conv_bn(x, width, name)
    width = self.decoder_width(_FINAL_WIDTH)
    x = self._upsample(x, images, width, "mobile_unet_up1")
    x = self.separable_conv_bn(x, width, "mobile_unet_up1")
    return x, {fields.PredictionFields.logits:
               self.classifier("mobile_unet_classifier")(x)}
