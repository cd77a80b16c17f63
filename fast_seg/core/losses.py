"""Segmentation losses on logits and label maps with an ignore label.

Every loss takes logits [N, h, w, C] (C = 1 for binary models: one sigmoid
logit per pixel) and labels [N, H, W, 1], skips `ignore_label` pixels and
returns a float32 scalar. Binary models get labels 0 / 1 (see
`binary_targets`). Class weights multiply each pixel's loss by the weight of
its true class; means divide by the number of counted pixels.
"""

import math

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


def binary_targets(labels, class_ids, ignore_label):
  """Maps class ids to 1 (in `class_ids`) / 0 (other), keeping ignored pixels.

  Args:
    labels: int tensor of class ids or `ignore_label`, any shape.
    class_ids: ids that become 1; empty or None means every id >= 1.
    ignore_label: value kept as it is.

  Returns:
    Tensor of labels' shape and dtype with values 0, 1 or ignore_label.
  """
  labels = tf.convert_to_tensor(labels)
  valid = tf.not_equal(labels, tf.cast(ignore_label, labels.dtype))
  if class_ids:
    ids = tf.constant(list(class_ids), labels.dtype)
    foreground = tf.reduce_any(tf.equal(labels[..., None], ids), axis=-1)
  else:
    foreground = labels >= 1
  return tf.where(valid, tf.cast(foreground, labels.dtype),
                  tf.cast(ignore_label, labels.dtype))


def _prepare(logits, labels, ignore_label, upsample_logits):
  """Matched float32 logits, int32 labels [N, H, W] with ignored pixels set
  to 0, and the float mask of counted pixels."""
  logits, labels = match_sizes(logits, labels, upsample_logits)
  logits = tf.cast(logits, tf.float32)
  labels = tf.squeeze(tf.cast(labels, tf.int32), axis=-1)
  valid = tf.not_equal(labels, ignore_label)
  safe_labels = tf.where(valid, labels, tf.zeros_like(labels))
  return logits, safe_labels, tf.cast(valid, tf.float32)


def _is_binary(logits):
  return logits.shape[-1] == 1


def _pixel_cross_entropy(logits, labels):
  """Per-pixel cross entropy [N, H, W]: sigmoid for 1 channel, else softmax."""
  if _is_binary(logits):
    return tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.float32), logits=logits[..., 0])
  return tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=labels, logits=logits)


def _true_class_probability(logits, labels):
  """Probability the model gives each pixel's true class, [N, H, W]."""
  if _is_binary(logits):
    probability = tf.sigmoid(logits[..., 0])
    return tf.where(labels > 0, probability, 1.0 - probability)
  return tf.gather(tf.nn.softmax(logits), labels, axis=-1, batch_dims=3)


def _class_weight_map(labels, class_weights):
  if class_weights is None or len(class_weights) == 0:
    return 1.0
  return tf.gather(tf.constant(list(class_weights), tf.float32), labels)


def _weighted_mean(pixel_loss, weights, counted):
  """Sum of weighted pixel losses over the number of counted pixels."""
  return tf.math.divide_no_nan(tf.reduce_sum(pixel_loss * weights * counted),
                               tf.reduce_sum(counted))


def softmax_cross_entropy(logits, labels, ignore_label, class_weights=None,
                          upsample_logits=False):
  """Mean pixel-wise cross entropy over the pixels that are not ignored.

  Softmax over C channels, or sigmoid for a 1-channel (binary) head. Each
  pixel's cross entropy is multiplied by its class weight; the sum is divided
  by the number of non-ignored pixels (not by the sum of weights), so a class
  weight of 2 counts a pixel twice.

  Args:
    logits: float [N, h, w, C].
    labels: int [N, H, W, 1] class ids or `ignore_label` (binary: 0 / 1).
    ignore_label: label value excluded from the loss.
    class_weights: optional float sequence of length C (binary: 2).
    upsample_logits: see `match_sizes`.

  Returns:
    A float32 scalar; 0 when every pixel is ignored.
  """
  logits, labels, valid = _prepare(logits, labels, ignore_label,
                                   upsample_logits)
  return _weighted_mean(_pixel_cross_entropy(logits, labels),
                        _class_weight_map(labels, class_weights), valid)


