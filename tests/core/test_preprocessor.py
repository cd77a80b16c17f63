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
