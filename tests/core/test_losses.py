"""Softmax cross entropy with ignore label and class weights, against numpy."""

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.core import losses


def _numpy_ce(logits, labels, ignore, weights=None):
  logits = logits.astype(np.float64)
  shifted = logits - logits.max(-1, keepdims=True)
  log_prob = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  total, count = 0.0, 0
  for index in np.ndindex(labels.shape):
    label = labels[index]
    if label == ignore:
      continue
    w = 1.0 if weights is None else weights[label]
    total += -w * log_prob[index + (label,)]
    count += 1
  return total / count


def test_ignored_pixels_do_not_count():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 4, 4, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(2, 4, 4)).astype(np.int32)
  labels[0, :2] = 255
  expected = _numpy_ce(logits, labels, 255)
  got = losses.softmax_cross_entropy(logits, labels[..., None], ignore_label=255)
  assert got.numpy() == pytest.approx(expected, rel=1e-5)
  # Changing the logits of ignored pixels must not change the loss.
  logits[0, :2] += 100.0
  again = losses.softmax_cross_entropy(logits, labels[..., None], ignore_label=255)
  assert again.numpy() == pytest.approx(expected, rel=1e-5)


def test_hand_computed_two_pixels():
  # Pixel A: logits (0, 0) label 0 -> ln 2. Pixel B: ignored. Pixel C: logits
  # (ln 3, 0) label 0 -> ln(4/3).
  logits = np.array([[[[0.0, 0.0], [5.0, -5.0], [np.log(3.0), 0.0]]]], np.float32)
  labels = np.array([[[0, 255, 0]]], np.int32)[..., None]
  got = losses.softmax_cross_entropy(logits, labels, ignore_label=255).numpy()
  assert got == pytest.approx((np.log(2.0) + np.log(4.0 / 3.0)) / 2, rel=1e-6)


def test_class_weights_multiply_pixels():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(1, 3, 3, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=(1, 3, 3)).astype(np.int32)
  labels[0, 0, 0] = 255
  weights = [0.5, 1.0, 2.0, 4.0]
  expected = _numpy_ce(logits, labels, 255, weights)
  got = losses.softmax_cross_entropy(logits, labels[..., None], 255, weights)
  assert got.numpy() == pytest.approx(expected, rel=1e-5)


def test_all_ignored_gives_zero():
  logits = np.zeros((1, 2, 2, 3), np.float32)
  labels = np.full((1, 2, 2, 1), 255, np.int32)
  assert losses.softmax_cross_entropy(logits, labels, 255).numpy() == 0.0


def test_labels_downsampled_with_nearest_neighbour():
  # 4x4 labels onto 2x2 logits: nearest neighbour keeps ids, never averages.
  labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255],
                     [2, 2, 255, 255]], np.int32)[None, ..., None]
  logits = tf.zeros((1, 2, 2, 3))
  _, small = losses.match_sizes(logits, tf.constant(labels), upsample_logits=False)
  np.testing.assert_array_equal(small.numpy()[0, ..., 0], [[0, 1], [2, 255]])
  up, same = losses.match_sizes(logits, tf.constant(labels), upsample_logits=True)
  assert up.shape == (1, 4, 4, 3) and same.shape == (1, 4, 4, 1)
