"""MobileNetV2 in tf-slim's layout, split into stages for segmentation.

The layers are those of slim's MobilenetV2 (Conv, expanded_conv,
expanded_conv_1..16) without the final 1x1 conv to 1280 and the classifier, so
the model-zoo checkpoint loads by a plain name map. `build_pyramid` (FPN
heads) adds that conv, Conv_1, and taps the expansion outputs that feed the
strided units, as Keras users (block_<i>_expand_relu, out_relu) and TF OD
API's FPN (layer_<i>/expansion_output, layer_19) do. `filter_scale` (or a
stage's group_widths scale) plays the role of slim's depth multiplier, with
the same rounding to multiples of 8.
"""

import tf_keras as keras

from fast_seg.feature_extractors import base
from fast_seg.protos import feature_extractor_pb2
from third_party import keras_applications_h5
from third_party import tf_slim_checkpoints

# Inverted-residual groups: (expansion t, output depth c, units n, stride s)
# of the first unit; the following units of a group have stride 1.
_GROUPS = (
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

_KERAS_PADDING = feature_extractor_pb2.FeatureExtractor.KerasPadding
# Which convs pad after only, per feature_extractor.keras_padding.
_PAD_AFTER_CONV1 = (_KERAS_PADDING.Value("CONV1_AND_DEPTHWISE_AFTER"),)
_PAD_AFTER_DEPTHWISE = (_KERAS_PADDING.Value("DEPTHWISE_AFTER"),
                        _KERAS_PADDING.Value("CONV1_AND_DEPTHWISE_AFTER"))

# Index of the last expanded_conv_i of each stage after the stem.
_STAGE_LAST_UNIT = (("stage2", 2), ("stage3", 5), ("stage4", 12),
                    ("stage5", 16))

# Width of Conv_1, the 1x1 conv after the last unit. Kept at every
# filter_scale <= 1, as Keras applications (alpha <= 1) and slim's
# finegrain_classification_mode do.
_CONV_1_DEPTH = 1280


def _unit_specs():
  """List of (unit name, expansion, depth, nominal stride) after `Conv`."""
  specs = [("expanded_conv", 1, 16, 1)]
  for expansion, depth, repeats, stride in _GROUPS:
    for i in range(repeats):
      specs.append((f"expanded_conv_{len(specs)}", expansion, depth,
                    stride if i == 0 else 1))
  return specs


@base.register("mobilenet_v2", imagenet_name_maps={
    base.WeightsFormat.TF_SLIM: tf_slim_checkpoints.mobilenet_v2,
    base.WeightsFormat.KERAS_H5: keras_applications_h5.mobilenet_v2})
class MobileNetV2(base.FeatureExtractor):
  """MobileNetV2 with stages stem (stride 2) and stage2..stage5 (4..32)."""

  stage_names = ("stem", "stage2", "stage3", "stage4", "stage5")
  allowed_output_strides = (8, 16, 32)
  # Honours feature_extractor.keras_padding (the feature extractor builder
  # asks).
  supports_keras_padding = True

  def __init__(self, conv_hyperparams, filter_scale=1.0, output_stride=8,
               group_scales=None, keras_padding=0):
    """See base.FeatureExtractor; besides:

    Args:
      keras_padding: a FeatureExtractor.KerasPadding value: which stride-2
        convs pad one row and column after only, as Keras-applications does
        for an input of unknown size (SAME: none).
    """
    super().__init__(conv_hyperparams, filter_scale, output_stride,
                     group_scales)
    self._pad_after = {"conv1": keras_padding in _PAD_AFTER_CONV1,
                       "depthwise": keras_padding in _PAD_AFTER_DEPTHWISE}
    # Fixed from the nominal strides so a stage built on its own gets the
    # same dilations as in a full build.
    tracker = base.StrideTracker(self.output_stride)
    self._conv_schedule = tracker.step(2)
    specs = _unit_specs()
    self._stage_units = {"stem": [specs[0]]}
    self._unit_schedule = {specs[0][0]: tracker.step(specs[0][3])}
    self._stage_strides = {"stem": tracker.current_stride}
    first = 1
    for stage_name, last in _STAGE_LAST_UNIT:
      self._stage_units[stage_name] = specs[first:last + 1]
      for unit_name, _, _, stride in specs[first:last + 1]:
        self._unit_schedule[unit_name] = tracker.step(stride)
      self._stage_strides[stage_name] = tracker.current_stride
      first = last + 1
    # Expansion output of each unit, by unit name (build_pyramid reads them).
    self._expansions = {}

  def _backbone_width(self, nominal, scale):
    """nominal * scale rounded to a multiple of 8, as slim does."""
    return base.make_divisible(nominal * scale, 8)

  def preprocess(self, images):
    """Maps float RGB images in [0, 255] to [-1, 1]."""
    return base.to_unit_range(images)

  def _bn_relu6(self, net, name, relu):
    net = self._track(self.conv_hyperparams.batch_norm(name=name + "_bn"))(net)
    if relu:
      net = self._track(keras.layers.ReLU(max_value=6.0, name=name + "_relu"))(
          net)
    return net

  def _padding(self, net, which, stride, name):
    """(net, padding) of a conv: Keras-applications' one row and column
    after, explicit, and then 'valid', where keras_padding asks for it."""
    if stride == 1 or not self._pad_after[which]:
      return net, "same"
    pad = self._track(keras.layers.ZeroPadding2D(((0, 1), (0, 1)),
                                                 name=name + "_pad"))
    return pad(net), "valid"

  def _conv(self, net, depth, kernel_size, name, strides=1, relu=True):
    net, padding = self._padding(net, "conv1", strides, name)
    net = self._track(self.conv_hyperparams.conv2d(
        depth, kernel_size, name=name, strides=strides, padding=padding))(net)
    return self._bn_relu6(net, name, relu)

  def _inverted_residual(self, net, name, expansion, depth, stride, rate,
                         new_width=False):
    """Expand 1x1 (if t > 1), depthwise 3x3, linear 1x1 projection.

    `new_width`: the input comes from a stage of another scale, so there is
    no residual add (as in the full model) even if the widths match.
    """
    in_depth = net.shape[-1]
    out_depth = self.width(depth)
    x = net
    if expansion > 1:
      x = self._conv(x, base.make_divisible(in_depth * expansion, 8), 1,
                     name + "_expand")
      self._expansions[name] = x
    x, padding = self._padding(x, "depthwise", stride, name + "_depthwise")
    x = self._track(self.conv_hyperparams.depthwise_conv2d(
        3, name=name + "_depthwise", strides=stride, dilation_rate=rate,
        padding=padding))(x)
    x = self._bn_relu6(x, name + "_depthwise", relu=True)
    x = self._conv(x, out_depth, 1, name + "_project", relu=False)
    # slim decides on the layer's actual stride, after output_stride.
    if stride == 1 and in_depth == out_depth and not new_width:
      x = self._track(keras.layers.Add(name=name + "_add"))([net, x])
    return x

  def _build_stage(self, stage_name, net):
    prefix = self.name
    if stage_name == "stem":
      conv_stride, _ = self._conv_schedule
      net = self._conv(net, self.width(32), 3, prefix + "_Conv",
                       strides=conv_stride)
    new_width = self._enters_new_width(stage_name)
    for unit_name, expansion, depth, _ in self._stage_units[stage_name]:
      stride, rate = self._unit_schedule[unit_name]
      net = self._inverted_residual(net, f"{prefix}_{unit_name}", expansion,
                                    depth, stride, rate, new_width)
      new_width = False
    return net

  def build_pyramid(self, inputs):
    """Strides 4, 8, 16: the expansion output of stage3's, stage4's and
    stage5's first (strided) unit; 32: Conv_1 (1x1 to 1280, batch norm,
    ReLU6) on the last stage. Needs output_stride 32.

    Raises:
      ValueError: output_stride is not 32.
    """
    if self.output_stride != 32:
      raise ValueError(f"{self.name}.build_pyramid needs output_stride 32, "
                       f"got {self.output_stride}")
    endpoints = self.build(inputs)
    pyramid = {}
    for previous, stage in zip(self.stage_names[1:-1], self.stage_names[2:]):
      unit = f"{self.name}_{self._stage_units[stage][0][0]}"
      pyramid[self.stage_strides[previous]] = self._expansions[unit]
    last = self.stage_names[-1]
    self._building_stage = last
    try:
      pyramid[self.stage_strides[last]] = self._conv(
          endpoints[last], _CONV_1_DEPTH, 1, f"{self.name}_Conv_1")
    finally:
      self._building_stage = None
    return pyramid
