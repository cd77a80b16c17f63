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


def _flip(axis):
  """A transform reversing image and label along `axis` (0 rows, 1 columns)."""
  return lambda image, label: (tf.reverse(image, axis=[axis]),
                               tf.reverse(label, axis=[axis]))


def random_horizontal_flip(image, label, probability=0.5):
  """Mirrors image and label left-right together with `probability`.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    probability: chance of flipping, in [0, 1].

  Returns:
    (image, label), both flipped or both unchanged.
  """
  return _apply_with_probability(probability, _flip(1), image, label)


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


def _apply_with_probability(probability, transform, image, label):
  """Applies `transform` to the pair with `probability`, drawn once.

  One draw decides for image and label together, so they stay aligned.
  Python probabilities of 0 or 1 skip the draw.
  """
  if isinstance(probability, (int, float)):
    if probability >= 1.0:
      return transform(image, label)
    if probability <= 0.0:
      return image, label
  apply = tf.random.uniform([], dtype=tf.float32) < probability
  return tf.cond(apply, lambda: transform(image, label),
                 lambda: (image, label))


def _snap_to_integers(values, tolerance=1e-6):
  """Rounds values within `tolerance` of an integer to that integer.

  float32 trigonometry gives cos(90 deg) ~ -4e-8 and tan(45 deg) ~ 1 - 6e-8;
  snapping makes quarter turns and 45 degree shears map pixel centres onto
  pixel centres exactly instead of blending in a sliver of a neighbour.
  """
  rounded = tf.round(values)
  return tf.where(tf.abs(values - rounded) < tolerance, rounded, values)


def _about_centre(linear, image):
  """3x3 output->input map applying the 2x2 `linear` about the image centre.

  Pixel centres sit on integer coordinates (as in ImageProjectiveTransformV3),
  so the centre is ((W - 1) / 2, (H - 1) / 2); with it a quarter turn of a
  square image is an exact permutation of its pixels.
  """
  size = tf.cast(_spatial_shape(image), tf.float32)
  centre = tf.stack([(size[1] - 1.0) / 2.0, (size[0] - 1.0) / 2.0])
  linear = tf.convert_to_tensor(linear, tf.float32)
  # input = A (output - c) + c = A output + (c - A c).
  offset = centre - tf.linalg.matvec(linear, centre)
  top = tf.concat([linear, offset[:, None]], axis=1)
  return tf.concat([top, tf.constant([[0.0, 0.0, 1.0]])], axis=0)


def affine_transform(image, label, matrix, ignore_label):
  """Warps image (bilinear) and label (nearest) with one affine map.

  The output keeps the input size; pixels that map outside the input get
  IMAGE_PAD_VALUE in the image and `ignore_label` in the label, so the label
  values are a subset of the input's plus `ignore_label`.

  Args:
    image: float32 [H, W, C].
    label: int32 [H, W, 1].
    matrix: float32 [3, 3] (or [2, 3]) mapping an OUTPUT pixel (x, y, 1) to
      the INPUT point it samples, x = column, y = row, pixel centres on
      integers.
    ignore_label: label value for uncovered pixels.

  Returns:
    (image, label) of the input shapes.
  """
  matrix = tf.convert_to_tensor(matrix, tf.float32)
  transform = tf.concat([tf.reshape(matrix[:2], [6]), tf.zeros([2])], axis=0)
  transform = transform[None]
  output_shape = _spatial_shape(image)

  def warp(tensor, interpolation, fill_value):
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=tensor[None], transforms=transform, output_shape=output_shape,
        fill_value=tf.cast(fill_value, tf.float32),
        interpolation=interpolation, fill_mode="CONSTANT")[0]
    out.set_shape(tensor.shape)
    return out

  return (warp(image, "BILINEAR", IMAGE_PAD_VALUE),
          warp(label, "NEAREST", ignore_label))


def rotate(image, label, degrees, ignore_label):
  """Rotates image and label about the centre, counter-clockwise as seen.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    degrees: angle; 90 on a square image equals np.rot90(image, k=1).
    ignore_label: label value for uncovered pixels.

  Returns:
    (image, label) of the input size; uncovered pixels are 127.5 /
    `ignore_label`.
  """
  radians = tf.cast(degrees, tf.float32) * (math.pi / 180.0)
  cos = _snap_to_integers(tf.cos(radians))
  sin = _snap_to_integers(tf.sin(radians))
  # Output -> input map; rows point down, so this turns the content
  # counter-clockwise on screen.
  linear = tf.stack([tf.stack([cos, -sin]), tf.stack([sin, cos])])
  return affine_transform(image, label, _about_centre(linear, image),
                          ignore_label)


