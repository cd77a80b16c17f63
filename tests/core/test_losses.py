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


def _labels(values):
  return np.array(values, np.int32)[None, ..., None]


def test_binary_cross_entropy_by_hand():
  # sigmoid(0) = 0.5 -> ln 2 for either label; logit ln 3 (p = 0.75) with
  # label 1 -> ln(4/3); ignored pixel excluded.
  logits = np.array([[[[0.0], [np.log(3.0)], [9.0]]]], np.float32)
  labels = _labels([[0, 1, 255]])
  got = losses.binary_cross_entropy(logits, labels, 255).numpy()
  assert got == pytest.approx((np.log(2.0) + np.log(4.0 / 3.0)) / 2, rel=1e-6)


def test_focal_with_gamma_zero_equals_cross_entropy():
  rng = np.random.default_rng(3)
  logits = rng.normal(size=(2, 5, 5, 4)).astype(np.float32)
  labels = rng.integers(0, 4, size=(2, 5, 5, 1)).astype(np.int32)
  labels[0, 0] = 255
  weights = [1.0, 2.0, 0.5, 1.5]
  ce = losses.softmax_cross_entropy(logits, labels, 255, weights).numpy()
  focal = losses.focal_loss(logits, labels, 255, gamma=0.0,
                            class_weights=weights).numpy()
  assert focal == pytest.approx(ce, rel=1e-6)
  binary_logits = logits[..., :1]
  binary_labels = np.where(labels == 255, 255, labels % 2)
  assert losses.focal_loss(binary_logits, binary_labels, 255, gamma=0.0).numpy() \
      == pytest.approx(losses.binary_cross_entropy(
          binary_logits, binary_labels, 255).numpy(), rel=1e-6)


def test_focal_by_hand():
  # p_true = 0.75 -> (0.25)^2 * ln(4/3); p_true = 0.5 -> 0.25 * ln 2.
  logits = np.array([[[[np.log(3.0), 0.0], [0.0, 0.0]]]], np.float32)
  labels = _labels([[0, 1]])
  expected = (0.0625 * np.log(4 / 3) + 0.25 * np.log(2.0)) / 2
  got = losses.focal_loss(logits, labels, 255, gamma=2.0).numpy()
  assert got == pytest.approx(expected, rel=1e-5)
  # Binary alpha: foreground pixels weighted 0.25, background 0.75.
  logits = np.array([[[[0.0], [0.0]]]], np.float32)
  got = losses.focal_loss(logits, _labels([[1, 0]]), 255, gamma=0.0,
                          alpha=0.25).numpy()
  assert got == pytest.approx((0.25 + 0.75) * np.log(2.0) / 2, rel=1e-6)


def test_dice_perfect_is_zero_and_disjoint_is_one():
  labels = _labels([[0, 1, 1], [2, 2, 255]])
  perfect = np.full((1, 2, 3, 3), -50.0, np.float32)
  for (y, x), label in np.ndenumerate(labels[0, ..., 0]):
    if label != 255:
      perfect[0, y, x, label] = 50.0
  assert losses.dice_loss(perfect, labels, 255, smooth=0.0).numpy() \
      == pytest.approx(0.0, abs=1e-6)
  # Every pixel predicted as a wrong class: no overlap anywhere.
  disjoint = np.roll(perfect, 1, axis=-1)
  assert losses.dice_loss(disjoint, labels, 255, smooth=0.0).numpy() \
      == pytest.approx(1.0, abs=1e-6)
  # Binary: foreground mask vs its complement.
  binary_labels = _labels([[0, 1, 1, 0]])
  good = np.where(binary_labels == 1, 50.0, -50.0).astype(np.float32)
  assert losses.dice_loss(good, binary_labels, 255, smooth=0.0).numpy() \
      == pytest.approx(0.0, abs=1e-6)
  assert losses.dice_loss(-good, binary_labels, 255, smooth=0.0).numpy() \
      == pytest.approx(1.0, abs=1e-6)


def test_dice_by_hand_with_smoothing():
  # p = 0.5 everywhere, foreground 1 of 2 pixels: 2*0.5 / (1 + 1) -> 0.5;
  # with smooth 1: (1 + 1) / (2 + 1).
  logits = np.zeros((1, 1, 2, 1), np.float32)
  labels = _labels([[1, 0]])
  assert losses.dice_loss(logits, labels, 255, smooth=0.0).numpy() \
      == pytest.approx(0.5)
  assert losses.dice_loss(logits, labels, 255, smooth=1.0).numpy() \
      == pytest.approx(1 - 2 / 3)


