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

A model trained by the TF1 project runs here unchanged with
`interpolation: TF1_ALIGN_CORNERS` and `head_activation: RELU6` (and the
trunk's slim layout fields): its resize sizes and conventions, its CFF order
(dilated conv before the resize to F_high) and its pyramid windows.
fast_seg.tools.import_weights sets them.

A model trained by the fritz-image-segmentation Keras ICNet runs with
`interpolation: KERAS_ASYMMETRIC` (2x2 average pools down, Keras 2.2's
bilinear upsampling), `head_activation: RELU_BEFORE_BATCH_NORM`,
`full_res_projection: true` and its trunk, resnet50_keras_icnet.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.protos import model_pb2
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
               binary_output=None, tf1_interpolation=False,
               head_relu_max=None, keras_interpolation=False,
               relu_before_bn=False, full_res_projection=False):
    """See model.SegmentationModel; besides:

    Args:
      pyramid_bins: bins of the pyramid pooling.
      tf1_interpolation: the TF1 project's resizes, CFF order and pyramid
        windows (ICNet.Interpolation TF1_ALIGN_CORNERS).
      head_relu_max: cap of the ReLU after the pyramid conv and the full-res
        branch convs (6.0: the TF1 project's ReLU6); None: plain ReLU.
      keras_interpolation: the fritz Keras ICNet's average-pool halvings
        and asymmetric upsamplings (Interpolation KERAS_ASYMMETRIC).
      relu_before_bn: conv -> ReLU -> BN in those convs.
      full_res_projection: the full-res branch ends in a 1x1 conv with
        bias + BN that is the second CFF's F_high (ICNet.full_res_projection).
    """
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="icnet",
                     binary_output=binary_output)
    self.pyramid_bins = tuple(pyramid_bins)
    self.tf1_interpolation = tf1_interpolation
    self.head_relu_max = head_relu_max
    self.keras_interpolation = keras_interpolation
    self.relu_before_bn = relu_before_bn
    self.full_res_projection = full_res_projection

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    config_checks.require_output_stride(
        config, field_path, (TRUNK_SPLIT_STRIDE,),
        "ICNet (its trunk is split at stride 8 of the half-resolution input)")
    return {"pyramid_bins": config_checks.pyramid_bins(
        config, field_path, DEFAULT_PYRAMID_BINS),
            **config_checks.tf1_graph_kwargs(config, field_path, icnet=True),
            "keras_interpolation":
                config.interpolation == model_pb2.ICNet.KERAS_ASYMMETRIC,
            "relu_before_bn": config.head_activation ==
                              model_pb2.ICNet.RELU_BEFORE_BATCH_NORM,
            "full_res_projection": config.full_res_projection}

  def _resize(self, x, factor, name):
    if self.keras_interpolation and factor == 0.5:
      return keras.layers.AveragePooling2D(2, name=name)(x)
    return layers.ResizeByFactor(factor, align_corners=self.tf1_interpolation,
                                 asymmetric=self.keras_interpolation,
                                 name=name)(x)

  def _resize_like(self, x, reference, name):
    mode = layers.ASYMMETRIC if self.keras_interpolation else layers.HALF_PIXEL
    return layers.ResizeLike(mode, name=name)([x, reference])

  def _head_conv(self, x, depth, kernel_size, name, strides=1):
    """A pyramid or full-res branch conv with the head activation."""
    return self.conv_bn(x, self._width(depth), kernel_size, name=name,
                        strides=strides, relu_max=self.head_relu_max,
                        relu_before_bn=self.relu_before_bn)

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
    pool, mode = layers.pyramid_pooling_layers(
        self.tf1_interpolation or self.keras_interpolation,
        layers.ASYMMETRIC if self.keras_interpolation else
        layers.ALIGN_CORNERS)
    for bins in self.pyramid_bins:
      p = pool(bins, name=f"icnet_psp_pool_{bins}")(x)
      pooled.append(layers.ResizeLike(
          mode, name=f"icnet_psp_upsample_{bins}")([p, x]))
    x = keras.layers.Add(name="icnet_psp_sum")(pooled)
    return self._head_conv(x, 512, 1, "icnet_psp_conv")

  def _cascade_feature_fusion(self, f_low, f_high, name):
    """CFF unit; returns the fused feature and the upsampled F_low.

    TF1 order: F_low doubled (align corners, 2s - 1), the dilated conv on
    that, then resized to F_high's size; else F_low resized to F_high's size.
    """
    if self.tf1_interpolation:
      f_low = self._resize(f_low, 2.0, f"{name}_upsample")
    else:
      f_low = self._resize_like(f_low, f_high, f"{name}_upsample")
    low = self.conv_bn(f_low, self._width(256), 3, name=f"{name}_low_conv",
                       dilation_rate=2, relu=False)
    if self.tf1_interpolation:
      low = layers.ResizeLike(layers.ASYMMETRIC,
                              name=f"{name}_low_resize")([low, f_high])
    if self.full_res_projection and name == "icnet_cff2":
      high = f_high  # Already the projection of the full-res branch.
    else:
      high = self.conv_bn(f_high, self._width(256), 1,
                          name=f"{name}_high_conv", relu=False)
    fused = keras.layers.Add(name=f"{name}_sum")([low, high])
    return keras.layers.ReLU(name=f"{name}_relu")(fused), f_low

  def _full_res_branch(self, images):
    """Three strided 3x3 convs, then a 3x3 conv (or the 1x1 projection)."""
    f_full = images
    for i, depth in enumerate((64, 64, 128)):
      f_full = self._head_conv(f_full, depth, 3, f"icnet_full_res_conv{i + 1}",
                               strides=2)
    if self.full_res_projection:
      return self.conv_bn(f_full, self._width(256), 1,
                          name="icnet_full_res_projection", relu=False,
                          use_bias=True)
    return self._head_conv(f_full, 256, 3, "icnet_full_res_conv4")

  def _build_heads(self, images):
    extractor = self.feature_extractor
    split = self._split_stage()
    after_split = extractor.stage_names[extractor.stage_names.index(split) + 1]

    half_input = self._resize(images, 0.5, "icnet_half_input")
    f_half = extractor.build(half_input, last_stage=split)[split]
    quarter = self._resize(f_half, 0.5, "icnet_quarter_features")
    deep = extractor.build(quarter, first_stage=after_split)
    psp = self._pyramid_pooling(deep[extractor.stage_names[-1]])

    f_full = self._full_res_branch(images)

    cff1, psp_up = self._cascade_feature_fusion(psp, f_half, "icnet_cff1")
    cff2, cff1_up = self._cascade_feature_fusion(cff1, f_full, "icnet_cff2")
    quarter_res = self._resize(cff2, 2.0, "icnet_final_upsample")
    return quarter_res, {
        fields.PredictionFields.logits:
            self.classifier("icnet_classifier")(quarter_res),
        AUX_1_16: self.classifier("icnet_aux_1_16_classifier")(psp_up),
        AUX_1_8: self.classifier("icnet_aux_1_8_classifier")(cff1_up),
    }
