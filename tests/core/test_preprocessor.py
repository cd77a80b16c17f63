"""Tests for fast_seg.core.preprocessor."""

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.core import preprocessor

IGNORE = 255


def _position_pair(height, width):
  """Image whose channel 0 holds each pixel's index; label holds it too.

  A geometric op that moves image and label together keeps
  image[..., 0] == label[..., 0]; lets tests check alignment pixel by pixel.
  """
  index = np.arange(height * width, dtype=np.int32).reshape(height, width)
  image = np.stack([index, index % 7, index % 5], axis=-1).astype(np.float32)
  return tf.constant(image), tf.constant(index[..., None])


def _unknown_shape_fn(fn):
  """Wraps fn in a tf.function with unknown H and W, to check static shapes."""
  return tf.function(fn, input_signature=[
      tf.TensorSpec([None, None, 3], tf.float32),
      tf.TensorSpec([None, None, 1], tf.int32)])


def test_random_crop_pads_image_with_grey_and_label_with_ignore():
  image = tf.fill([3, 4, 3], 10.0)
  label = tf.fill([3, 4, 1], 2)
  out_image, out_label = preprocessor.random_crop(image, label, 5, 6, IGNORE)
  out_image, out_label = out_image.numpy(), out_label.numpy()
  assert out_image.shape == (5, 6, 3) and out_label.shape == (5, 6, 1)
  # The crop is the whole padded canvas; the original sits top-left.
  np.testing.assert_array_equal(out_image[:3, :4], 10.0)
  np.testing.assert_array_equal(out_label[:3, :4], 2)
  np.testing.assert_array_equal(out_image[3:], 127.5)
  np.testing.assert_array_equal(out_image[:, 4:], 127.5)
  np.testing.assert_array_equal(out_label[3:], IGNORE)
  np.testing.assert_array_equal(out_label[:, 4:], IGNORE)
  assert 0 not in out_label  # never padded with class 0


def test_random_crop_pads_one_side_and_crops_the_other():
  image, label = _position_pair(10, 3)
  for _ in range(10):
    out_image, out_label = preprocessor.random_crop(image, label, 4, 5, IGNORE)
    out_image, out_label = out_image.numpy(), out_label.numpy()
    np.testing.assert_array_equal(out_label[:, 3:], IGNORE)
    np.testing.assert_array_equal(out_image[:, 3:], 127.5)
    np.testing.assert_array_equal(out_image[:, :3, 0], out_label[:, :3, 0])


def test_random_crop_keeps_image_and_label_aligned():
  image, label = _position_pair(12, 15)
  offsets = set()
  for _ in range(20):
    out_image, out_label = preprocessor.random_crop(image, label, 5, 6, IGNORE)
    out_image, out_label = out_image.numpy(), out_label.numpy()
    np.testing.assert_array_equal(out_image[..., 0], out_label[..., 0])
    # A contiguous window of the original.
    top_left = out_label[0, 0, 0]
    row, col = divmod(top_left, 15)
    expected = np.arange(15 * 12).reshape(12, 15)[row:row + 5, col:col + 6]
    np.testing.assert_array_equal(out_label[..., 0], expected)
    offsets.add((row, col))
  assert len(offsets) > 1  # the window moves


def test_random_crop_output_shape_is_static():
  fn = _unknown_shape_fn(
      lambda i, l: preprocessor.random_crop(i, l, 7, 9, IGNORE))
  out_image, out_label = fn.get_concrete_function().structured_outputs
  assert out_image.shape.as_list() == [7, 9, 3]
  assert out_label.shape.as_list() == [7, 9, 1]


def test_random_horizontal_flip_always_and_never():
  image, label = _position_pair(4, 5)
  flipped_image, flipped_label = preprocessor.random_horizontal_flip(
      image, label, 1.0)
  np.testing.assert_array_equal(flipped_image, image.numpy()[:, ::-1])
  np.testing.assert_array_equal(flipped_label, label.numpy()[:, ::-1])
  same_image, same_label = preprocessor.random_horizontal_flip(
      image, label, 0.0)
  np.testing.assert_array_equal(same_image, image)
  np.testing.assert_array_equal(same_label, label)


