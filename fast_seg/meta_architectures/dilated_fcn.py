"""Dilated MobileNet FCN (the road model): context by dilation, not depth.

The trunk stops at stride 8; the stride-16 and -32 stages are replaced by a
chain of dilated depthwise-separable blocks that stay at stride 8 (rates
1, 1, 2, 4, 4 by default), which widens the receptive field at a fraction of
the cost. Skip fusion then adds 1x1 projections of the stride-8 and stride-4
trunk features, and the classifier runs at 1/4 of the input.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks

DEFAULT_DILATION_RATES = (1, 1, 2, 4, 4)
DEFAULT_CONTEXT_DEPTH = 512
DEFAULT_DECODER_DEPTH = 128


def trunk_stages(extractor):
  """Names of the extractor's first stage at stride 4 and at stride 8.

  Args:
    extractor: a FeatureExtractor whose stages reach stride 8.

  Returns:
    (stride-4 stage, stride-8 stage).

  Raises:
    ValueError: the extractor has no stage of one of those strides.
  """
  first = {}
  for stage in extractor.stage_names:
    first.setdefault(extractor.stage_strides[stage], stage)
  if 4 not in first or 8 not in first:
    raise ValueError(f"DilatedFCN needs {extractor.name} stages at strides 4 "
                     f"and 8; its stage strides are {extractor.stage_strides}")
  return first[4], first[8]


@model.register("dilated_fcn")
class DilatedFCN(model.SegmentationModel):
  """Trunk to stride 8, dilated context blocks, skip fusion from 8 and 4."""

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, binary_output=None,
               dilation_rates=DEFAULT_DILATION_RATES,
               context_depth=DEFAULT_CONTEXT_DEPTH,
               decoder_depth=DEFAULT_DECODER_DEPTH):
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="dilated_fcn",
                     binary_output=binary_output)
    self.dilation_rates = tuple(int(r) for r in dilation_rates)
    self.context_depth = int(context_depth)
    self.decoder_depth = int(decoder_depth)

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    config_checks.require_output_stride(
        config, field_path, (8,),
        "DilatedFCN (its trunk is built up to the stride-8 stage; dilated "
        "blocks replace the rest)")
    rates = list(config.dilation_rates) or list(DEFAULT_DILATION_RATES)
    return {
        "dilation_rates": config_checks.all_at_least_one(
            rates, f"{field_path}.dilation_rates"),
        "context_depth": config_checks.positive(
            config.context_depth, f"{field_path}.context_depth"),
        "decoder_depth": config_checks.positive(
            config.decoder_depth, f"{field_path}.decoder_depth"),
    }

  def _build_heads(self, images):
    extractor = self.feature_extractor
    stage4, stage8 = trunk_stages(extractor)
    endpoints = extractor.build(images, last_stage=stage8)
    skip4, skip8 = endpoints[stage4], endpoints[stage8]
    # Widths scale like the trunk's, so pruning narrows the head too.
    context_width = extractor.width(self.context_depth, base.Rounding.BACKBONE)
    width = extractor.width(self.decoder_depth, base.Rounding.BACKBONE)
    x = skip8
    for i, rate in enumerate(self.dilation_rates, start=1):
      x = self.separable_conv_bn(x, context_width,
                                 f"dilated_fcn_context_{i}", dilation_rate=rate)
    x = keras.layers.Add(name="dilated_fcn_fuse8_add")([
        self.conv_bn(x, width, 1, name="dilated_fcn_context_proj",
                     relu=False),
        self.conv_bn(skip8, width, 1, name="dilated_fcn_skip8_proj",
                     relu=False)])
    x = keras.layers.ReLU(name="dilated_fcn_fuse8_relu")(x)
    x = layers.ResizeLike(name="dilated_fcn_upsample")([x, skip4])
    x = keras.layers.Add(name="dilated_fcn_fuse4_add")([
        x, self.conv_bn(skip4, width, 1, name="dilated_fcn_skip4_proj",
                        relu=False)])
    x = keras.layers.ReLU(name="dilated_fcn_fuse4_relu")(x)
    x = self.separable_conv_bn(x, width, "dilated_fcn_decoder")
    return x, {fields.PredictionFields.logits:
               self.classifier("dilated_fcn_classifier")(x)}
