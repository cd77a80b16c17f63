"""Adaptive pooling and resize layers against numpy references."""

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.core import layers


def _adaptive_reference(x, bins):
  n, h, w, c = x.shape
  out = np.zeros((n, bins, bins, c))
  for i in range(bins):
    r0, r1 = (i * h) // bins, -((-(i + 1) * h) // bins)
    for j in range(bins):
      c0, c1 = (j * w) // bins, -((-(j + 1) * w) // bins)
      out[:, i, j] = x[:, r0:r1, c0:c1].mean(axis=(1, 2))
  return out


@pytest.mark.parametrize("size, bins", [((8, 8), 2), ((32, 64), 3), ((7, 9), 6),
                                        ((2, 2), 4), ((5, 3), 4), ((12, 24), 6)])
def test_adaptive_pool_matches_reference(size, bins):
  x = np.random.default_rng(0).normal(size=(2,) + size + (3,)).astype(np.float32)
  got = layers.AdaptiveAveragePool(bins)(x).numpy()
  np.testing.assert_allclose(got, _adaptive_reference(x, bins), rtol=1e-5, atol=1e-6)


def test_adaptive_pool_dynamic_shape_and_gradient():
  layer = layers.AdaptiveAveragePool(3)
  fn = tf.function(layer, input_signature=[tf.TensorSpec([None, None, None, 2])])
  x = np.random.default_rng(1).normal(size=(1, 10, 7, 2)).astype(np.float32)
  np.testing.assert_allclose(fn(x).numpy(), _adaptive_reference(x, 3), rtol=1e-5)
  variable = tf.Variable(x[:, :2, :2])
  with tf.GradientTape() as tape:
    total = tf.reduce_sum(layer(variable))  # 2x2 -> 3x3 needs the slice path
  assert tape.gradient(total, variable) is not None


def test_resize_layers_round_up_and_match_reference():
  x = tf.zeros((1, 75, 101, 4))
  assert layers.ResizeByFactor(0.5)(x).shape == (1, 38, 51, 4)
  assert layers.ResizeByFactor(2.0)(x).shape == (1, 150, 202, 4)
  assert layers.ResizeLike()([x, tf.zeros((1, 9, 13, 1))]).shape == (1, 9, 13, 4)


def test_window_pool_is_tf1s_unpadded_floor_windows():
  """8 rows into 3 bins: windows of 2, so 4 cells; 16 columns: 3 of 5."""
  x = np.random.default_rng(1).normal(size=(2, 8, 16, 3)).astype(np.float32)
  got = layers.WindowAveragePool(3)(x).numpy()
  expected = x[:, :8, :15].reshape(2, 4, 2, 3, 5, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
  dynamic = tf.function(layers.WindowAveragePool(3),
                        input_signature=[tf.TensorSpec([None, None, None, 3])])
  np.testing.assert_allclose(dynamic(x).numpy(), expected, rtol=1e-5, atol=1e-6)


def test_align_corners_resize_keeps_corners_and_tf1_sizes():
  x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
  up = layers.ResizeByFactor(2.0, align_corners=True)(x).numpy()
  assert up.shape == (1, 3, 5, 4)  # (s - 1) * 2 + 1
  np.testing.assert_allclose(up[:, ::2, ::2], x)  # input pixels stay put
  np.testing.assert_allclose(up[0, 1, 1], x[0, :2, :2].mean(axis=(0, 1)))
  half = layers.ResizeByFactor(0.5, align_corners=True)(np.zeros((1, 8, 9, 1)))
  assert half.shape == (1, 4, 5, 1)  # int(3.5 + 1), int(4 + 1)


def test_asymmetric_resize_is_tf1s_default():
  x = np.arange(4, dtype=np.float32).reshape(1, 1, 4, 1)
  got = layers.ResizeLike(layers.ASYMMETRIC)([x, np.zeros((1, 1, 8, 1))])
  # Output pixel i reads input i / 2, clamped at the last pixel.
  np.testing.assert_allclose(got.numpy().ravel(),
                             [0, .5, 1, 1.5, 2, 2.5, 3, 3])
  with pytest.raises(ValueError, match="resize mode"):
    layers.ResizeLike("bicubic")