def test_random_horizontal_flip_moves_image_and_label_together():
  image, label = _position_pair(4, 5)
  seen = set()
  for _ in range(30):
    out_image, out_label = preprocessor.random_horizontal_flip(
        image, label, 0.5)
    np.testing.assert_array_equal(out_image.numpy()[..., 0],
                                  out_label.numpy()[..., 0])
    seen.add(bool(out_label.numpy()[0, 0, 0] == 4))
  assert seen == {True, False}


def test_random_scale_label_values_are_a_subset():
  rng = np.random.default_rng(0)
  label = tf.constant(rng.choice([0, 3, 7, IGNORE], size=(20, 24, 1)),
                      tf.int32)
  image = tf.constant(rng.uniform(0, 255, size=(20, 24, 3)), tf.float32)
  for _ in range(10):
    out_image, out_label = preprocessor.random_scale(image, label, 0.5, 2.0)
    assert out_label.dtype == tf.int32
    assert set(np.unique(out_label)) <= {0, 3, 7, IGNORE}
    height, width = out_label.shape[:2]
    assert out_image.shape[:2] == (height, width)
    assert 10 <= height <= 40 and 12 <= width <= 48
    assert 0.0 <= out_image.numpy().min() and out_image.numpy().max() <= 255.0


def test_random_scale_with_step_draws_from_the_grid():
  image, label = _position_pair(10, 10)
  heights = set()
  for _ in range(40):
    out_image, _ = preprocessor.random_scale(image, label, 0.5, 1.5, 0.25)
    heights.add(out_image.shape[0])
  assert heights <= {5, 8, 10, 12, 15}  # round(10 * s); 7.5 rounds to even
  assert len(heights) >= 3


def test_random_scale_identity_when_fixed_at_one():
  image, label = _position_pair(6, 7)
  out_image, out_label = preprocessor.random_scale(image, label, 1.0, 1.0)
  assert out_image is image and out_label is label


def test_fixed_resize_static_shape_and_nearest_labels():
  fn = _unknown_shape_fn(lambda i, l: preprocessor.fixed_resize(i, l, 8, 10))
  out_image, out_label = fn.get_concrete_function().structured_outputs
  assert out_image.shape.as_list() == [8, 10, 3]
  assert out_label.shape.as_list() == [8, 10, 1]
  label = tf.constant(np.array([[1, 2], [3, IGNORE]])[..., None], tf.int32)
  image = tf.zeros([2, 2, 3])
  _, resized = fn(image, label)
  expected = np.repeat(np.repeat([[1, 2], [3, IGNORE]], 4, 0), 5, 1)
  np.testing.assert_array_equal(resized.numpy()[..., 0], expected)


@pytest.mark.parametrize("fill", [0.0, 128.0, 255.0])
def test_color_jitter_stays_in_range(fill):
  rng = np.random.default_rng(1)
  image = tf.constant(
      np.clip(fill + rng.normal(0, 30, size=(8, 8, 3)), 0, 255), tf.float32)
  for _ in range(10):
    out = preprocessor.color_jitter(image, 0.5, 0.9, 0.9, 0.5).numpy()
    assert out.shape == (8, 8, 3) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_color_jitter_changes_the_image_and_zero_disables_it():
  rng = np.random.default_rng(2)
  image = tf.constant(rng.uniform(20, 230, size=(8, 8, 3)), tf.float32)
  unchanged = preprocessor.color_jitter(image, 0.0, 0.0, 0.0, 0.0)
  np.testing.assert_allclose(unchanged, image, atol=1e-3)
  changed = preprocessor.color_jitter(image, 0.2, 0.0, 0.0, 0.0)
  assert np.abs(changed.numpy() - image.numpy()).max() > 0


def test_pad_to_size_values_and_static_shape():
  image = tf.fill([2, 3, 3], 50.0)
  label = tf.fill([2, 3, 1], 1)
  out_image, out_label = preprocessor.pad_to_size(image, label, 4, 5, IGNORE)
  assert out_image.shape == (4, 5, 3) and out_label.shape == (4, 5, 1)
  np.testing.assert_array_equal(out_image.numpy()[:2, :3], 50.0)
  np.testing.assert_array_equal(out_label.numpy()[:2, :3], 1)
  np.testing.assert_array_equal(out_label.numpy()[2:], IGNORE)
  np.testing.assert_array_equal(out_label.numpy()[:, 3:], IGNORE)
  np.testing.assert_array_equal(out_image.numpy()[2:], 127.5)
  fn = _unknown_shape_fn(
      lambda i, l: preprocessor.pad_to_size(i, l, 4, 5, IGNORE))
  out_image, out_label = fn.get_concrete_function().structured_outputs
  assert out_image.shape.as_list() == [4, 5, 3]
  assert out_label.shape.as_list() == [4, 5, 1]


