"""Small Keras layers shared by the meta-architectures.

They are layers (not Lambdas) so that models serialize, export to TFLite /
ONNX / Core ML, and can be annotated for quantization-aware training.
"""

import math

import tensorflow as tf
import tf_keras as keras


def _spatial_size(x):
  """(height, width) as Python ints when static, else as scalar tensors."""
  dynamic = tf.shape(x)
  return tuple(x.shape[i] if x.shape[i] is not None else dynamic[i]
               for i in (1, 2))


def _resize_bilinear(images, size):
  """Bilinear resize in float32 that returns the input dtype.

  Under mixed precision, XLA rejects the float16 ResizeBilinear gradient
  (its float32 internals meet float16 neighbours), so the resize runs in
  float32 and only its output is cast back.
  """
  resized = tf.image.resize(tf.cast(images, tf.float32), size, method="bilinear")
  return tf.cast(resized, images.dtype)


# Resize conventions (ResizeLike.mode): tf.image.resize's half-pixel centres;
# TF1's align_corners=True; TF1's default (neither), which maps output pixel
# i to input i * in / out. NEAREST is nearest-neighbour (tf.image.resize's,
# half-pixel centres): at an integer factor f, output pixel i is input i // f
# in every convention (Keras' UpSampling2D).
HALF_PIXEL = "half_pixel"
ALIGN_CORNERS = "align_corners"
ASYMMETRIC = "asymmetric"
NEAREST = "nearest"
_RESIZE_MODES = (HALF_PIXEL, ALIGN_CORNERS, ASYMMETRIC, NEAREST)


def _resize_with(images, size, mode):
  """Resize by convention `mode`; bilinear ones in float32 inside, as above."""
  if mode == HALF_PIXEL:
    return _resize_bilinear(images, size)
  if mode == NEAREST:
    return tf.image.resize(images, size, method="nearest")
  resized = tf.raw_ops.ResizeBilinear(
      images=tf.cast(images, tf.float32), size=tf.cast(size, tf.int32),
      align_corners=mode == ALIGN_CORNERS, half_pixel_centers=False)
  return tf.cast(resized, images.dtype)


def _checked_mode(mode):
  if mode not in _RESIZE_MODES:
    raise ValueError(f"resize mode must be one of {', '.join(_RESIZE_MODES)}, "
                     f"got '{mode}'")
  return mode


class ResizeByFactor(keras.layers.Layer):
  """Bilinear resize by a constant factor (0.5: half, 2.0: double).

  Output sizes round up, so odd sizes keep every input pixel covered. With
  align_corners (the TF1 project's "Interp") the corner pixels stay corners
  and a size s becomes int((s - 1) * factor + 1): 2s - 1 when doubling.
  """
  # Output channel c is input channel c (for the filter pruner).
  channel_input = 0

  def __init__(self, factor, align_corners=False, asymmetric=False, **kwargs):
    """asymmetric: TF1's default convention (Keras 2.2's UpSampling2D), size
    rounding as without align_corners."""
    super().__init__(**kwargs)
    self.factor = factor
    self.align_corners = align_corners
    self.asymmetric = asymmetric

  def call(self, inputs):
    height, width = _spatial_size(inputs)
    if self.align_corners:
      if isinstance(height, int) and isinstance(width, int):
        size = (int((height - 1) * self.factor + 1),
                int((width - 1) * self.factor + 1))
      else:
        size = tf.cast((tf.cast(tf.stack([height, width]), tf.float64) - 1.0)
                       * self.factor + 1.0, tf.int32)
      return _resize_with(inputs, size, ALIGN_CORNERS)
    if isinstance(height, int) and isinstance(width, int):
      size = (math.ceil(height * self.factor), math.ceil(width * self.factor))
    else:
      size = tf.cast(tf.math.ceil(
          tf.cast(tf.stack([height, width]), tf.float32) * self.factor), tf.int32)
    if self.asymmetric:
      return _resize_with(inputs, size, ASYMMETRIC)
    return _resize_bilinear(inputs, size)

  def get_config(self):
    config = {**super().get_config(), "factor": self.factor,
              "align_corners": self.align_corners}
    if self.asymmetric:  # Older saved configs stay as they were.
      config["asymmetric"] = True
    return config


class ResizeLike(keras.layers.Layer):
  """Resize of inputs[0] to the spatial size of inputs[1].

  `mode` is the resize convention: HALF_PIXEL (tf.image.resize, bilinear),
  the TF1 ones, ALIGN_CORNERS and ASYMMETRIC, for models trained by TF1 code,
  or NEAREST (nearest-neighbour).
  """
  # Output channel c is inputs[0]'s channel c (for the filter pruner).
  channel_input = 0

  def __init__(self, mode=HALF_PIXEL, **kwargs):
    super().__init__(**kwargs)
    self.mode = _checked_mode(mode)

  def call(self, inputs):
    x, reference = inputs
    size = _spatial_size(reference)
    if self.mode not in (HALF_PIXEL, NEAREST):
      size = tf.stack(size)
    return _resize_with(x, size, self.mode)

  def get_config(self):
    return {**super().get_config(), "mode": self.mode}