def _pixel_ce(logits, labels):
  shifted = logits - logits.max(-1, keepdims=True)
  log_prob = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  return -np.take_along_axis(log_prob, labels, axis=-1)[..., 0]


def test_ohem_keeps_hard_pixels_or_at_least_min_kept():
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(1, 4, 4, 3)).astype(np.float32) * 3
  labels = rng.integers(0, 3, size=(1, 4, 4, 1)).astype(np.int32)
  pixel = _pixel_ce(logits.astype(np.float64), labels)
  probability = np.exp(-pixel)
  # Threshold rule: pixels with p_true < 0.6 (min_kept small).
  hard = probability < 0.6
  assert 0 < hard.sum() < 16
  got = losses.ohem_cross_entropy(logits, labels, 255, threshold=0.6,
                                  min_kept=1).numpy()
  assert got == pytest.approx(pixel[hard].mean(), rel=1e-5)
  # min_kept above the hard count: the 12 lowest probabilities count.
  got = losses.ohem_cross_entropy(logits, labels, 255, threshold=0.01,
                                  min_kept=12).numpy()
  assert got == pytest.approx(np.sort(pixel.ravel())[-12:].mean(), rel=1e-5)


def test_bootstrapped_is_the_mean_of_the_hardest_fraction():
  rng = np.random.default_rng(5)
  logits = rng.normal(size=(1, 4, 5, 3)).astype(np.float32)
  labels = rng.integers(0, 3, size=(1, 4, 5, 1)).astype(np.int32)
  labels[0, 0, :] = 255  # 15 counted pixels -> ceil(0.2 * 15) = 3 kept
  pixel = _pixel_ce(logits.astype(np.float64), np.where(labels == 255, 0, labels))
  counted = pixel[labels[..., 0] != 255]
  got = losses.bootstrapped_cross_entropy(logits, labels, 255,
                                          top_k_fraction=0.2).numpy()
  assert got == pytest.approx(np.sort(counted)[-3:].mean(), rel=1e-5)
  full = losses.bootstrapped_cross_entropy(logits, labels, 255,
                                           top_k_fraction=1.0).numpy()
  assert full == pytest.approx(
      losses.softmax_cross_entropy(logits, labels, 255).numpy(), rel=1e-5)


def test_binary_targets():
  labels = np.array([0, 1, 2, 3, 255])
  np.testing.assert_array_equal(
      losses.binary_targets(labels, (), 255).numpy(), [0, 1, 1, 1, 255])
  np.testing.assert_array_equal(
      losses.binary_targets(labels, (2,), 255).numpy(), [0, 0, 1, 0, 255])
  np.testing.assert_array_equal(
      losses.binary_targets(labels, (1, 3), 255).numpy(), [0, 1, 0, 1, 255])


def test_median_frequency_weights():
  # median of (0.1, 0.2, 0.6) is 0.2; the absent class gets 0.
  weights = losses.median_frequency_weights([0.1, 0.6, 0.0, 0.2])
  assert weights == pytest.approx([2.0, 1 / 3, 0.0, 1.0])
  assert losses.median_frequency_weights([0.25, 0.75]) == pytest.approx([2.0, 2 / 3])
  with pytest.raises(ValueError, match="every frequency is 0"):
    losses.median_frequency_weights([0.0, 0.0])


def test_enet_weights_by_hand():
  # p = (0.5, 0.3, 0.2, 0): 1 / ln(1.10 + p); counts or fractions alike.
  expected = [1 / np.log(1.6), 1 / np.log(1.4), 1 / np.log(1.3), 1 / np.log(1.1)]
  assert losses.enet_weights([0.5, 0.3, 0.2, 0.0]) == pytest.approx(expected)
  assert losses.enet_weights([50, 30, 20, 0]) == pytest.approx(expected)
  assert losses.enet_weights([50, 30, 20, 0]) == pytest.approx(
      [2.12764, 2.97201, 3.81149, 10.49206], rel=1e-5)
  assert losses.enet_weights([1.0, 1.0], constant=1.02) == pytest.approx(
      [1 / np.log(1.52)] * 2)
  with pytest.raises(ValueError, match="constant > 1, got 1"):
    losses.enet_weights([0.5, 0.5], constant=1.0)
  with pytest.raises(ValueError, match="every frequency is 0"):
    losses.enet_weights([0.0, 0.0])