def test_pad_to_size_rejects_larger_images():
  image, label = tf.zeros([5, 3, 3]), tf.zeros([5, 3, 1], tf.int32)
  with pytest.raises(tf.errors.InvalidArgumentError, match="larger than 4x5"):
    preprocessor.pad_to_size(image, label, 4, 5, IGNORE)


def _random_pair(height, width, seed=0, values=(0, 3, 7)):
  rng = np.random.default_rng(seed)
  image = tf.constant(rng.uniform(0, 255, size=(height, width, 3)),
                      tf.float32)
  label = tf.constant(rng.choice(values, size=(height, width, 1)), tf.int32)
  return image, label


@pytest.mark.parametrize("size", [5, 6])
def test_rotate_quarter_turn_equals_rot90(size):
  image, label = _position_pair(size, size)
  out_image, out_label = preprocessor.rotate(image, label, 90.0, IGNORE)
  np.testing.assert_array_equal(out_image, np.rot90(image.numpy(), k=1))
  np.testing.assert_array_equal(out_label, np.rot90(label.numpy(), k=1))
  out_image, out_label = preprocessor.rotate(image, label, -90.0, IGNORE)
  np.testing.assert_array_equal(out_image, np.rot90(image.numpy(), k=-1))
  np.testing.assert_array_equal(out_label, np.rot90(label.numpy(), k=-1))


def test_rotate_by_zero_is_identity():
  image, label = _position_pair(4, 7)
  out_image, out_label = preprocessor.rotate(image, label, 0.0, IGNORE)
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_label, label)


def test_rotate_non_square_fills_uncovered_pixels():
  # 3x5: the centre (2, 1) is a pixel centre, so the turn is exact. Output
  # (row y, column x) samples input row x - 1, column 3 - y; columns 0 and 4
  # map to rows -1 and 3, outside the image.
  image, label = _position_pair(3, 5)
  out_image, out_label = preprocessor.rotate(image, label, 90.0, IGNORE)
  out_image, out_label = out_image.numpy(), out_label.numpy()
  assert out_image.shape == (3, 5, 3) and out_label.shape == (3, 5, 1)
  index = np.arange(15).reshape(3, 5)
  expected = np.full((3, 5), IGNORE)
  expected[:, 1:4] = np.rot90(index[:, 1:4])
  np.testing.assert_array_equal(out_label[..., 0], expected)
  np.testing.assert_array_equal(out_image[:, [0, 4]], 127.5)
  np.testing.assert_array_equal(out_image[:, 1:4, 0], expected[:, 1:4])


def test_random_rotation_labels_are_a_subset_and_shape_is_kept():
  image, label = _random_pair(9, 12)
  for _ in range(5):
    out_image, out_label = preprocessor.random_rotation(
        image, label, -30.0, 30.0, IGNORE)
    assert out_image.shape == (9, 12, 3) and out_label.shape == (9, 12, 1)
    assert out_label.dtype == tf.int32
    assert set(np.unique(out_label)) <= {0, 3, 7, IGNORE}
    assert 0.0 <= out_image.numpy().min() and out_image.numpy().max() <= 255.0


def test_random_rotation_probability_zero_and_fixed_angle():
  image, label = _position_pair(5, 5)
  out_image, out_label = preprocessor.random_rotation(
      image, label, -30.0, 30.0, IGNORE, probability=0.0)
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_label, label)
  _, out_label = preprocessor.random_rotation(image, label, 90.0, 90.0,
                                              IGNORE)
  np.testing.assert_array_equal(out_label, np.rot90(label.numpy()))


def test_random_rotation_applies_to_both_or_neither():
  image, label = _position_pair(5, 5)
  seen = set()
  for _ in range(30):
    out_image, out_label = preprocessor.random_rotation(
        image, label, 90.0, 90.0, IGNORE, probability=0.5)
    np.testing.assert_array_equal(out_image.numpy()[..., 0],
                                  out_label.numpy()[..., 0])
    seen.add(int(out_label.numpy()[0, 0, 0]))
  assert seen == {0, 4}  # unchanged / rotated


