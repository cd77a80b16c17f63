"""Confusion matrix and mIoU against a hand-computed case."""

import math

import numpy as np
import pytest

from fast_seg.core import metrics


def test_confusion_matrix_skips_ignored_pixels():
  labels = np.array([[0, 0, 1, 255], [2, 1, 1, 255]])
  predictions = np.array([[0, 1, 1, 2], [2, 1, 0, 0]])
  matrix = metrics.confusion_matrix(labels, predictions, 3, 255).numpy()
  np.testing.assert_array_equal(matrix, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])


def test_miou_by_hand():
  # rows = ground truth, cols = prediction
  matrix = np.array([[1, 1, 0], [1, 2, 0], [0, 0, 1]])
  result = metrics.compute_metrics(matrix)
  # IoU: c0 1/(2+2-1)=1/3, c1 2/(3+3-2)=1/2, c2 1/1
  assert result["per_class_iou"] == pytest.approx([1 / 3, 1 / 2, 1.0])
  assert result["miou"] == pytest.approx((1 / 3 + 1 / 2 + 1) / 3)
  assert result["pixel_accuracy"] == pytest.approx(4 / 6)
  assert result["mean_accuracy"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
  assert result["num_pixels"] == 6


def test_absent_class_is_excluded_from_mean():
  matrix = np.array([[3, 1, 0], [0, 2, 0], [0, 0, 0]])
  result = metrics.compute_metrics(matrix)
  assert math.isnan(result["per_class_iou"][2])
  assert result["miou"] == pytest.approx((3 / 4 + 2 / 3) / 2)


def test_table_names_classes():
  result = metrics.compute_metrics(np.array([[2, 0], [1, 1]]))
  table = metrics.format_table(result, ["road", "car"])
  assert "road" in table and "car" in table and "mIoU" in table
  assert "58.33" in table  # mean of 2/3 and 1/2


def test_dice_precision_recall_by_hand():
  matrix = np.array([[1, 1, 0], [1, 2, 0], [0, 0, 1]])
  result = metrics.compute_metrics(matrix)
  # c0: tp 1, gt 2, pred 2; c1: tp 2, gt 3, pred 3; c2: tp 1, gt 1, pred 1.
  assert result["per_class_dice"] == pytest.approx([2 / 4, 4 / 6, 1.0])
  assert result["mean_dice"] == pytest.approx((1 / 2 + 2 / 3 + 1) / 3)
  assert result["per_class_precision"] == pytest.approx([1 / 2, 2 / 3, 1.0])
  assert result["per_class_recall"] == pytest.approx([1 / 2, 2 / 3, 1.0])
  # Precision and recall differ when a class is over-predicted.
  skewed = metrics.compute_metrics(np.array([[2, 2], [0, 4]]))
  assert skewed["per_class_precision"] == pytest.approx([1.0, 4 / 6])
  assert skewed["per_class_recall"] == pytest.approx([2 / 4, 1.0])
  assert skewed["per_class_dice"] == pytest.approx([4 / 6, 8 / 10])


def test_binary_threshold_metrics_by_hand():
  labels = np.array([0, 0, 1, 1, 1, 255])
  probabilities = np.array([0.1, 0.6, 0.4, 0.7, 0.9, 0.9])
  thresholds = [0.3, 0.5, 0.8]
  matrices = [metrics.confusion_matrix(labels, (probabilities > t).astype(int),
                                       2, 255).numpy() for t in thresholds]
  rows = metrics.binary_threshold_metrics(matrices, thresholds)
  # t=0.3: fg predicted at 0.6, 0.4, 0.7, 0.9 -> tp 3, fp 1, fn 0.
  assert rows[0]["iou"] == pytest.approx(3 / 4)
  assert rows[0]["precision"] == pytest.approx(3 / 4)
  assert rows[0]["recall"] == pytest.approx(1.0)
  # t=0.5: 0.6, 0.7, 0.9 -> tp 2, fp 1, fn 1.
  assert rows[1]["iou"] == pytest.approx(2 / 4)
  assert rows[1]["dice"] == pytest.approx(4 / 6)
  # t=0.8: 0.9 -> tp 1, fp 0, fn 2.
  assert rows[2]["precision"] == pytest.approx(1.0)
  assert rows[2]["recall"] == pytest.approx(1 / 3)
  table = metrics.format_threshold_table(rows)
  assert "0.50" in table and "50.00" in table


def test_binary_counts_by_hand():
  # Ignored pixels count for nothing, whatever is predicted there.
  labels = np.array([[1, 1, 0, 255], [1, 0, 0, 255]])
  predictions = np.array([[1, 1, 1, 1], [0, 0, 0, 0]])
  counts = metrics.binary_counts(labels, predictions, 255).numpy()
  np.testing.assert_array_equal(counts, [2, 1, 1])  # TP, FP, FN
  agrees = metrics.compute_metrics(
      metrics.confusion_matrix(labels, predictions, 2, 255).numpy())
  result = metrics.precision_recall_iou(counts)
  assert result == pytest.approx({"precision": 2 / 3, "recall": 2 / 3,
                                  "iou": 2 / 4})
  assert result["iou"] == pytest.approx(agrees["per_class_iou"][1])
  assert result["precision"] == pytest.approx(agrees["per_class_precision"][1])


def test_undefined_binary_ratios_are_zero_as_in_keras():
  assert metrics.precision_recall_iou([0, 0, 3]) == {
      "precision": 0.0, "recall": 0.0, "iou": 0.0}
  assert metrics.precision_recall_iou([0, 0, 0]) == {
      "precision": 0.0, "recall": 0.0, "iou": 0.0}
