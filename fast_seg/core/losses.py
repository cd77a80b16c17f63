"""Segmentation losses on logits and label maps with an ignore label."""

import tensorflow as tf


def match_sizes(logits, labels, upsample_logits):
  """Brings logits [N,h,w,C] and labels [N,H,W,1] to one spatial size.

  Args:
    logits: float tensor of a head, usually smaller than the labels.
    labels: int32 label map.
    upsample_logits: True resizes logits (bilinear) up to the label size;
      False resizes labels (nearest neighbour, so no ids are invented) down to
      the logit size, which is cheaper.

  Returns:
    (logits, labels) of the same height and width.
  """
  logits_size = tf.shape(logits)[1:3]
  labels_size = tf.shape(labels)[1:3]
  if logits.shape[1:3] == labels.shape[1:3] and logits.shape[1] is not None:
    return logits, labels
  if upsample_logits:
    logits = tf.image.resize(logits, labels_size, method="bilinear")
  else:
    labels = tf.image.resize(labels, logits_size, method="nearest")
  return logits, labels


def softmax_cross_entropy(logits, labels, ignore_label, class_weights=None,
                          upsample_logits=False):
  """Mean pixel-wise softmax cross entropy over the pixels that are not ignored.

  Each pixel's cross entropy is multiplied by its class weight; the sum is
  divided by the number of non-ignored pixels (not by the sum of weights), so a
  class weight of 2 counts a pixel twice.

  Args:
    logits: float [N, h, w, C].
    labels: int [N, H, W, 1] class ids or `ignore_label`.
    ignore_label: label value excluded from the loss.
    class_weights: optional float sequence of length C.
    upsample_logits: see `match_sizes`.

  Returns:
    A float32 scalar; 0 when every pixel is ignored.
  """
  logits, labels = match_sizes(logits, labels, upsample_logits)
  logits = tf.cast(logits, tf.float32)
  labels = tf.squeeze(tf.cast(labels, tf.int32), axis=-1)
  valid = tf.not_equal(labels, ignore_label)
  safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
  pixel_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=safe_labels, logits=logits)
  weights = tf.cast(valid, tf.float32)
  if class_weights is not None and len(class_weights):
    weights *= tf.gather(tf.constant(class_weights, tf.float32), safe_labels)
  num_valid = tf.reduce_sum(tf.cast(valid, tf.float32))
  return tf.math.divide_no_nan(tf.reduce_sum(pixel_loss * weights), num_valid)
