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