def shear(image, label, x_degrees, y_degrees, ignore_label):
  """Shears image and label about the centre.

  First x' = x + tan(x_degrees) * y, then y' = y + tan(y_degrees) * x (both
  relative to the centre); the product of two shears has determinant 1, so
  it is invertible for any pair of angles below 90 degrees.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    x_degrees: horizontal shear angle; rows below the centre move right.
    y_degrees: vertical shear angle; columns right of the centre move down.
    ignore_label: label value for uncovered pixels.

  Returns:
    (image, label) of the input size.
  """
  to_radians = math.pi / 180.0
  tx = _snap_to_integers(tf.tan(tf.cast(x_degrees, tf.float32) * to_radians))
  ty = _snap_to_integers(tf.tan(tf.cast(y_degrees, tf.float32) * to_radians))
  # Inverse of [[1, tx], [ty, 1 + tx ty]] (x shear, then y shear).
  linear = tf.stack([tf.stack([1.0 + tx * ty, -tx]), tf.stack([-ty, 1.0])])
  return affine_transform(image, label, _about_centre(linear, image),
                          ignore_label)


def zoom(image, label, factor, ignore_label):
  """Zooms image and label about the centre, keeping the size.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    factor: > 1 magnifies (the border is cut off), < 1 shrinks (the border is
      filled with 127.5 / `ignore_label`).
    ignore_label: label value for uncovered pixels.

  Returns:
    (image, label) of the input size.
  """
  inverse = 1.0 / tf.cast(factor, tf.float32)
  linear = tf.stack([tf.stack([inverse, 0.0]), tf.stack([0.0, inverse])])
  return affine_transform(image, label, _about_centre(linear, image),
                          ignore_label)


def random_rotation(image, label, min_degrees, max_degrees, ignore_label,
                    probability=1.0):
  """Rotates by an angle drawn uniformly from [min_degrees, max_degrees].

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    min_degrees: smallest angle (counter-clockwise positive).
    max_degrees: largest angle, >= min_degrees.
    ignore_label: label value for uncovered pixels.
    probability: chance of rotating at all, in [0, 1].

  Returns:
    (image, label), both rotated by the same angle or both unchanged.
  """
  def transform(image, label):
    degrees = tf.random.uniform([], min_degrees, max_degrees, tf.float32)
    return rotate(image, label, degrees, ignore_label)
  return _apply_with_probability(probability, transform, image, label)


def random_shear(image, label, max_degrees, ignore_label, shear_y=False,
                 probability=1.0):
  """Shears by angles drawn uniformly from [-max_degrees, max_degrees].

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    max_degrees: largest absolute angle, in [0, 90).
    ignore_label: label value for uncovered pixels.
    shear_y: also shear vertically, by its own angle.
    probability: chance of shearing at all, in [0, 1].

  Returns:
    (image, label), both sheared the same way or both unchanged.
  """
  def transform(image, label):
    x_degrees = tf.random.uniform([], -max_degrees, max_degrees, tf.float32)
    y_degrees = (tf.random.uniform([], -max_degrees, max_degrees, tf.float32)
                 if shear_y else 0.0)
    return shear(image, label, x_degrees, y_degrees, ignore_label)
  return _apply_with_probability(probability, transform, image, label)


def random_zoom(image, label, min_zoom, max_zoom, ignore_label,
                probability=1.0):
  """Zooms about the centre by a factor drawn from [min_zoom, max_zoom].

  Unlike random_scale the size is kept, so it can follow a crop.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    min_zoom: smallest factor, > 0.
    max_zoom: largest factor, >= min_zoom.
    ignore_label: label value for uncovered pixels.
    probability: chance of zooming at all, in [0, 1].

  Returns:
    (image, label), both zoomed by the same factor or both unchanged.
  """
  def transform(image, label):
    factor = tf.random.uniform([], min_zoom, max_zoom, tf.float32)
    return zoom(image, label, factor, ignore_label)
  return _apply_with_probability(probability, transform, image, label)


def random_vertical_flip(image, label, probability=0.5):
  """Mirrors image and label top-bottom together with `probability`.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    probability: chance of flipping, in [0, 1].

  Returns:
    (image, label), both flipped or both unchanged.
  """
  return _apply_with_probability(probability, _flip(0), image, label)


def _symmetric_indices(size, radius):
  """Indices of a symmetric (edge-repeating) padding by `radius` each side.

  Folding with period 2 * size works for any radius, also one larger than
  the image, where tf.pad(mode="SYMMETRIC") would fail.
  """
  period = 2 * size
  index = tf.math.floormod(tf.range(-radius, size + radius), period)
  return tf.where(index < size, index, period - 1 - index)


