"""Dilated MobileNet FCN (the road model): context by dilation, not depth.

The trunk stops at stride 8; the stride-16 and -32 stages are replaced by a
chain of dilated depthwise-separable blocks that stay at stride 8 (rates
1, 1, 2, 4, 4 by default), which widens the receptive field at a fraction of
the cost. Skip fusion then adds 1x1 projections of the stride-8 and stride-4
trunk features, and the classifier runs at 1/4 of the input.

`head: LOGIT_SKIPS` is instead the KITTI road project's 2017 SegMobileNet, so
its trained .h5 imports (fast_seg.tools.import_weights): the MobileNetV1
trunk to stride 16 with its own units dilated, class logits at strides 16,
8 and 4 summed, align-corners resizes.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks
from fast_seg.protos import model_pb2

DEFAULT_DILATION_RATES = (1, 1, 2, 4, 4)
DEFAULT_CONTEXT_DEPTH = 512
DEFAULT_DECODER_DEPTH = 128
# LOGIT_SKIPS: the dilation rates apply to mobilenet_v1's Conv2d_7..11, the
# units of its stride-16 stage after the strided Conv2d_6.
LOGIT_SKIPS_FIRST_UNIT = 7
LOGIT_SKIPS_UNITS = 5


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
               decoder_depth=DEFAULT_DECODER_DEPTH, logit_skips=False):
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="dilated_fcn",
                     binary_output=binary_output)
    self.dilation_rates = tuple(int(r) for r in dilation_rates)
    self.context_depth = int(context_depth)
    self.decoder_depth = int(decoder_depth)
    self.logit_skips = bool(logit_skips)

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    rates = list(config.dilation_rates) or list(DEFAULT_DILATION_RATES)
    logit_skips = config.head == model_pb2.DilatedFCN.LOGIT_SKIPS
    if logit_skips:
      _check_logit_skips(config, field_path, rates)
    else:
      config_checks.require_output_stride(
          config, field_path, (8,),
          "DilatedFCN (its trunk is built up to the stride-8 stage; dilated "
          "blocks replace the rest)")
    return {
        "logit_skips": logit_skips,
        "dilation_rates": config_checks.all_at_least_one(
            rates, f"{field_path}.dilation_rates"),
        "context_depth": config_checks.positive(
            config.context_depth, f"{field_path}.context_depth"),
        "decoder_depth": config_checks.positive(
            config.decoder_depth, f"{field_path}.decoder_depth"),
    }

  def _build_heads(self, images):
    if self.logit_skips:
      return self._build_logit_skips(images)
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

  def _build_logit_skips(self, images):
    """SegMobileNet: logits of strides 16, 8, 4 summed coarse to fine."""
    extractor = self.feature_extractor
    extractor.dilate_units(LOGIT_SKIPS_FIRST_UNIT, self.dilation_rates)
    endpoints = extractor.build(images, last_stage="stage4")
    # A binary model keeps SegMobileNet's two logits and outputs l1 - l0.
    classes = 2 if self.is_binary else self.num_classes
    logits = None
    for stage, stride in (("stage4", 16), ("stage3", 8), ("stage2", 4)):
      name = f"dilated_fcn_logits_s{stride}"
      self.classifier_layer_names.add(name)
      skip = self.conv_bn(endpoints[stage], classes, 1, name=name, relu=False)
      if logits is not None:
        skip = keras.layers.Add(name=f"dilated_fcn_add_s{stride}")([
            layers.ResizeLike(layers.ALIGN_CORNERS,
                              name=f"dilated_fcn_upsample_s{stride}")(
                                  [logits, skip]), skip])
      logits = skip
    logits = layers.ResizeLike(layers.ALIGN_CORNERS,
                               name="dilated_fcn_upsample_s2")(
                                   [logits, endpoints["stem"]])
    logits = layers.ResizeLike(layers.ALIGN_CORNERS,
                               name="dilated_fcn_upsample_s1")(
                                   [logits, images])
    if self.is_binary:
      logits = layers.LogitDifference(name="dilated_fcn_logit_difference")(
          logits)
    return logits, {fields.PredictionFields.logits: logits}


def _check_logit_skips(config, field_path, rates):
  """LOGIT_SKIPS is SegMobileNet: mobilenet_v1 at stride 16, five rates."""
  extractor = config.feature_extractor
  if extractor.type != "mobilenet_v1":
    raise ValueError(f"{field_path}.head LOGIT_SKIPS is the road project's "
                     "MobileNetV1 model: feature_extractor.type must be "
                     f"mobilenet_v1, got '{extractor.type}'")
  config_checks.require_output_stride(
      config, field_path, (16,),
      "DilatedFCN head LOGIT_SKIPS (its trunk ends at the stride-16 stage)")
  if len(rates) != LOGIT_SKIPS_UNITS:
    raise ValueError(
        f"{field_path}.dilation_rates: head LOGIT_SKIPS takes one rate for "
        f"each of mobilenet_v1's Conv2d_7..11, {LOGIT_SKIPS_UNITS} in all; "
        f"got {len(rates)}")