def test_random_vertical_flip_always_and_never():
  image, label = _position_pair(4, 5)
  out_image, out_label = preprocessor.random_vertical_flip(image, label, 1.0)
  np.testing.assert_array_equal(out_image, np.flipud(image.numpy()))
  np.testing.assert_array_equal(out_label, np.flipud(label.numpy()))
  out_image, out_label = preprocessor.random_vertical_flip(image, label, 0.0)
  np.testing.assert_array_equal(out_image, image)
  np.testing.assert_array_equal(out_label, label)


def test_shear_zero_and_zoom_one_are_identity():
  image, label = _position_pair(5, 6)
  for out_image, out_label in (
      preprocessor.shear(image, label, 0.0, 0.0, IGNORE),
      preprocessor.zoom(image, label, 1.0, IGNORE)):
    np.testing.assert_array_equal(out_image, image)
    np.testing.assert_array_equal(out_label, label)


def test_shear_45_degrees_shifts_each_row_by_its_offset():
  # tan(45) = 1, centre row 2: output row y samples input column x - (y - 2),
  # i.e. row y moves right by y - 2; uncovered pixels get the ignore label.
  image, label = _position_pair(5, 5)
  _, out_label = preprocessor.shear(image, label, 45.0, 0.0, IGNORE)
  index = np.arange(25).reshape(5, 5)
  expected = np.full((5, 5), IGNORE)
  for y in range(5):
    for x in range(5):
      source = x - (y - 2)
      if 0 <= source < 5:
        expected[y, x] = index[y, source]
  np.testing.assert_array_equal(out_label[..., 0], expected)
  # Vertical shear: column x moves down by x - 2.
  _, out_label = preprocessor.shear(image, label, 0.0, 45.0, IGNORE)
  expected = np.full((5, 5), IGNORE)
  for y in range(5):
    for x in range(5):
      source = y - (x - 2)
      if 0 <= source < 5:
        expected[y, x] = index[source, x]
  np.testing.assert_array_equal(out_label[..., 0], expected)


def test_zoom_two_magnifies_the_centre_block():
  # 4x4, centre 1.5: output 0, 1, 2, 3 samples 0.75, 1.25, 1.75, 2.25, which
  # round to 1, 1, 2, 2, so the centre 2x2 block fills the output.
  image, label = _position_pair(4, 4)
  out_image, out_label = preprocessor.zoom(image, label, 2.0, IGNORE)
  expected = np.array([[5, 5, 6, 6], [5, 5, 6, 6],
                       [9, 9, 10, 10], [9, 9, 10, 10]])
  np.testing.assert_array_equal(out_label[..., 0], expected)
  # Channel 0 is linear in position (4 * row + column), so bilinear sampling
  # at (row r, column c) gives exactly 4 * r + c.
  samples = np.array([0.75, 1.25, 1.75, 2.25])
  np.testing.assert_allclose(out_image[..., 0],
                             4 * samples[:, None] + samples[None, :],
                             atol=1e-4)


def test_random_shear_and_zoom_labels_are_a_subset():
  image, label = _random_pair(10, 9, seed=3)
  for out_image, out_label in (
      preprocessor.random_shear(image, label, 30.0, IGNORE, shear_y=True),
      preprocessor.random_zoom(image, label, 0.5, 1.5, IGNORE)):
    assert out_image.shape == (10, 9, 3) and out_label.shape == (10, 9, 1)
    assert set(np.unique(out_label)) <= {0, 3, 7, IGNORE}


def test_gaussian_blur_keeps_a_constant_image_and_the_mean():
  constant = tf.fill([6, 7, 3], 200.0)
  label = tf.fill([6, 7, 1], 2)
  # The radius (ceil(3 * 4) = 12) is larger than the image: the symmetric
  # padding still keeps the border from darkening.
  out_image, out_label = preprocessor.random_gaussian_blur(
      constant, label, 4.0, 4.0, probability=1.0)
  np.testing.assert_allclose(out_image, 200.0, atol=1e-3)
  np.testing.assert_array_equal(out_label, label)
  image, label = _random_pair(32, 32, seed=4)
  out_image, out_label = preprocessor.random_gaussian_blur(
      image, label, 0.5, 2.0, probability=1.0)
  assert out_image.shape == (32, 32, 3)
  np.testing.assert_allclose(out_image.numpy().mean(), image.numpy().mean(),
                             atol=1.0)
  assert out_image.numpy().std() < image.numpy().std()
  np.testing.assert_array_equal(out_label, label)