# Binary cross entropy is the 1-channel case of the same function.
binary_cross_entropy = softmax_cross_entropy


def focal_loss(logits, labels, ignore_label, gamma=2.0, alpha=0.0,
               class_weights=None, upsample_logits=False):
  """Focal loss: cross entropy times (1 - p_true)^gamma, averaged as above.

  Args:
    logits, labels, ignore_label, class_weights, upsample_logits: as in
      `softmax_cross_entropy`.
    gamma: focusing exponent; 0 gives plain cross entropy.
    alpha: binary heads only; > 0 weights foreground pixels by alpha and
      background pixels by 1 - alpha (Lin et al.'s alpha balancing).

  Returns:
    A float32 scalar.
  """
  logits, labels, valid = _prepare(logits, labels, ignore_label,
                                   upsample_logits)
  cross_entropy = _pixel_cross_entropy(logits, labels)
  probability = tf.stop_gradient(_true_class_probability(logits, labels))
  pixel_loss = tf.pow(1.0 - probability, gamma) * cross_entropy
  weights = _class_weight_map(labels, class_weights)
  if alpha > 0 and _is_binary(logits):
    weights *= tf.where(labels > 0, alpha, 1.0 - alpha)
  return _weighted_mean(pixel_loss, weights, valid)


def ohem_cross_entropy(logits, labels, ignore_label, threshold=0.7,
                       min_kept=100000, class_weights=None,
                       upsample_logits=False):
  """Cross entropy over hard pixels only (online hard example mining).

  A pixel counts when the probability of its true class is below the
  threshold; if fewer than `min_kept` pixels would count, the threshold is
  raised to the `min_kept`-th smallest probability of the batch, so at least
  the min_kept hardest pixels always count (mmsegmentation's OHEM rule).

  Args:
    logits, labels, ignore_label, class_weights, upsample_logits: as in
      `softmax_cross_entropy`.
    threshold: probability of the true class below which a pixel is hard.
    min_kept: smallest number of pixels kept per batch.

  Returns:
    A float32 scalar: the weighted mean over the kept pixels.
  """
  logits, labels, valid = _prepare(logits, labels, ignore_label,
                                   upsample_logits)
  cross_entropy = _pixel_cross_entropy(logits, labels)
  probability = tf.stop_gradient(_true_class_probability(logits, labels))
  # Ignored pixels sort last.
  flat = tf.reshape(tf.where(valid > 0, probability, 2.0), [-1])
  num_valid = tf.cast(tf.reduce_sum(valid), tf.int32)
  kept = tf.minimum(tf.cast(min_kept, tf.int32), num_valid)
  ascending = tf.sort(flat)
  kth = tf.cond(kept > 0, lambda: ascending[tf.maximum(kept - 1, 0)],
                lambda: tf.constant(0.0))
  # Strictly below the threshold, or up to and including the k-th hardest.
  limit = tf.maximum(tf.cast(threshold, tf.float32), kth)
  hard = tf.where(kth >= threshold, probability <= limit, probability < limit)
  counted = valid * tf.cast(hard, tf.float32)
  return _weighted_mean(cross_entropy,
                        _class_weight_map(labels, class_weights), counted)


def bootstrapped_cross_entropy(logits, labels, ignore_label,
                               top_k_fraction=0.25, class_weights=None,
                               upsample_logits=False):
  """Mean cross entropy of the hardest `top_k_fraction` of the counted pixels.

  Args:
    logits, labels, ignore_label, class_weights, upsample_logits: as in
      `softmax_cross_entropy`.
    top_k_fraction: in (0, 1]; 1 is plain (weighted) cross entropy.

  Returns:
    A float32 scalar; 0 when every pixel is ignored.
  """
  logits, labels, valid = _prepare(logits, labels, ignore_label,
                                   upsample_logits)
  pixel_loss = (_pixel_cross_entropy(logits, labels)
                * _class_weight_map(labels, class_weights))
  # Ignored pixels get -1 so they are never among the top k.
  flat = tf.reshape(tf.where(valid > 0, pixel_loss, -1.0), [-1])
  num_valid = tf.reduce_sum(valid)
  k = tf.cast(tf.math.ceil(num_valid * top_k_fraction), tf.int32)
  top = tf.math.top_k(flat, k=tf.maximum(k, 1), sorted=False).values
  return tf.math.divide_no_nan(tf.reduce_sum(tf.maximum(top, 0.0)),
                               tf.cast(k, tf.float32))


