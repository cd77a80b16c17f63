"""ResNet-50 v1 in tf-slim's topology, split into stages for segmentation.

The layout follows tf-slim's resnet_v1_50 (so its model-zoo checkpoint loads
by a plain name map): a 7x7/2 stem conv and a 3x3/2 max-pool, then four blocks
of bottleneck units where the stride of blocks 1-3 sits on the LAST unit of
the block and block 4 keeps stride 1. Past `output_stride`, strides turn into
dilations (slim's rule, see base.StrideTracker).
"""

import tensorflow as tf
import tf_keras as keras

from fast_seg.feature_extractors import base
from third_party import keras_applications_h5
from third_party import tf_slim_checkpoints

# RGB ImageNet means that the slim model-zoo ResNets were trained with.
_RGB_MEANS = (123.68, 116.78, 103.94)

# (block name, output depth, bottleneck depth, nominal stride of each unit).
_BLOCKS = (
    ("block1", 256, 64, (1, 1, 2)),
    ("block2", 512, 128, (1, 1, 1, 2)),
    ("block3", 1024, 256, (1, 1, 1, 1, 1, 2)),
    ("block4", 2048, 512, (1, 1, 1)),
)
_BLOCK_DEPTHS = {name: (depth, bottleneck_depth)
                 for name, depth, bottleneck_depth, _ in _BLOCKS}


@base.register("resnet_v1_50", imagenet_name_maps={
    base.WeightsFormat.TF_SLIM: tf_slim_checkpoints.resnet_v1_50,
    base.WeightsFormat.KERAS_H5: keras_applications_h5.resnet50})
class ResNetV1_50(base.FeatureExtractor):  # pylint: disable=invalid-name
  """ResNet-50 v1 with stages stem (stride 4) and block1..block4."""

  stage_names = ("stem", "block1", "block2", "block3", "block4")
  allowed_output_strides = (8, 16, 32)
  # Honours feature_extractor.slim_explicit_padding and
  # stage_dilation_multipliers (the feature extractor builder asks).
  supports_slim_layout = True

  def __init__(self, conv_hyperparams, filter_scale=1.0, output_stride=8,
               group_scales=None, slim_explicit_padding=False,
               dilation_multipliers=None):
    """See base.FeatureExtractor; besides:

    Args:
      slim_explicit_padding: strided convs pad as slim's conv2d_same.
      dilation_multipliers: {stage: int >= 1} multiplying that block's rates.
    """
    super().__init__(conv_hyperparams, filter_scale, output_stride,
                     group_scales)
    self._slim_padding = bool(slim_explicit_padding)
    multipliers = self._checked_multipliers(dilation_multipliers)
    # The whole (stride, rate) schedule is fixed here from the nominal
    # strides, so a stage built on its own gets the same dilations as in a
    # full build.
    tracker = base.StrideTracker(self.output_stride)
    self._stem_schedule = (tracker.step(2), tracker.step(2))
    self._stage_strides = {"stem": tracker.current_stride}
    self._unit_schedule = {}
    for block_name, _, _, strides in _BLOCKS:
      self._unit_schedule[block_name] = tuple(
          (stride, rate * multipliers.get(block_name, 1))
          for stride, rate in (tracker.step(s) for s in strides))
      self._stage_strides[block_name] = tracker.current_stride

  def _checked_multipliers(self, multipliers):
    """{block: multiplier}, refused (naming the field) when invalid."""
    checked = {}
    for stage, multiplier in dict(multipliers or {}).items():
      field = f"feature_extractor.stage_dilation_multipliers['{stage}']"
      if stage not in _BLOCK_DEPTHS:
        raise ValueError(f"{field}: not a block of {self.name}; allowed: "
                         f"{', '.join(_BLOCK_DEPTHS)}")
      if multiplier < 1:
        raise ValueError(f"{field}.multiplier must be >= 1, got {multiplier}")
      checked[stage] = int(multiplier)
    return checked

  def preprocess(self, images):
    """Subtracts the ImageNet RGB means from float RGB images in [0, 255]."""
    images = tf.cast(images, tf.float32)
    return images - tf.constant(_RGB_MEANS, dtype=tf.float32)

  def _conv_bn(self, net, depth, kernel_size, name, strides=1, rate=1,
               relu=True):
    """Conv (no bias) + batch norm (+ ReLU), the slim conv2d of resnet."""
    hp = self.conv_hyperparams
    padding = "same"
    if self._slim_padding and strides > 1 and kernel_size > 1:
      # slim's conv2d_same: the whole padding explicit, the extra row after.
      total = (kernel_size - 1) * rate
      net = self._track(keras.layers.ZeroPadding2D(
          ((total // 2, total - total // 2),) * 2, name=name + "_pad"))(net)
      padding = "valid"
    net = self._track(hp.conv2d(
        depth, kernel_size, name=name, strides=strides,
        dilation_rate=rate, padding=padding))(net)
    net = self._track(hp.batch_norm(name=name + "_bn"))(net)
    if relu:
      net = self._track(keras.layers.ReLU(name=name + "_relu"))(net)
    return net

  def _bottleneck(self, net, prefix, depth, bottleneck_depth, stride, rate,
                  new_width=False):
    """One bottleneck_v1 unit; the stride sits on the 3x3 conv as in slim.

    `new_width`: the input comes from a stage of another scale, so the unit
    keeps its projection shortcut even if the widths happen to match.
    """
    depth = self.width(depth)
    bottleneck_depth = self.width(bottleneck_depth)
    if net.shape[-1] == depth and not new_width:
      shortcut = net
      if stride > 1:
        # A 1x1 max-pool with stride is plain subsampling.
        shortcut = self._track(keras.layers.MaxPool2D(
            pool_size=1, strides=stride, padding="same",
            name=prefix + "_shortcut_pool"))(net)
    else:
      shortcut = self._conv_bn(net, depth, 1, prefix + "_shortcut",
                               strides=stride, relu=False)
    residual = self._conv_bn(net, bottleneck_depth, 1, prefix + "_conv1")
    residual = self._conv_bn(residual, bottleneck_depth, 3, prefix + "_conv2",
                             strides=stride, rate=rate)
    residual = self._conv_bn(residual, depth, 1, prefix + "_conv3",
                             relu=False)
    net = self._track(keras.layers.Add(name=prefix + "_add"))(
        [shortcut, residual])
    return self._track(keras.layers.ReLU(name=prefix + "_relu"))(net)

  def _build_stage(self, stage_name, net):
    prefix = self.name
    if stage_name == "stem":
      (conv_stride, conv_rate), (pool_stride, _) = self._stem_schedule
      net = self._conv_bn(net, self.width(64), 7, prefix + "_conv1",
                          strides=conv_stride, rate=conv_rate)
      return self._track(keras.layers.MaxPool2D(
          pool_size=3, strides=pool_stride, padding="same",
          name=prefix + "_pool1"))(net)
    # build() has checked the name: every other stage is a block.
    depth, bottleneck_depth = _BLOCK_DEPTHS[stage_name]
    schedule = self._unit_schedule[stage_name]
    new_width = self._enters_new_width(stage_name)
    for unit, (stride, rate) in enumerate(schedule, start=1):
      net = self._bottleneck(net, f"{prefix}_{stage_name}_unit_{unit}", depth,
                             bottleneck_depth, stride, rate,
                             new_width=new_width and unit == 1)
    return net
