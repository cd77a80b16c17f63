"""Augmentations on one (image, label) pair, as pure TF ops for tf.data.

Conventions: `image` is float32 [H, W, 3] with values in 0..255, `label` is
int32 [H, W, 1] of class ids or the ignore label. Geometric ops move image and
label together; the label is always resized with nearest neighbour (class ids
must not be blended) and padded with the ignore label (padding with 0 would
teach the model that the border is class 0).
"""

import math

import tensorflow as tf

# Image padding value: mid grey, which is ~0 after the models' normalisation.
IMAGE_PAD_VALUE = 127.5


def _spatial_shape(image):
  """Returns [height, width] of an [H, W, C] tensor as int32."""
  return tf.shape(image)[:2]


def _resize_pair(image, label, size):
  """Resizes image bilinearly and label by nearest neighbour to `size`."""
  image = tf.image.resize(image, size, method=tf.image.ResizeMethod.BILINEAR)
  label = tf.image.resize(
      label, size, method=tf.image.ResizeMethod.NEAREST_NEIGHBOR)
  return image, label


def random_scale(image, label, min_scale, max_scale, step=0.0):
  """Resizes image and label by one random factor.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    min_scale: smallest factor, > 0.
    max_scale: largest factor, >= min_scale.
    step: > 0 draws from {min, min + step, ..., <= max}; 0 draws uniformly
      from [min, max].

  Returns:
    (image, label) with size round(H * s) x round(W * s); image resized
    bilinearly, label by nearest neighbour, so its values are a subset of the
    input's.
  """
  if min_scale == 1.0 and max_scale == 1.0:
    return image, label
  if step > 0:
    # The epsilon keeps max itself when (max - min) / step is whole but
    # rounds to just below it in floating point.
    num_values = int(math.floor((max_scale - min_scale) / step + 1e-6)) + 1
    index = tf.random.uniform([], 0, num_values, dtype=tf.int32)
    scale = min_scale + tf.cast(index, tf.float32) * step
  else:
    scale = tf.random.uniform([], min_scale, max_scale, dtype=tf.float32)
  size = tf.cast(_spatial_shape(image), tf.float32) * scale
  size = tf.maximum(tf.cast(tf.round(size), tf.int32), 1)
  return _resize_pair(image, label, size)


def _pad_bottom_right(image, label, pad_h, pad_w, ignore_label):
  """Pads image with IMAGE_PAD_VALUE and label with the ignore label."""
  paddings = [[0, pad_h], [0, pad_w], [0, 0]]
  image = tf.pad(image, paddings, constant_values=IMAGE_PAD_VALUE)
  label = tf.pad(label, paddings,
                 constant_values=tf.cast(ignore_label, label.dtype))
  return image, label


def random_crop(image, label, crop_height, crop_width, ignore_label):
  """Crops the same random window from image and label.

  An image smaller than the crop is first padded at the bottom / right: the
  image with 127.5 (mid grey), the label with `ignore_label` (never 0).

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    crop_height: output height, > 0.
    crop_width: output width, > 0.
    ignore_label: label value for padded pixels.

  Returns:
    (image, label) with static shapes [crop_height, crop_width, 3] and
    [crop_height, crop_width, 1].
  """
  shape = _spatial_shape(image)
  pad_h = tf.maximum(crop_height - shape[0], 0)
  pad_w = tf.maximum(crop_width - shape[1], 0)
  image, label = _pad_bottom_right(image, label, pad_h, pad_w, ignore_label)
  shape = _spatial_shape(image)
  offset_h = tf.random.uniform(
      [], 0, shape[0] - crop_height + 1, dtype=tf.int32)
  offset_w = tf.random.uniform(
      [], 0, shape[1] - crop_width + 1, dtype=tf.int32)
  image = image[offset_h:offset_h + crop_height,
                offset_w:offset_w + crop_width]
  label = label[offset_h:offset_h + crop_height,
                offset_w:offset_w + crop_width]
  image = tf.ensure_shape(image, [crop_height, crop_width, image.shape[-1]])
  label = tf.ensure_shape(label, [crop_height, crop_width, label.shape[-1]])
  return image, label