def dice_loss(logits, labels, ignore_label, smooth=1.0, class_weights=None,
              upsample_logits=False):
  """Soft dice loss, 1 - (2 |P.G| + smooth) / (|P| + |G| + smooth).

  Sums run over every counted pixel of the batch. Multi-class: softmax
  probabilities against one-hot labels per class, then the (class-weighted)
  mean over classes; a class absent from both prediction and labels scores 1.
  Binary: sigmoid probability against the 0 / 1 labels, foreground only.

  Args:
    logits, labels, ignore_label, upsample_logits: as in
      `softmax_cross_entropy`.
    smooth: added to numerator and denominator; keeps empty masks finite.
    class_weights: optional weights of the per-class terms (multi-class).

  Returns:
    A float32 scalar in [0, 1]: 0 for a perfect prediction, ~1 for a disjoint
    one.
  """
  logits, labels, valid = _prepare(logits, labels, ignore_label,
                                   upsample_logits)
  valid = valid[..., None]
  if _is_binary(logits):
    probabilities = tf.sigmoid(logits)
    truth = tf.cast(labels[..., None], tf.float32)
  else:
    probabilities = tf.nn.softmax(logits)
    truth = tf.one_hot(labels, logits.shape[-1], dtype=tf.float32)
  probabilities *= valid
  truth *= valid
  axes = [0, 1, 2]
  intersection = tf.reduce_sum(probabilities * truth, axis=axes)
  denominator = (tf.reduce_sum(probabilities, axis=axes)
                 + tf.reduce_sum(truth, axis=axes))
  dice = tf.where(denominator > 0,
                  (2.0 * intersection + smooth) / (denominator + smooth), 1.0)
  if class_weights is not None and len(class_weights) and not _is_binary(logits):
    weights = tf.constant(list(class_weights), tf.float32)
    return 1.0 - tf.math.divide_no_nan(tf.reduce_sum(dice * weights),
                                       tf.reduce_sum(weights))
  return 1.0 - tf.reduce_mean(dice)


def median_frequency_weights(frequencies):
  """Median-frequency balancing weights (Eigen & Fergus 2015).

  Args:
    frequencies: per-class pixel fractions (any positive scale).

  Returns:
    List of floats: median(present) / f_c for present classes, 0 for classes
    with no pixels.

  Raises:
    ValueError: no class has pixels.
  """
  present = sorted(float(f) for f in frequencies if f > 0)
  if not present:
    raise ValueError("median-frequency weights need at least one class with "
                     "pixels; every frequency is 0")
  middle = len(present) // 2
  median = (present[middle] if len(present) % 2
            else 0.5 * (present[middle - 1] + present[middle]))
  return [median / float(f) if f > 0 else 0.0 for f in frequencies]


def enet_weights(frequencies, constant=1.10):
  """ENet's class weights (Paszke et al. 2016): 1 / ln(constant + p_c).

  Args:
    frequencies: per-class pixel counts or fractions (any positive scale);
      p_c is each one's share of their sum.
    constant: c > 1, so every weight is positive and at most 1 / ln(c).

  Returns:
    List of floats, one per class (a class with no pixels gets 1 / ln(c)).

  Raises:
    ValueError: constant <= 1, or no class has pixels.
  """
  if constant <= 1.0:
    raise ValueError(f"ENet weights need a constant > 1, got {constant:g}")
  total = float(sum(frequencies))
  if total <= 0:
    raise ValueError("ENet weights need at least one class with pixels; "
                     "every frequency is 0")
  return [1.0 / math.log(constant + float(f) / total) for f in frequencies]
