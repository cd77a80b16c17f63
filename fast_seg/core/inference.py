"""Test-time inference: multi-scale, flipped and sliding-window predictions.

What researchers report as "multi-scale + flip" (DeepLab's eval_scales and
add_flipped_images, mmsegmentation's aug test) and "slide" inference for
images larger than the training crop:

- every view (a scale, optionally mirrored) is predicted, its logits are
  resized to the input size, turned into probabilities (softmax, or the
  sigmoid map of a binary model), mirrored back and averaged; the labels are
  the arg-max (or the thresholded map) of the average;
- with a sliding window each view is cut into overlapping windows of a fixed
  size, and the logits of the windows are averaged where they overlap
  (mmsegmentation's slide mode), giving the view's logits.

A single view without flip keeps the logits path of plain inference, so its
labels equal model.postprocess's bit for bit.
"""

import collections

import tensorflow as tf

from fast_seg.core import standard_fields as fields

SlidingWindow = collections.namedtuple("SlidingWindow", ["height", "width", "stride"])
SlidingWindow.__doc__ = """Window size and the step between window origins (pixels)."""


class TestTimeOptions(collections.namedtuple(
    "TestTimeOptions", ["scales", "flip", "window"])):
  """scales: input scale factors; flip: add mirrored views; window: or None."""

  __slots__ = ()

  @property
  def is_plain(self):
    """One view of the whole image: what model.postprocess alone computes."""
    return list(self.scales) == [1.0] and not self.flip and self.window is None


PLAIN = TestTimeOptions(scales=(1.0,), flip=False, window=None)


def predict(model, images, options=PLAIN, with_probabilities=False):
  """Labels (and probabilities) of `images` at their own size.

  Args:
    model: a core.model.SegmentationModel.
    images: uint8 or float [N, H, W, 3] in 0..255.
    options: TestTimeOptions.
    with_probabilities: also return the (averaged) probabilities.

  Returns:
    The dict model.postprocess returns: labels int32 [N, H, W], and
    probabilities float32 [N, H, W, C] (C = 1 for a binary model).
  """
  size = tf.shape(images)[1:3]
  views = [(scale, mirrored) for scale in options.scales
           for mirrored in ((False, True) if options.flip else (False,))]
  if len(views) == 1:
    logits = _view_logits(model, images, views[0][0], options.window)
    return model.postprocess(logits, size, with_probabilities=with_probabilities)
  total = None
  for scale, mirrored in views:
    view = tf.image.flip_left_right(images) if mirrored else images
    logits = tf.image.resize(
        _view_logits(model, view, scale, options.window), size, method="bilinear")
    probabilities = tf.sigmoid(logits) if model.is_binary else tf.nn.softmax(logits)
    if mirrored:
      probabilities = tf.image.flip_left_right(probabilities)
    total = probabilities if total is None else total + probabilities
  probabilities = total / float(len(views))
  if model.is_binary:
    labels = tf.cast(probabilities[..., 0] > model.binary_output.threshold, tf.int32)
  else:
    labels = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
  result = {fields.PredictionFields.labels: labels}
  if with_probabilities:
    result[fields.PredictionFields.probabilities] = probabilities
  return result


def _view_logits(model, images, scale, window):
  """Logits of `images` resized by `scale`: the model's own resolution for a
  whole-image view, the scaled input size for a sliding-window one."""
  images = tf.cast(images, tf.float32)
  if scale != 1.0:
    size = tf.cast(tf.round(tf.cast(tf.shape(images)[1:3], tf.float32) * scale),
                   tf.int32)
    images = tf.image.resize(images, tf.maximum(size, 1), method="bilinear")
  if window is None:
    return _logits(model, images)
  return _sliding_window_logits(model, images, window)


def _logits(model, images):
  logits = model.predict(model.preprocess(images))[fields.PredictionFields.logits]
  return tf.cast(logits, tf.float32)


def window_origins(length, window, stride):
  """Start offsets of windows of `window` pixels covering `length` pixels.

  Windows start every `stride` pixels; the last one is moved back so that it
  ends at the border (mmsegmentation's grid), so every pixel is covered when
  stride <= window. A length shorter than the window gives one window (the
  input is padded to it). Works on ints and on int32 scalar tensors.
  """
  count = (tf.maximum(length - window, 0) + stride - 1) // stride + 1
  starts = tf.range(count) * stride
  return tf.maximum(tf.minimum(starts, tf.maximum(length, window) - window), 0)


def _sliding_window_logits(model, images, window):
  """Logits at the size of `images`, averaged over overlapping windows."""
  height, width = tf.shape(images)[1], tf.shape(images)[2]
  padded_height = tf.maximum(height, window.height)
  padded_width = tf.maximum(width, window.width)
  # Images smaller than the window are padded (black) to it; cropped below.
  images = tf.pad(images, [[0, 0], [0, padded_height - height],
                           [0, padded_width - width], [0, 0]])
  rows = window_origins(height, window.height, window.stride)
  cols = window_origins(width, window.width, window.stride)
  num_cols = tf.size(cols)
  channels = model.inference_model.output_shape[-1]
  canvas = tf.zeros([tf.shape(images)[0], padded_height, padded_width, channels])
  counts = tf.zeros([1, padded_height, padded_width, 1])
  for index in tf.range(tf.size(rows) * num_cols):
    top, left = rows[index // num_cols], cols[index % num_cols]
    crop = images[:, top:top + window.height, left:left + window.width]
    crop = tf.ensure_shape(crop, [None, window.height, window.width, 3])
    logits = tf.image.resize(_logits(model, crop), [window.height, window.width],
                             method="bilinear")
    paddings = [[0, 0], [top, padded_height - top - window.height],
                [left, padded_width - left - window.width], [0, 0]]
    canvas += tf.pad(logits, paddings)
    counts += tf.pad(tf.ones([1, window.height, window.width, 1]), paddings)
  return (canvas / counts)[:, :height, :width]
