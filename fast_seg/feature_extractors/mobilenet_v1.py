"""MobileNetV1 in tf-slim's layout, split into stages for segmentation.

The layers are those of slim's MobilenetV1 trunk (Conv2d_0, then
Conv2d_1..13 as depthwise + pointwise pairs, each followed by batch norm and
ReLU6) without the classifier, so the model-zoo checkpoints
(`mobilenet_v1_1.0_224.ckpt` and the thinner ones) load by a plain name map.

`filter_scale` plays the role of slim's depth multiplier with slim's V1 rule,
`depth = max(int(d * multiplier), min_depth)` with min_depth = 8: truncation,
not the rounding to multiples of 8 that MobileNetV2 uses.
"""

import tf_keras as keras

from fast_seg.feature_extractors import base
from third_party import tf_slim_checkpoints

# slim's min_depth: no conv of a thinned MobileNetV1 is narrower than this.
MIN_DEPTH = 8

# (output depth, nominal stride) of the depthwise-separable units
# Conv2d_1..Conv2d_13; the stride is that of the unit's depthwise conv.
_UNITS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
          (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2),
          (1024, 1))

# Index of the last unit of each stage; the stem is Conv2d_0 and unit 1.
_STAGE_LAST_UNIT = (("stem", 1), ("stage2", 3), ("stage3", 5), ("stage4", 11),
                    ("stage5", 13))


@base.register("mobilenet_v1", imagenet_name_maps={
    base.WeightsFormat.TF_SLIM: tf_slim_checkpoints.mobilenet_v1})
class MobileNetV1(base.FeatureExtractor):
  """MobileNetV1 with stages stem (stride 2) and stage2..stage5 (4..32)."""

  stage_names = ("stem", "stage2", "stage3", "stage4", "stage5")
  allowed_output_strides = (8, 16, 32)

  def __init__(self, conv_hyperparams, filter_scale=1.0, output_stride=8,
               group_scales=None):
    super().__init__(conv_hyperparams, filter_scale, output_stride,
                     group_scales)
    # Fixed from the nominal strides so a stage built on its own gets the
    # same dilations as in a full build. Conv2d_0 always has stride 2 (every
    # allowed output stride is larger).
    tracker = base.StrideTracker(self.output_stride)
    self._conv_schedule = tracker.step(2)
    self._stage_units = {}
    self._unit_schedule = {}
    self._stage_strides = {}
    first = 1
    for stage_name, last in _STAGE_LAST_UNIT:
      self._stage_units[stage_name] = list(range(first, last + 1))
      for index in range(first, last + 1):
        self._unit_schedule[index] = tracker.step(_UNITS[index - 1][1])
      self._stage_strides[stage_name] = tracker.current_stride
      first = last + 1

  def dilate_units(self, first_unit, rates):
    """Gives Conv2d_<first_unit>.. one dilation rate each in place of the
    schedule's: the KITTI road project's SegMobileNet dilates Conv2d_7..11
    by 1, 1, 2, 4, 4 at stride 16, where slim's rule would give them 1.
    Call before those units are built.

    Raises:
      ValueError: a unit past Conv2d_13, or one whose depthwise conv strides
        (a dilated conv cannot).
    """
    for index, rate in enumerate(rates, start=first_unit):
      if index not in self._unit_schedule:
        raise ValueError(f"{self.name} has units Conv2d_1..{len(_UNITS)}; "
                         f"no Conv2d_{index} to dilate")
      stride, _ = self._unit_schedule[index]
      if stride != 1:
        raise ValueError(f"{self.name} Conv2d_{index} has stride {stride} "
                         f"at output_stride {self.output_stride}; only a "
                         "stride-1 unit can be dilated")
      self._unit_schedule[index] = (1, int(rate))

  def _backbone_width(self, nominal, scale):
    """slim's V1 rule: max(int(nominal * multiplier), 8), truncating."""
    return max(int(nominal * scale), MIN_DEPTH)

  def preprocess(self, images):
    """Maps float RGB images in [0, 255] to [-1, 1], as slim's MobileNets."""
    return base.to_unit_range(images)

  def _bn_relu6(self, net, name):
    net = self._track(self.conv_hyperparams.batch_norm(name=name + "_bn"))(net)
    return self._track(keras.layers.ReLU(max_value=6.0, name=name + "_relu"))(
        net)

  def _separable_unit(self, net, index):
    """Depthwise 3x3 (stride / dilation from the schedule), pointwise 1x1."""
    name = f"{self.name}_Conv2d_{index}"
    stride, rate = self._unit_schedule[index]
    net = self._track(self.conv_hyperparams.depthwise_conv2d(
        3, name=name + "_depthwise", strides=stride, dilation_rate=rate))(net)
    net = self._bn_relu6(net, name + "_depthwise")
    depth = self.width(_UNITS[index - 1][0])
    net = self._track(self.conv_hyperparams.conv2d(
        depth, 1, name=name + "_pointwise"))(net)
    return self._bn_relu6(net, name + "_pointwise")

  def _build_stage(self, stage_name, net):
    if stage_name == "stem":
      name = f"{self.name}_Conv2d_0"
      conv_stride, _ = self._conv_schedule
      net = self._track(self.conv_hyperparams.conv2d(
          self.width(32), 3, name=name, strides=conv_stride))(net)
      net = self._bn_relu6(net, name)
    for index in self._stage_units[stage_name]:
      net = self._separable_unit(net, index)
    return net
