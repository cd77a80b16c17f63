"""CGNet's trunk (Wu et al., "CGNet: A Light-weight Context Guided Network for
Semantic Segmentation", 2018/2020): made to be trained from scratch.

Three stages (M = 3, N = 21, the paper's main model, 0.49 M parameters):
  stem    three 3x3 conv-BN-PReLU (the first with stride 2), 32 channels;
  stage2  a down-sampling context guided (CG) block to 64 channels at stride
          4 (surrounding context dilated 2), then M - 1 = 2 CG blocks;
  stage3  a down-sampling CG block to 128 channels at stride 8 (dilation 4),
          then N - 1 = 20 CG blocks.
A CG block reads each position twice with channel-wise (depthwise) 3x3 convs,
once plainly (local feature) and once dilated (surrounding context), joins
the two with a BN-PReLU, and re-weights the channels by a squeeze of the
global context (two 1x1 convs and a sigmoid); inside a stage it adds its
input back. The image, average-pooled to each stage's size, is concatenated
to the features entering stages 2 and 3 ("input injection").

So that each stage is built from its input alone (what memory saving's
recomputation needs), a stage's output is the paper's concatenation *before*
its BN-PReLU, with the pooled image as its last three channels; the next
stage starts with that BN-PReLU and pools the image further from those
channels. The last stage's output is [stage3's first block, its last block]
(256 channels at width 1.0): architectures put the BN-PReLU and the
classifier on it.
"""

import tf_keras as keras

from fast_seg.feature_extractors import base

# (nominal width, surrounding dilation, global-context reduction, blocks)
# of stage2 and stage3: the paper's M = 3 and N = 21.
_STAGES = (("stage2", 64, 2, 8, 3), ("stage3", 128, 4, 16, 21))
_STEM_WIDTH = 32
# PyTorch's PReLU starts every slope at 0.25.
_PRELU_INITIAL_SLOPE = 0.25
_IMAGE_CHANNELS = 3


class ImageChannels(keras.layers.Layer):
  """The last three channels of a stage output: the injected, pooled image."""

  def call(self, inputs):
    return inputs[..., -_IMAGE_CHANNELS:]


@base.register("cgnet")
class CGNet(base.FeatureExtractor):
  """CGNet-M3N21 with stages stem (stride 2), stage2 (4) and stage3 (8)."""

  stage_names = ("stem", "stage2", "stage3")
  allowed_output_strides = (8,)

  def __init__(self, conv_hyperparams, filter_scale=1.0, output_stride=8,
               group_scales=None):
    super().__init__(conv_hyperparams, filter_scale, output_stride,
                     group_scales)
    self._stage_strides = {"stem": 2, "stage2": 4, "stage3": 8}

  def preprocess(self, images):
    """Maps float RGB images in [0, 255] to [-1, 1]."""
    return base.to_unit_range(images)

  def _build_stage(self, stage_name, net):
    if stage_name == "stem":
      return self._stem(net)
    _, nominal, dilation, reduction, blocks = next(
        s for s in _STAGES if s[0] == stage_name)
    name = f"{self.name}_{stage_name}"
    image = self._track(ImageChannels(name=f"{name}_image"))(net)
    net = self.bn_prelu(net, f"{name}_input")
    # Even, so a block's two halves (local, surrounding) add back to it.
    width = 2 * self.width(nominal / 2)
    first = self._down_block(net, width, dilation, reduction, f"{name}_down")
    net = first
    for i in range(1, blocks):
      net = self._block(net, width, dilation, reduction, f"{name}_block{i}")
    if stage_name == "stage3":
      return self._track(keras.layers.Concatenate(name=f"{name}_concat"))(
          [first, net])
    pooled = self._pool_image(image, f"{name}_inject")
    return self._track(keras.layers.Concatenate(name=f"{name}_concat"))(
        [net, first, pooled])

  def _stem(self, image):
    name = f"{self.name}_stem"
    width = self.width(_STEM_WIDTH)
    net = self._conv_bn_prelu(image, width, 3, f"{name}_conv1", strides=2)
    net = self._conv_bn_prelu(net, width, 3, f"{name}_conv2")
    net = self._conv_bn_prelu(net, width, 3, f"{name}_conv3")
    pooled = self._pool_image(image, f"{name}_inject")
    return self._track(keras.layers.Concatenate(name=f"{name}_concat"))(
        [net, pooled])

  def _pool_image(self, image, name):
    """3x3 average pooling with stride 2, as the paper's input injection."""
    return self._track(keras.layers.AveragePooling2D(
        3, strides=2, padding="same", name=name))(image)

  def bn_prelu(self, net, name):
    """Batch norm then PReLU with one slope per channel."""
    net = self._track(self.conv_hyperparams.batch_norm(name=f"{name}_bn"))(net)
    return self._track(keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(_PRELU_INITIAL_SLOPE),
        shared_axes=[1, 2], name=f"{name}_prelu"))(net)

  def _conv_bn_prelu(self, net, width, kernel_size, name, strides=1):
    net = self._track(self.conv_hyperparams.conv2d(
        width, kernel_size, name=name, strides=strides))(net)
    return self.bn_prelu(net, name)

  def _joint_feature(self, net, dilation, name):
    """[local 3x3, surrounding 3x3 dilated] channel-wise, joined by BN-PReLU."""
    local = self._track(self.conv_hyperparams.depthwise_conv2d(
        3, name=f"{name}_local"))(net)
    surround = self._track(self.conv_hyperparams.depthwise_conv2d(
        3, name=f"{name}_surround", dilation_rate=dilation))(net)
    joint = self._track(keras.layers.Concatenate(name=f"{name}_joint"))(
        [local, surround])
    return self.bn_prelu(joint, f"{name}_joint")

  def _global_context(self, net, reduction, name):
    """Channels re-weighted by a squeeze of the whole feature map."""
    channels = net.shape[-1]
    weights = self._track(keras.layers.GlobalAveragePooling2D(
        keepdims=True, name=f"{name}_global_pool"))(net)
    weights = self._track(self.conv_hyperparams.conv2d(
        max(1, channels // reduction), 1, name=f"{name}_global_fc1",
        use_bias=True, activation="relu"))(weights)
    weights = self._track(self.conv_hyperparams.conv2d(
        channels, 1, name=f"{name}_global_fc2", use_bias=True,
        activation="sigmoid"))(weights)
    return self._track(keras.layers.Multiply(name=f"{name}_global_scale"))(
        [net, weights])

  def _down_block(self, net, width, dilation, reduction, name):
    """Stride-2 CG block: 3x3 conv to `width`, joint feature, 1x1 back to
    `width`, global context; no residual (the shapes differ)."""
    net = self._conv_bn_prelu(net, width, 3, f"{name}_conv", strides=2)
    net = self._joint_feature(net, dilation, name)
    net = self._track(self.conv_hyperparams.conv2d(
        width, 1, name=f"{name}_reduce"))(net)
    return self._global_context(net, reduction, name)

  def _block(self, net, width, dilation, reduction, name):
    """CG block: 1x1 conv to width / 2, joint feature (width), global
    context, plus the block's input (global residual learning)."""
    inner = self._conv_bn_prelu(net, width // 2, 1, f"{name}_conv")
    inner = self._joint_feature(inner, dilation, name)
    inner = self._global_context(inner, reduction, name)
    return self._track(keras.layers.Add(name=f"{name}_add"))([net, inner])
