"""Confusion-matrix metrics: mIoU, per-class IoU, pixel and mean accuracy."""

import numpy as np
import tensorflow as tf


def confusion_matrix(labels, predictions, num_classes, ignore_label):
  """Counts (ground truth, prediction) pairs in-graph, skipping ignored pixels.

  Args:
    labels: int tensor of ground-truth ids, any shape.
    predictions: int tensor of predicted ids, same number of elements.
    num_classes: C.
    ignore_label: ground-truth value that is not counted.

  Returns:
    int64 [C, C]; rows are ground truth, columns predictions.
  """
  labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
  predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
  valid = tf.not_equal(labels, ignore_label)
  index = tf.boolean_mask(labels * num_classes + predictions, valid)
  counts = tf.math.bincount(index, minlength=num_classes * num_classes,
                            maxlength=num_classes * num_classes, dtype=tf.int64)
  return tf.reshape(counts, [num_classes, num_classes])


def compute_metrics(matrix):
  """Derives the standard segmentation metrics from a confusion matrix.

  Classes that appear neither in the ground truth nor in the predictions have
  IoU NaN and are left out of the mean (as mmsegmentation does).

  Args:
    matrix: [C, C] counts, rows ground truth, columns predictions.

  Returns:
    dict with miou, per_class_iou (list, NaN for absent classes),
    pixel_accuracy, mean_accuracy, per_class_accuracy and num_pixels.
  """
  matrix = np.asarray(matrix, dtype=np.float64)
  true_positive = np.diag(matrix)
  gt_count = matrix.sum(axis=1)
  pred_count = matrix.sum(axis=0)
  union = gt_count + pred_count - true_positive
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, true_positive / union, np.nan)
    accuracy = np.where(gt_count > 0, true_positive / gt_count, np.nan)
  total = matrix.sum()

  def nanmean(values):
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")

  return {
      "miou": nanmean(iou),
      "per_class_iou": [float(v) for v in iou],
      "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
      "mean_accuracy": nanmean(accuracy),
      "per_class_accuracy": [float(v) for v in accuracy],
      "num_pixels": int(total),
  }


def format_table(metrics, class_names=None):
  """Renders the per-class IoU / accuracy table and the summary as text."""
  num_classes = len(metrics["per_class_iou"])
  names = list(class_names or [])
  names += [f"class_{i}" for i in range(len(names), num_classes)]
  width = max(12, max(len(n) for n in names) + 2)
  lines = [f"{'class':<{width}}{'IoU':>8}{'Acc':>8}", "-" * (width + 16)]
  for name, iou, acc in zip(names, metrics["per_class_iou"],
                            metrics["per_class_accuracy"]):
    fmt = lambda v: "   -   " if np.isnan(v) else f"{100 * v:7.2f}"
    lines.append(f"{name:<{width}}{fmt(iou):>8}{fmt(acc):>8}")
  lines.append("-" * (width + 16))
  lines.append(f"{'mIoU':<{width}}{100 * metrics['miou']:8.2f}")
  lines.append(f"{'pixel acc':<{width}}{100 * metrics['pixel_accuracy']:8.2f}")
  lines.append(f"{'mean acc':<{width}}{100 * metrics['mean_accuracy']:8.2f}")
  return "\n".join(lines)
