"""ICNet (Zhao et al., "ICNet for Real-Time Semantic Segmentation", 2018).

Topology of the TF1 fast-semantic-segmentation project, with its two bugs
fixed (dilations 2/4, not 4/16, after the split; labels padded with the ignore
label):

  I ──────────────── full-res branch: 3 strided 3x3 convs ─────── F_full (1/8)
  I/2 ─ trunk up to stride 8 ─ F_half (1/16) ─ resize x0.5 ─ rest of the trunk,
        dilated (1/32) ─ pyramid pooling (sum) ─ 1x1 ─ PSP (1/32)
  CFF1(PSP, F_half) -> 1/16;  CFF2(CFF1, F_full) -> 1/8;  x2 -> classifier (1/4)

Cascade label guidance: 1x1 classifiers on the upsampled low-res input of each
CFF unit (1/16 and 1/8), training only.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks

AUX_1_8 = "aux_1_8"
AUX_1_16 = "aux_1_16"
DEFAULT_PYRAMID_BINS = (1, 2, 3, 4)
# The trunk runs on I/2 and is split where it reaches stride 8 of its input.
TRUNK_SPLIT_STRIDE = 8


@model.register("icnet")
class ICNet(model.SegmentationModel):
  """Image cascade network on a ResNet or MobileNet trunk."""

  # Loss weights of the cascade label guidance, in Loss.aux_weights order.
  default_aux_weights = {AUX_1_8: 0.4, AUX_1_16: 0.4}

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, pyramid_bins=DEFAULT_PYRAMID_BINS,
               binary_output=None):
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="icnet",
                     binary_output=binary_output)
    self.pyramid_bins = tuple(pyramid_bins)

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    config_checks.require_output_stride(
        config, field_path, (TRUNK_SPLIT_STRIDE,),
        "ICNet (its trunk is split at stride 8 of the half-resolution input)")
    return {"pyramid_bins": config_checks.pyramid_bins(
        config, field_path, DEFAULT_PYRAMID_BINS)}

  def _width(self, depth):
    # The trunk's own rule: the heads shrink like the trunk they sit on.
    return self.feature_extractor.width(depth, base.Rounding.BACKBONE)

  def _split_stage(self):
    """First trunk stage at stride 8 of its input: the half-res feature."""
    extractor = self.feature_extractor
    split = next(name for name in extractor.stage_names
                 if extractor.stage_strides[name] == TRUNK_SPLIT_STRIDE)
    if split == extractor.stage_names[-1]:
      raise ValueError(
          f"model.icnet.feature_extractor.type '{extractor.name}' ends at its "
          "first stride-8 stage; ICNet runs the stages after that one on the "
          "quarter-resolution input, so it needs a deeper trunk "
          "(mobilenet_v2, mobilenet_v1 or resnet_v1_50)")
    return split

  def _pyramid_pooling(self, x):
    """ICNet flavour: pool to each bin size, upsample, sum with the input."""
    pooled = [x]
    for bins in self.pyramid_bins:
      p = layers.AdaptiveAveragePool(bins, name=f"icnet_psp_pool_{bins}")(x)
      pooled.append(layers.ResizeLike(name=f"icnet_psp_upsample_{bins}")([p, x]))
    x = keras.layers.Add(name="icnet_psp_sum")(pooled)
    return self.conv_bn(x, self._width(512), 1, name="icnet_psp_conv")

  def _cascade_feature_fusion(self, f_low, f_high, name):
    """CFF unit; returns the fused feature and the upsampled F_low."""
    f_low = layers.ResizeLike(name=f"{name}_upsample")([f_low, f_high])
    low = self.conv_bn(f_low, self._width(256), 3, name=f"{name}_low_conv",
                       dilation_rate=2, relu=False)
    high = self.conv_bn(f_high, self._width(256), 1, name=f"{name}_high_conv",
                        relu=False)
    fused = keras.layers.Add(name=f"{name}_sum")([low, high])
    return keras.layers.ReLU(name=f"{name}_relu")(fused), f_low

  def _build_heads(self, images):
    extractor = self.feature_extractor
    split = self._split_stage()
    after_split = extractor.stage_names[extractor.stage_names.index(split) + 1]

    half_input = layers.ResizeByFactor(0.5, name="icnet_half_input")(images)
    f_half = extractor.build(half_input, last_stage=split)[split]
    quarter = layers.ResizeByFactor(0.5, name="icnet_quarter_features")(f_half)
    deep = extractor.build(quarter, first_stage=after_split)
    psp = self._pyramid_pooling(deep[extractor.stage_names[-1]])

    f_full = images
    for i, (depth, stride) in enumerate(((64, 2), (64, 2), (128, 2), (256, 1))):
      f_full = self.conv_bn(f_full, self._width(depth), 3,
                            name=f"icnet_full_res_conv{i + 1}", strides=stride)

    cff1, psp_up = self._cascade_feature_fusion(psp, f_half, "icnet_cff1")
    cff2, cff1_up = self._cascade_feature_fusion(cff1, f_full, "icnet_cff2")
    quarter_res = layers.ResizeByFactor(2.0, name="icnet_final_upsample")(cff2)
    return quarter_res, {
        fields.PredictionFields.logits:
            self.classifier("icnet_classifier")(quarter_res),
        AUX_1_16: self.classifier("icnet_aux_1_16_classifier")(psp_up),
        AUX_1_8: self.classifier("icnet_aux_1_8_classifier")(cff1_up),
    }