def random_horizontal_flip(image, label, probability=0.5):
  """Mirrors image and label left-right together with `probability`.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    probability: chance of flipping, in [0, 1].

  Returns:
    (image, label), both flipped or both unchanged.
  """
  flip = tf.random.uniform([], dtype=tf.float32) < probability
  return tf.cond(
      flip,
      lambda: (tf.reverse(image, axis=[1]), tf.reverse(label, axis=[1])),
      lambda: (image, label))


def fixed_resize(image, label, height, width):
  """Resizes image (bilinear) and label (nearest) to a fixed size.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    height: output height, > 0.
    width: output width, > 0.

  Returns:
    (image, label) with static shapes [height, width, 3] / [height, width, 1].
  """
  image, label = _resize_pair(image, label, [height, width])
  image = tf.ensure_shape(image, [height, width, image.shape[-1]])
  label = tf.ensure_shape(label, [height, width, label.shape[-1]])
  return image, label


def color_jitter(image, brightness_delta=0.125, contrast_range=0.5,
                 saturation_range=0.5, hue_delta=0.05):
  """Random photometric changes to the image; the label is not involved.

  Each part draws its own factor; a part whose parameter is 0 is skipped.
  Values are clipped after each part so later parts see a valid image.

  Args:
    image: float32 [H, W, 3] in 0..255.
    brightness_delta: adds a value from [-d, d] of the full range (0..1).
    contrast_range: contrast factor from [1 - r, 1 + r].
    saturation_range: saturation factor from [1 - r, 1 + r].
    hue_delta: hue shift from [-d, d] of a full turn (<= 0.5).

  Returns:
    float32 [H, W, 3] in 0..255.
  """
  x = image / 255.0
  if brightness_delta > 0:
    x += tf.random.uniform([], -brightness_delta, brightness_delta)
    x = tf.clip_by_value(x, 0.0, 1.0)
  if contrast_range > 0:
    factor = tf.random.uniform([], 1.0 - contrast_range, 1.0 + contrast_range)
    x = tf.clip_by_value(tf.image.adjust_contrast(x, factor), 0.0, 1.0)
  if saturation_range > 0:
    factor = tf.random.uniform(
        [], 1.0 - saturation_range, 1.0 + saturation_range)
    x = tf.clip_by_value(tf.image.adjust_saturation(x, factor), 0.0, 1.0)
  if hue_delta > 0:
    delta = tf.random.uniform([], -hue_delta, hue_delta)
    x = tf.clip_by_value(tf.image.adjust_hue(x, delta), 0.0, 1.0)
  return x * 255.0


def pad_to_size(image, label, height, width, ignore_label):
  """Pads image and label at the bottom / right to a fixed size.

  Used by padded evaluation: the padded label pixels carry the ignore label,
  so they do not count in the metrics.

  Args:
    image: float32 [H, W, 3] with H <= height and W <= width.
    label: int32 [H, W, 1].
    height: output height.
    width: output width.
    ignore_label: label value for padded pixels.

  Returns:
    (image, label) with static shapes [height, width, 3] / [height, width, 1].

  Raises:
    tf.errors.InvalidArgumentError: (when run) the image is larger than
      height x width.
  """
  shape = _spatial_shape(image)
  check = tf.debugging.assert_less_equal(
      shape, tf.constant([height, width], tf.int32),
      message=f"pad_to_size: image is larger than {height}x{width}")
  with tf.control_dependencies([check]):
    pad_h = height - shape[0]
    pad_w = width - shape[1]
  image, label = _pad_bottom_right(image, label, pad_h, pad_w, ignore_label)
  image = tf.ensure_shape(image, [height, width, image.shape[-1]])
  label = tf.ensure_shape(label, [height, width, label.shape[-1]])
  return image, label
