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


class ResizeByFactor(keras.layers.Layer):
  """Bilinear resize by a constant factor (0.5: half, 2.0: double).

  Output sizes round up, so odd sizes keep every input pixel covered.
  """
  # Output channel c is input channel c (for the filter pruner).
  channel_input = 0

  def __init__(self, factor, **kwargs):
    super().__init__(**kwargs)
    self.factor = factor

  def call(self, inputs):
    height, width = _spatial_size(inputs)
    if isinstance(height, int) and isinstance(width, int):
      size = (math.ceil(height * self.factor), math.ceil(width * self.factor))
    else:
      size = tf.cast(tf.math.ceil(
          tf.cast(tf.stack([height, width]), tf.float32) * self.factor), tf.int32)
    return _resize_bilinear(inputs, size)

  def get_config(self):
    return {**super().get_config(), "factor": self.factor}


class ResizeLike(keras.layers.Layer):
  """Bilinear resize of inputs[0] to the spatial size of inputs[1]."""
  # Output channel c is inputs[0]'s channel c (for the filter pruner).
  channel_input = 0

  def call(self, inputs):
    x, reference = inputs
    return _resize_bilinear(x, _spatial_size(reference))


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