class ChannelScale(keras.layers.Layer):
  """Multiplies each channel by a constant (no weights).

  The per-channel part of an input normalization (x - mean) / std_c kept in
  the network, so that preprocessing is one scale for all channels, as a
  Core ML image input requires.
  """
  # Output channel c is input channel c (for the filter pruner).
  channel_input = 0

  def __init__(self, scales, **kwargs):
    super().__init__(**kwargs)
    self.scales = [float(s) for s in scales]

  def call(self, inputs):
    return inputs * tf.constant(self.scales, inputs.dtype)

  def get_config(self):
    return {**super().get_config(), "scales": self.scales}


class LogitDifference(keras.layers.Layer):
  """[..., 2] logits -> [..., 1]: the second minus the first.

  sigmoid(l1 - l0) is softmax(l0, l1)'s second probability, so a two-logit
  softmax head trained elsewhere serves as a binary (sigmoid) model.
  """

  def call(self, inputs):
    return inputs[..., 1:2] - inputs[..., 0:1]


class AdaptiveAveragePool(keras.layers.Layer):
  """Average-pools a feature map to `bins` x `bins` cells.

  Cell i covers rows floor(i * H / bins) .. ceil((i + 1) * H / bins), as in
  PyTorch's adaptive pooling. With a static size whose cells are evenly spaced
  this is one AVG_POOL (kernel ceil(H / bins), stride floor(H / bins)), which
  every exporter supports; otherwise (unknown or small sizes) it averages the
  row bands and then the column bands with slices, which is exact and
  differentiable.
  """
  # Output channel c is input channel c (for the filter pruner).
  channel_input = 0

  def __init__(self, bins, **kwargs):
    super().__init__(**kwargs)
    self.bins = bins

  def _pool_geometry(self, size):
    stride = size // self.bins
    kernel = -(-size // self.bins)
    if stride < 1 or (size - kernel) // stride + 1 != self.bins:
      return None
    for i in range(self.bins):  # every window must be the adaptive cell
      if (i * stride != (i * size) // self.bins
          or i * stride + kernel != -(-(i + 1) * size // self.bins)):
        return None
    return kernel, stride

  def _band_means(self, x, size, axis):
    bands = []
    for i in range(self.bins):
      start = (i * size) // self.bins
      # ceil((i + 1) * size / bins) without a negative floor division:
      # ONNX's integer Div truncates, so -(-a // b) would come out as a // b
      # in a graph of dynamic size.
      end = ((i + 1) * size + self.bins - 1) // self.bins
      band = x[:, start:end] if axis == 1 else x[:, :, start:end]
      bands.append(tf.reduce_mean(band, axis=axis, keepdims=True))
    return tf.concat(bands, axis=axis)

  def call(self, inputs):
    height, width = _spatial_size(inputs)
    if isinstance(height, int) and isinstance(width, int):
      rows, cols = self._pool_geometry(height), self._pool_geometry(width)
      if rows and cols:
        return tf.nn.avg_pool2d(inputs, ksize=(rows[0], cols[0]),
                                strides=(rows[1], cols[1]), padding="VALID")
    pooled = self._band_means(inputs, height, axis=1)
    return self._band_means(pooled, width, axis=2)

  def get_config(self):
    return {**super().get_config(), "bins": self.bins}


class WindowAveragePool(keras.layers.Layer):
  """The TF1 project's pyramid pooling: unpadded windows of floor(size / bins).

  Window and stride are both floor(size / bins) (at least 1) on each axis, so
  the output has floor(size / window) cells, which is `bins` only when
  `bins` divides the size (a size of 8 pooled to 3 bins gives 4 cells of 2).
  A model imported from that project needs this; AdaptiveAveragePool is the
  exact bins x bins pooling.
  """
  # Output channel c is input channel c (for the filter pruner).
  channel_input = 0

  def __init__(self, bins, **kwargs):
    super().__init__(**kwargs)
    self.bins = bins

  def call(self, inputs):
    height, width = _spatial_size(inputs)
    if isinstance(height, int) and isinstance(width, int):
      window = (max(1, height // self.bins), max(1, width // self.bins))
      return tf.nn.avg_pool2d(inputs, ksize=window, strides=window,
                              padding="VALID")
    # Unknown size: crop to whole windows and average each by a reshape.
    rows = tf.maximum(1, height // self.bins)
    cols = tf.maximum(1, width // self.bins)
    num_rows, num_cols = height // rows, width // cols
    cropped = inputs[:, :num_rows * rows, :num_cols * cols]
    cells = tf.reshape(cropped, tf.stack(
        [tf.shape(inputs)[0], num_rows, rows, num_cols, cols,
         tf.shape(inputs)[3]]))
    return tf.reduce_mean(cells, axis=[2, 4])

  def get_config(self):
    return {**super().get_config(), "bins": self.bins}


def pyramid_pooling_layers(tf1_windows, resize_mode=ALIGN_CORNERS):
  """(pool layer class, ResizeLike mode) of a pyramid pooling module.

  fast_seg's: exact bins (AdaptiveAveragePool), half-pixel resizes back.
  tf1_windows: the TF1 project's WindowAveragePool, resized back by
  `resize_mode` (align corners there; asymmetric in the fritz Keras ICNet).
  """
  if tf1_windows:
    return WindowAveragePool, _checked_mode(resize_mode)
  return AdaptiveAveragePool, HALF_PIXEL