def gaussian_blur(image, sigma, radius):
  """Blurs each channel with a separable Gaussian kernel.

  The border is padded symmetrically, so a constant image stays constant and
  the border does not darken as with zero padding.

  Args:
    image: float32 [H, W, C].
    sigma: standard deviation in pixels, > 0 (may be a tensor).
    radius: kernel half-width, a Python int >= 1 (fixes the kernel size at
      graph-build time).

  Returns:
    float32 [H, W, C] of the input shape.
  """
  offsets = tf.range(-radius, radius + 1, dtype=tf.float32)
  kernel = tf.exp(-0.5 * tf.square(offsets / tf.cast(sigma, tf.float32)))
  kernel /= tf.reduce_sum(kernel)
  channels = image.shape[-1]
  if channels is None:
    channels = tf.shape(image)[-1]
  kernel = tf.tile(kernel[:, None, None, None], [1, 1, channels, 1])
  shape = _spatial_shape(image)
  padded = tf.gather(image, _symmetric_indices(shape[0], radius), axis=0)
  padded = tf.gather(padded, _symmetric_indices(shape[1], radius), axis=1)
  strides = [1, 1, 1, 1]
  out = tf.nn.depthwise_conv2d(padded[None], kernel, strides, "VALID")
  out = tf.nn.depthwise_conv2d(
      out, tf.transpose(kernel, [1, 0, 2, 3]), strides, "VALID")[0]
  out.set_shape(image.shape)
  return out


def random_gaussian_blur(image, label, min_sigma, max_sigma, probability=0.5):
  """Blurs the image with a sigma from [min_sigma, max_sigma]; label kept.

  Args:
    image: float32 [H, W, 3] in 0..255.
    label: int32 [H, W, 1], returned unchanged.
    min_sigma: smallest sigma in pixels, > 0.
    max_sigma: largest sigma, >= min_sigma; the kernel radius is
      ceil(3 * max_sigma).
    probability: chance of blurring, in [0, 1].

  Returns:
    (image, label) with the image in 0..255.
  """
  radius = max(1, int(math.ceil(3.0 * max_sigma)))

  def transform(image, label):
    sigma = tf.random.uniform([], min_sigma, max_sigma, tf.float32)
    blurred = gaussian_blur(image, sigma, radius)
    return tf.clip_by_value(blurred, 0.0, 255.0), label
  return _apply_with_probability(probability, transform, image, label)


def random_gaussian_noise(image, label, stddev, probability=0.5):
  """Adds zero-mean Gaussian noise to the image; label kept.

  Args:
    image: float32 [H, W, 3] in 0..255.
    label: int32 [H, W, 1], returned unchanged.
    stddev: noise standard deviation in 0..255 units, >= 0.
    probability: chance of adding noise, in [0, 1].

  Returns:
    (image, label) with the image clipped to 0..255.
  """
  def transform(image, label):
    noise = tf.random.normal(tf.shape(image), stddev=stddev, dtype=tf.float32)
    return tf.clip_by_value(image + noise, 0.0, 255.0), label
  return _apply_with_probability(probability, transform, image, label)


def fixed_row_crop(image, label, top, bottom):
  """Removes `top` rows at the top and `bottom` rows at the bottom.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    top: rows removed at the top, >= 0.
    bottom: rows removed at the bottom, >= 0.

  Returns:
    (image[top:H - bottom], label[top:H - bottom]); the height is static when
    H is.

  Raises:
    tf.errors.InvalidArgumentError: (when run) top + bottom >= H.
  """
  static_height = image.shape[0]
  height = _spatial_shape(image)[0]
  check = tf.debugging.assert_greater(
      height, top + bottom,
      message=f"fixed_row_crop: top ({top}) + bottom ({bottom}) rows leave "
              "no rows of the image")
  with tf.control_dependencies([check]):
    end = height - bottom
  image, label = image[top:end], label[top:end]
  if static_height is not None:
    image.set_shape([static_height - top - bottom] + image.shape[1:].as_list())
    label.set_shape([static_height - top - bottom] + label.shape[1:].as_list())
  return image, label


def resize_with_pad(image, label, height, width, ignore_label):
  """Fits the pair into height x width, keeping the aspect ratio.

  Scales by min(height / H, width / W) (image bilinear, label nearest), then
  pads at the bottom / right: the image with 127.5, the label with
  `ignore_label`, so the padding does not count in loss or metrics.

  Args:
    image: float32 [H, W, 3].
    label: int32 [H, W, 1].
    height: output height, > 0.
    width: output width, > 0.
    ignore_label: label value for padded pixels.

  Returns:
    (image, label) with static shapes [height, width, 3] / [height, width, 1];
    the content is round(H * s) x round(W * s) (at least 1 pixel) at the top
    left.
  """
  size = tf.cast(_spatial_shape(image), tf.float64)
  scale = tf.minimum(height / size[0], width / size[1])
  new_height = tf.clip_by_value(
      tf.cast(tf.round(size[0] * scale), tf.int32), 1, height)
  new_width = tf.clip_by_value(
      tf.cast(tf.round(size[1] * scale), tf.int32), 1, width)
  image, label = _resize_pair(image, label, tf.stack([new_height, new_width]))
  image, label = _pad_bottom_right(
      image, label, height - new_height, width - new_width, ignore_label)
  image = tf.ensure_shape(image, [height, width, image.shape[-1]])
  label = tf.ensure_shape(label, [height, width, label.shape[-1]])
  return image, label
