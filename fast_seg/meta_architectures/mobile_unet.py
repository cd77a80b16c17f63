"""MobileUNet: a MobileNet encoder and a light U-Net decoder (the hair model).

The encoder runs to stride 32; the decoder goes back up one octave at a time,
concatenating the encoder's stage output of the same stride (16, 8, 4, 2) and
mixing with a depthwise-separable block, then makes a last x2 step to the
input resolution, where the classifier runs. Upsampling is a 2x2 transposed
conv or a bilinear resize followed by a 1x1 conv.

Decoder widths scale with the encoder's filter_scale as well as with their
own multiplier, so a model that compress.py prunes to filter_scale 0.5 is
the same config built with 0.5.

decoder_layout KERAS_HAIR builds the Keras hair project's own decoder
instead (its .h5 files import: fast_seg.tools.import_weights), see
`_build_keras_hair_heads`.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks
from fast_seg.protos import model_pb2

UPSAMPLINGS = ("transposed_conv", "bilinear")
DECODER_LAYOUTS = ("fast_seg", "keras_hair")

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
               decoder_width_multiplier=1.0, upsampling="transposed_conv",
               decoder_layout="fast_seg"):
    # Not a config check: the config's enums always name known ones.
    for field, value, allowed in (("upsampling", upsampling, UPSAMPLINGS),
                                  ("decoder_layout", decoder_layout,
                                   DECODER_LAYOUTS)):
      if value not in allowed:
        raise ValueError(f"model.mobile_unet.{field}: unknown '{value}'; "
                         f"allowed: {', '.join(allowed)}")
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="mobile_unet",
                     binary_output=binary_output)
    self.decoder_width_multiplier = float(decoder_width_multiplier)
    self.upsampling = upsampling
    self.decoder_layout = decoder_layout

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    config_checks.require_output_stride(
        config, field_path, (_ENCODER_STRIDE,),
        "MobileUNet (its encoder goes down to 1/32)")
    layout = model_pb2.MobileUNet.DecoderLayout.Name(
        config.decoder_layout).lower()
    if layout == "keras_hair":
      _check_keras_hair(config, field_path)
    return {
        "decoder_width_multiplier": config_checks.positive(
            config.decoder_width_multiplier,
            f"{field_path}.decoder_width_multiplier"),
        "upsampling": model_pb2.MobileUNet.Upsampling.Name(config.upsampling).lower(),
        "decoder_layout": layout,
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
    if self.decoder_layout == "keras_hair":
      return self._build_keras_hair_heads(images)
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

  def _build_keras_hair_heads(self, images):
    """The hair project's decoder (decoder_layout KERAS_HAIR, model.proto)."""
    extractor = self.feature_extractor
    stages = skip_stages(extractor)
    endpoints = extractor.build(images)
    x = endpoints[stages[_ENCODER_STRIDE]]
    for stride, nominal in _DECODER_STEPS:
      name, skip = f"mobile_unet_up{stride}", endpoints[stages[stride]]
      x = self._keras_hair_upsample(x, skip, extractor.width(nominal), name)
      x = keras.layers.Concatenate(name=f"{name}_concat")([x, skip])
      x = self.separable_conv_bn(x, self._keras_hair_width(nominal), name,
                                 relu_max=6.0)
    x = keras.layers.Concatenate(name="mobile_unet_up1_concat")(
        [x, _stem_conv_output(extractor)])
    x = self.conv_bn(x, self._keras_hair_width(_FINAL_WIDTH), 3,
                     name="mobile_unet_up1_conv", relu_max=6.0)
    logits = self.classifier("mobile_unet_classifier")(x)
    logits = layers.ResizeLike(mode=layers.ASYMMETRIC,
                               name="mobile_unet_logits_resize")(
                                   [logits, images])
    return x, {fields.PredictionFields.logits: logits}

  def _keras_hair_width(self, nominal):
    """The hair project's block width int(int(nominal * alpha) * alpha_up):
    the encoder's width of `nominal` (slim's rule, the same for alpha >=
    0.25) times decoder_width_multiplier (its alpha_up), truncated."""
    return max(1, int(self.feature_extractor.width(nominal)
                      * self.decoder_width_multiplier))

  def _keras_hair_upsample(self, x, reference, width, name):
    """The hair project's 2x2 transposed conv: bias, no BN, no activation."""
    hyperparams = self.conv_hyperparams
    x = keras.layers.Conv2DTranspose(
        width, 2, strides=2, padding="same", use_bias=True,
        kernel_initializer=hyperparams.initializer(),
        kernel_regularizer=hyperparams.regularizer,
        name=f"{name}_upsample")(x)
    return layers.ResizeLike(name=f"{name}_resize")([x, reference])


def _check_keras_hair(config, field_path):
  """What decoder_layout KERAS_HAIR needs: the hair project's encoder and
  its transposed convs."""
  field = f"{field_path}.decoder_layout KERAS_HAIR"
  if config.feature_extractor.type != "mobilenet_v1":
    raise ValueError(f"{field} needs feature_extractor.type 'mobilenet_v1' "
                     f"(the hair project's encoder), got "
                     f"'{config.feature_extractor.type}'")
  if config.upsampling != model_pb2.MobileUNet.TRANSPOSED_CONV:
    raise ValueError(f"{field} needs upsampling TRANSPOSED_CONV (the hair "
                     "project's 2x2 transposed convs)")


def _stem_conv_output(extractor):
  """The output of MobileNetV1's first conv (Conv2d_0, after its ReLU6),
  which the hair project's last decoder step concatenates."""
  name = f"{extractor.name}_Conv2d_0_relu"
  for layer in extractor.layers:
    if layer.name == name:
      return layer.output
  raise ValueError(f"decoder_layout KERAS_HAIR: no layer {name} in "
                   f"{extractor.name}")
