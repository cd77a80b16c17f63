"""Distillation losses against numpy on hand-sized cases."""

import numpy as np
import tensorflow as tf

from fast_seg.core import distillation_losses


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def test_pixel_kl_of_identical_logits_is_zero():
  logits = tf.random.stateless_normal([2, 3, 4, 5], seed=[1, 2])
  assert float(distillation_losses.pixel_kl(logits, logits, 2.0)) == 0.0
  binary = logits[..., :1]
  assert abs(float(distillation_losses.pixel_kl(binary, binary, 2.0,
                                                binary=True))) < 1e-7


def test_pixel_kl_matches_numpy_with_temperature():
  student = np.array([[[[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]]], np.float32)
  teacher = np.array([[[[2.0, 0.0, 1.0], [1.0, 1.0, -2.0]]]], np.float32)
  t = 2.0
  log_p, log_q = _log_softmax(teacher / t), _log_softmax(student / t)
  expected = (np.exp(log_p) * (log_p - log_q)).sum(-1).mean() * t * t
  got = float(distillation_losses.pixel_kl(student, teacher, t))
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  assert got > 0


def test_binary_pixel_kl_is_the_bernoulli_kl():
  student = np.array([[[[0.5], [-2.0]], [[3.0], [0.0]]]], np.float32)
  teacher = np.array([[[[1.5], [1.0]], [[-1.0], [0.0]]]], np.float32)
  t = 2.0
  p = 1 / (1 + np.exp(-teacher / t))
  q = 1 / (1 + np.exp(-student / t))
  kl = p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))
  got = float(distillation_losses.pixel_kl(student, teacher, t, binary=True))
  np.testing.assert_allclose(got, kl.mean() * t * t, rtol=1e-5)


def test_pixel_kl_has_no_gradient_into_the_teacher():
  student = tf.Variable(tf.random.stateless_normal([1, 2, 2, 3], seed=[3, 4]))
  teacher = tf.Variable(tf.random.stateless_normal([1, 2, 2, 3], seed=[5, 6]))
  with tf.GradientTape() as tape:
    loss = distillation_losses.pixel_kl(student, teacher, 1.0)
  grad_student, grad_teacher = tape.gradient(loss, [student, teacher])
  assert grad_teacher is None
  assert float(tf.reduce_sum(tf.abs(grad_student))) > 0


def _affinity(features):
  cells = features.reshape(features.shape[0], -1, features.shape[-1])
  cells = cells / np.linalg.norm(cells, axis=-1, keepdims=True)
  return cells @ cells.transpose(0, 2, 1)


def test_pair_affinity_of_identical_features_is_zero():
  features = tf.random.stateless_normal([2, 8, 8, 3], seed=[7, 8])
  assert abs(float(distillation_losses.pair_affinity(features, features, 4))) < 1e-7


def test_pair_affinity_matches_numpy_on_a_2x2_grid():
  student = np.array([[[[1.0, 0.0, 2.0], [0.5, 1.0, 0.0]],
                       [[0.0, 3.0, 1.0], [1.0, 1.0, 1.0]]]], np.float32)
  teacher = np.array([[[[0.0, 1.0, 1.0], [2.0, 0.0, 0.5]],
                       [[1.0, 1.0, 0.0], [0.0, 0.0, 4.0]]]], np.float32)
  expected = np.mean((_affinity(student) - _affinity(teacher)) ** 2)
  got = float(distillation_losses.pair_affinity(student, teacher, 2))
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert got > 0


def test_pair_affinity_pools_and_ignores_channel_counts():
  # 4x4 maps pooled to 2x2 (2x2 averages); the teacher has 5 channels.
  student = tf.random.stateless_uniform([1, 4, 4, 3], seed=[1, 1])
  teacher = tf.random.stateless_uniform([1, 4, 4, 5], seed=[2, 2])
  pool = lambda f: f.numpy().reshape(1, 2, 2, 2, 2, -1).mean((2, 4))
  expected = np.mean((_affinity(pool(student)) - _affinity(pool(teacher))) ** 2)
  got = float(distillation_losses.pair_affinity(student, teacher, 2))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_match_size_resizes_bilinearly_to_the_student():
  teacher = tf.reshape(tf.range(4, dtype=tf.float32), [1, 2, 2, 1])
  resized = distillation_losses.match_size(teacher, (4, 4))
  assert resized.shape == (1, 4, 4, 1)
  np.testing.assert_allclose(
      resized.numpy(), tf.image.resize(teacher, (4, 4)).numpy())


def test_pair_affinity_pools_sizes_not_divisible_by_the_grid():
  # 3 rows into 2 cells: rows {0, 1} and {1, 2}, adaptive average pooling.
  features = tf.random.stateless_uniform([1, 3, 2, 4], seed=[3, 3])
  f = features.numpy()
  pooled = np.stack([f[:, :2].mean(1), f[:, 1:].mean(1)], axis=1)
  expected = _affinity(pooled)
  got = distillation_losses.pooled_affinity(features, 2)
  np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_pair_affinity_has_a_gradient_for_the_student():
  student = tf.Variable(tf.random.stateless_uniform([1, 5, 7, 3], seed=[4, 4]))
  teacher = tf.random.stateless_uniform([1, 9, 9, 6], seed=[5, 5])
  with tf.GradientTape() as tape:
    loss = distillation_losses.pair_affinity(student, teacher, 4)
  assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, student)))) > 0