def test_gaussian_blur_of_an_impulse_is_the_kernel():
  impulse = np.zeros([11, 11, 3], np.float32)
  impulse[5, 5] = 1.0
  out = preprocessor.gaussian_blur(tf.constant(impulse), 1.0, 3).numpy()
  kernel_1d = np.exp(-0.5 * np.arange(-3, 4) ** 2)
  kernel_1d /= kernel_1d.sum()
  expected = np.zeros([11, 11])
  expected[2:9, 2:9] = np.outer(kernel_1d, kernel_1d)
  for channel in range(3):
    np.testing.assert_allclose(out[..., channel], expected, atol=1e-6)
  np.testing.assert_allclose(out[..., 0].sum(), 1.0, atol=1e-5)
  np.testing.assert_allclose(out[..., 0], out[..., 0].T, atol=1e-7)
  np.testing.assert_allclose(out[..., 0], out[::-1, ::-1, 0], atol=1e-7)


def test_random_gaussian_noise_std_and_clipping():
  grey = tf.fill([128, 128, 3], 127.5)
  label = tf.fill([128, 128, 1], 1)
  out_image, out_label = preprocessor.random_gaussian_noise(
      grey, label, 10.0, probability=1.0)
  np.testing.assert_array_equal(out_label, label)
  # 49152 samples: the sample std is within ~0.1 of 10; 0.5 leaves margin.
  assert abs((out_image.numpy() - 127.5).std() - 10.0) < 0.5
  extreme = tf.constant(np.tile([[[0.0, 255.0, 0.0]]], [16, 16, 1]),
                        tf.float32)
  out_image, _ = preprocessor.random_gaussian_noise(
      extreme, tf.zeros([16, 16, 1], tf.int32), 50.0, probability=1.0)
  assert out_image.numpy().min() >= 0.0 and out_image.numpy().max() <= 255.0
  same, _ = preprocessor.random_gaussian_noise(grey, label, 10.0, 0.0)
  np.testing.assert_array_equal(same, grey)


def test_fixed_row_crop_removes_rows():
  image, label = _position_pair(7, 4)
  out_image, out_label = preprocessor.fixed_row_crop(image, label, 2, 1)
  np.testing.assert_array_equal(out_image, image.numpy()[2:6])
  np.testing.assert_array_equal(out_label, label.numpy()[2:6])
  out_image, _ = preprocessor.fixed_row_crop(image, label, 0, 0)
  np.testing.assert_array_equal(out_image, image)
  fn = tf.function(
      lambda i, l: preprocessor.fixed_row_crop(i, l, 2, 1),
      input_signature=[tf.TensorSpec([7, None, 3], tf.float32),
                       tf.TensorSpec([7, None, 1], tf.int32)])
  out_image, out_label = fn.get_concrete_function().structured_outputs
  assert out_image.shape.as_list() == [4, None, 3]
  assert out_label.shape.as_list() == [4, None, 1]


def test_fixed_row_crop_errors_when_nothing_is_left():
  image, label = _position_pair(4, 4)
  with pytest.raises(tf.errors.InvalidArgumentError, match="no rows"):
    preprocessor.fixed_row_crop(image, label, 2, 2)
  fn = _unknown_shape_fn(lambda i, l: preprocessor.fixed_row_crop(i, l, 3, 2))
  with pytest.raises(tf.errors.InvalidArgumentError, match="no rows"):
    fn(image, label)


