"""The ResNet-50 trunk of the Keras ICNet of fritz-image-segmentation.

That project (Keras 2.2, ADE20K whitelists for Core ML apps) rebuilt the
Caffe ICNet's PSPNet-style ResNet-50 by hand; this backbone has its layout so
its trained .h5 files import (fast_seg.tools.import_weights --from
keras_fritz_icnet) and so such a model can be fine-tuned here:

- a deep stem: three 3x3 convs (64, 64, 128 at filter_scale 1.0), the first
  with stride 2, then an unpadded 3x3/2 max-pool (192 rows -> 95);
- bottleneck units whose stride sits on the FIRST unit's 1x1 convs (reduce
  and projection), with a projection shortcut on every block's first unit;
- every conv followed by a ReLU is conv -> ReLU -> batch norm (Keras'
  Conv2D(activation='relu') then BatchNormalization), not conv -> BN -> ReLU;
  the last 1x1 of a unit is conv -> BN, then add and ReLU;
- stages cut where ICNet splits it: conv3_1 alone (stride 8), so ICNet runs
  conv3_2..4, conv4 and conv5 on the quarter-resolution features.

That project's alpha is half of filter_scale: its alpha 1.0 (32-wide stem)
is filter_scale 0.5 here. Trained from scratch there: no ImageNet weights.
"""

import tensorflow as tf
import tf_keras as keras

from fast_seg.feature_extractors import base

# (stage, output depth, bottleneck depth, units, nominal stride of unit 1).
_BLOCKS = (
    ("conv2", 256, 64, 3, 1),
    ("conv3_1", 512, 128, 1, 2),
    ("conv3", 512, 128, 3, 1),
    ("conv4", 1024, 256, 6, 2),
    ("conv5", 2048, 512, 3, 2),
)
_STEM_DEPTHS = (64, 64, 128)
# The project's inputs: x / 255 - 0.5 (its tf.data pipeline).
_SCALE, _OFFSET = 1.0 / 255.0, -0.5


@base.register("resnet50_keras_icnet")
class ResNet50KerasICNet(base.FeatureExtractor):
  """Deep-stem ResNet-50, ReLU before batch norm, split at conv3_1."""

  stage_names = ("stem",) + tuple(block[0] for block in _BLOCKS)
  allowed_output_strides = (8, 16, 32)

  def __init__(self, conv_hyperparams, filter_scale=1.0, output_stride=8,
               group_scales=None):
    super().__init__(conv_hyperparams, filter_scale, output_stride,
                     group_scales)
    # (stride of the 1x1s, rate of the 3x3) per block: a dropped stride
    # turns into a dilation of the 3x3 convs of that same block (the
    # project's conv4 has rate 2 and conv5 rate 4 at output stride 8).
    tracker = base.StrideTracker(self.output_stride)
    tracker.step(2)  # stem conv
    tracker.step(2)  # max-pool
    self._stage_strides = {"stem": tracker.current_stride}
    self._schedule = {}
    for name, _, _, _, stride in _BLOCKS:
      stride, _ = tracker.step(stride)
      self._schedule[name] = (stride, tracker.step(1)[1])
      self._stage_strides[name] = tracker.current_stride

  def preprocess(self, images):
    """x / 255 - 0.5, the project's training input (its Core ML conversion
    used 2x / 255 - 1, which its models were not trained on)."""
    return tf.cast(images, tf.float32) * _SCALE + _OFFSET

  def _conv(self, net, depth, kernel_size, name, strides=1, rate=1,
            relu=True):
    """conv (no bias) (-> ReLU) -> batch norm; 3x3 convs padded 'same'."""
    hp = self.conv_hyperparams
    net = self._track(hp.conv2d(depth, kernel_size, name=name,
                                strides=strides, dilation_rate=rate))(net)
    if relu:
      net = self._track(keras.layers.ReLU(name=name + "_relu"))(net)
    return self._track(hp.batch_norm(name=name + "_bn"))(net)

  def _unit(self, net, prefix, depth, bottleneck_depth, stride, rate,
            projection):
    """One bottleneck: 1x1 reduce (strided), 3x3 (dilated), 1x1 increase."""
    if projection:
      shortcut = self._conv(net, depth, 1, prefix + "_1x1_proj",
                            strides=stride, relu=False)
    else:
      shortcut = net
    residual = self._conv(net, bottleneck_depth, 1, prefix + "_1x1_reduce",
                          strides=stride)
    residual = self._conv(residual, bottleneck_depth, 3, prefix + "_3x3",
                          rate=rate)
    residual = self._conv(residual, depth, 1, prefix + "_1x1_increase",
                          relu=False)
    net = self._track(keras.layers.Add(name=prefix + "_add"))(
        [shortcut, residual])
    return self._track(keras.layers.ReLU(name=prefix + "_relu"))(net)

  def _build_stage(self, stage_name, net):
    prefix = self.name
    if stage_name == "stem":
      for i, depth in enumerate(_STEM_DEPTHS, start=1):
        net = self._conv(net, self.width(depth), 3, f"{prefix}_conv1_{i}",
                         strides=2 if i == 1 else 1)
      return self._track(keras.layers.MaxPool2D(
          pool_size=3, strides=2, padding="valid",
          name=prefix + "_pool1"))(net)
    # build() has checked the name: every other stage is a block.
    _, depth, bottleneck_depth, units, _ = next(
        block for block in _BLOCKS if block[0] == stage_name)
    stride, rate = self._schedule[stage_name]
    first = 2 if stage_name == "conv3" else 1
    for unit in range(first, first + units):
      start = unit == first
      net = self._unit(net, f"{prefix}_{stage_name.split('_')[0]}_{unit}",
                       self.width(depth), self.width(bottleneck_depth),
                       stride if start else 1, rate,
                       projection=start and (
                           stage_name != "conv3"
                           or self._enters_new_width(stage_name)))
    return net
