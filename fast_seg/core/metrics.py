"""Confusion-matrix metrics: IoU, dice, precision, recall, pixel accuracy.

One confusion matrix serves multi-class and binary models alike (binary:
2 x 2, background and foreground). The training log of binary models sums
the lighter binary_counts instead, step after step.
"""

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


def binary_counts(labels, predictions, ignore_label):
  """Foreground true positives, false positives and false negatives, in-graph.

  What the training step adds up, batch after batch and across replicas, for
  the precision, recall and IoU of binary models in the training log. Three
  sums with static shapes (no boolean_mask, unlike confusion_matrix), so they
  compile with XLA and cost next to nothing per step.

  Args:
    labels: int tensor of 0 (background), 1 (foreground) or ignore_label.
    predictions: int tensor of 0 / 1, labels' shape.
    ignore_label: ground-truth value that is not counted.

  Returns:
    int64 [3]: (true positives, false positives, false negatives).
  """
  labels = tf.convert_to_tensor(labels)
  valid = tf.not_equal(labels, tf.cast(ignore_label, labels.dtype))
  truth = tf.logical_and(valid, tf.equal(labels, 1))
  predicted = tf.logical_and(
      valid, tf.equal(tf.cast(predictions, labels.dtype), 1))

  def count(mask):
    return tf.math.count_nonzero(mask, dtype=tf.int64)

  return tf.stack([count(tf.logical_and(truth, predicted)),
                   count(tf.logical_and(predicted, tf.logical_not(truth))),
                   count(tf.logical_and(truth, tf.logical_not(predicted)))])


def precision_recall_iou(counts):
  """Foreground precision, recall and IoU from binary_counts' (TP, FP, FN).

  A ratio with nothing to count (precision without predicted foreground,
  recall without true foreground, IoU without either) is 0, as Keras'
  Precision, Recall and BinaryIoU report it: the training log and
  TensorBoard always get a number.

  Returns:
    dict of floats: precision, recall, iou.
  """
  true_positive, false_positive, false_negative = (int(c) for c in counts)

  def ratio(denominator):
    return true_positive / denominator if denominator else 0.0

  return {"precision": ratio(true_positive + false_positive),
          "recall": ratio(true_positive + false_negative),
          "iou": ratio(true_positive + false_positive + false_negative)}


def compute_metrics(matrix):
  """Derives the standard segmentation metrics from a confusion matrix.

  Classes that appear neither in the ground truth nor in the predictions have
  IoU NaN and are left out of the mean (as mmsegmentation does).

  Args:
    matrix: [C, C] counts, rows ground truth, columns predictions.

  Returns:
    dict with miou, per_class_iou (list, NaN for absent classes),
    pixel_accuracy, mean_accuracy, per_class_accuracy (= recall),
    mean_dice, per_class_dice (F1), per_class_precision, per_class_recall
    and num_pixels.
  """
  matrix = np.asarray(matrix, dtype=np.float64)
  true_positive = np.diag(matrix)
  gt_count = matrix.sum(axis=1)
  pred_count = matrix.sum(axis=0)
  union = gt_count + pred_count - true_positive
  with np.errstate(invalid="ignore", divide="ignore"):
    iou = np.where(union > 0, true_positive / union, np.nan)
    accuracy = np.where(gt_count > 0, true_positive / gt_count, np.nan)
    precision = np.where(pred_count > 0, true_positive / pred_count, np.nan)
    dice_denominator = gt_count + pred_count
    dice = np.where(dice_denominator > 0,
                    2 * true_positive / dice_denominator, np.nan)
  total = matrix.sum()

  def nanmean(values):
    return float(np.nanmean(values)) if np.any(~np.isnan(values)) else float("nan")

  return {
      "miou": nanmean(iou),
      "per_class_iou": [float(v) for v in iou],
      "pixel_accuracy": float(true_positive.sum() / total) if total else float("nan"),
      "mean_accuracy": nanmean(accuracy),
      "per_class_accuracy": [float(v) for v in accuracy],
      "mean_dice": nanmean(dice),
      "per_class_dice": [float(v) for v in dice],
      "per_class_precision": [float(v) for v in precision],
      "per_class_recall": [float(v) for v in accuracy],
      "num_pixels": int(total),
  }


def binary_threshold_metrics(matrices, thresholds):
  """Foreground IoU, dice, precision and recall at each threshold.

  Args:
    matrices: one 2 x 2 confusion matrix per threshold (rows ground truth).
    thresholds: the sigmoid thresholds, same order.

  Returns:
    list of dicts {threshold, iou, dice, precision, recall} (foreground).
  """
  rows = []
  for threshold, matrix in zip(thresholds, matrices):
    result = compute_metrics(matrix)
    rows.append({"threshold": float(threshold),
                 "iou": result["per_class_iou"][1],
                 "dice": result["per_class_dice"][1],
                 "precision": result["per_class_precision"][1],
                 "recall": result["per_class_recall"][1]})
  return rows


def format_threshold_table(rows):
  """Renders binary_threshold_metrics as text."""
  fmt = lambda v: "   -   " if np.isnan(v) else f"{100 * v:7.2f}"
  lines = [f"{'threshold':<11}{'IoU':>8}{'Dice':>8}{'Prec':>8}{'Recall':>8}",
           "-" * 43]
  for row in rows:
    lines.append(f"{row['threshold']:<11.2f}{fmt(row['iou']):>8}"
                 f"{fmt(row['dice']):>8}{fmt(row['precision']):>8}"
                 f"{fmt(row['recall']):>8}")
  return "\n".join(lines)


def format_table(metrics, class_names=None):
  """Renders the per-class IoU / accuracy table and the summary as text."""
  num_classes = len(metrics["per_class_iou"])
  names = list(class_names or [])
  names += [f"class_{i}" for i in range(len(names), num_classes)]
  width = max(12, max(len(n) for n in names) + 2)
  columns = (("IoU", "per_class_iou"), ("Dice", "per_class_dice"),
             ("Prec", "per_class_precision"), ("Recall", "per_class_recall"))
  columns = tuple((title, key) for title, key in columns if key in metrics)
  rule = "-" * (width + 8 * len(columns))
  lines = [f"{'class':<{width}}" + "".join(f"{t:>8}" for t, _ in columns), rule]
  fmt = lambda v: "   -   " if np.isnan(v) else f"{100 * v:7.2f}"
  for i, name in enumerate(names):
    lines.append(f"{name:<{width}}" + "".join(
        f"{fmt(metrics[key][i]):>8}" for _, key in columns))
  lines.append(rule)
  lines.append(f"{'mIoU':<{width}}{100 * metrics['miou']:8.2f}")
  if "mean_dice" in metrics:
    lines.append(f"{'mean dice':<{width}}{100 * metrics['mean_dice']:8.2f}")
  lines.append(f"{'pixel acc':<{width}}{100 * metrics['pixel_accuracy']:8.2f}")
  lines.append(f"{'mean acc':<{width}}{100 * metrics['mean_accuracy']:8.2f}")
  return "\n".join(lines)