def test_resize_with_pad_doubles_and_pads_the_bottom():
  # 2x4 into 8x8: scale min(4, 2) = 2 -> 4x8 content, 4 padded rows.
  row = np.array([0.0, 40.0, 80.0, 120.0], np.float32)
  image = tf.constant(np.tile(row[None, :, None], [2, 1, 3]))
  label = tf.constant([[[1], [2], [3], [4]], [[5], [6], [7], [8]]], tf.int32)
  out_image, out_label = preprocessor.resize_with_pad(
      image, label, 8, 8, IGNORE)
  out_image, out_label = out_image.numpy(), out_label.numpy()
  assert out_image.shape == (8, 8, 3) and out_label.shape == (8, 8, 1)
  expected_label = np.repeat(np.repeat(label.numpy()[..., 0], 2, 0), 2, 1)
  np.testing.assert_array_equal(out_label[:4, :, 0], expected_label)
  np.testing.assert_array_equal(out_label[4:], IGNORE)
  # Half-pixel bilinear x2: columns sample -0.25 (clamped), 0.25, ..., 3.25
  # (clamped).
  expected_row = [0, 10, 30, 50, 70, 90, 110, 120]
  for channel in range(3):
    np.testing.assert_allclose(
        out_image[:4, :, channel], np.tile(expected_row, [4, 1]), atol=1e-4)
  np.testing.assert_array_equal(out_image[4:], 127.5)


def test_resize_with_pad_pads_the_right_and_rounds():
  image, label = _position_pair(4, 2)
  out_image, out_label = preprocessor.resize_with_pad(
      image, label, 8, 8, IGNORE)
  np.testing.assert_array_equal(
      out_label.numpy()[:, :4, 0],
      np.repeat(np.repeat(label.numpy()[..., 0], 2, 0), 2, 1))
  np.testing.assert_array_equal(out_label.numpy()[:, 4:], IGNORE)
  np.testing.assert_array_equal(out_image.numpy()[:, 4:], 127.5)
  # 3x5 into 4x4: scale min(4/3, 0.8) = 0.8 -> round(2.4) x 4 = 2x4.
  image, label = _position_pair(3, 5)
  out_image, out_label = preprocessor.resize_with_pad(
      image, label, 4, 4, IGNORE)
  assert out_label.shape == (4, 4, 1)
  assert IGNORE not in out_label.numpy()[:2]
  np.testing.assert_array_equal(out_label.numpy()[2:], IGNORE)
  np.testing.assert_array_equal(out_image.numpy()[2:], 127.5)


def test_resize_with_pad_output_shape_is_static():
  fn = _unknown_shape_fn(
      lambda i, l: preprocessor.resize_with_pad(i, l, 6, 10, IGNORE))
  out_image, out_label = fn.get_concrete_function().structured_outputs
  assert out_image.shape.as_list() == [6, 10, 3]
  assert out_label.shape.as_list() == [6, 10, 1]
  out_image, out_label = fn(*_position_pair(50, 3))  # very tall: width 1
  assert out_image.shape == (6, 10, 3)
  np.testing.assert_array_equal(out_label.numpy()[:, 1:], IGNORE)


_RANDOM_STEPS = {
    "rotation": lambda i, l: preprocessor.random_rotation(
        i, l, -20.0, 20.0, IGNORE, probability=0.5),
    "shear": lambda i, l: preprocessor.random_shear(
        i, l, 20.0, IGNORE, shear_y=True, probability=0.5),
    "zoom": lambda i, l: preprocessor.random_zoom(
        i, l, 0.8, 1.2, IGNORE, probability=0.5),
    "vertical_flip": lambda i, l: preprocessor.random_vertical_flip(
        i, l, 0.5),
    "blur": lambda i, l: preprocessor.random_gaussian_blur(
        i, l, 0.5, 1.5, probability=0.5),
    "noise": lambda i, l: preprocessor.random_gaussian_noise(
        i, l, 5.0, probability=0.5),
    "row_crop": lambda i, l: preprocessor.fixed_row_crop(i, l, 1, 2),
    "resize_with_pad": lambda i, l: preprocessor.resize_with_pad(
        i, l, 8, 12, IGNORE),
}


@pytest.mark.parametrize("name", sorted(_RANDOM_STEPS))
def test_new_steps_run_inside_dataset_map(name):
  image, label = _random_pair(9, 11, seed=5)
  dataset = tf.data.Dataset.from_tensors((image, label)).repeat(2)
  dataset = dataset.map(_RANDOM_STEPS[name])
  for out_image, out_label in dataset:
    assert out_image.dtype == tf.float32 and out_label.dtype == tf.int32
    assert out_image.shape[:2] == out_label.shape[:2]
    assert set(np.unique(out_label)) <= {0, 3, 7, IGNORE}
