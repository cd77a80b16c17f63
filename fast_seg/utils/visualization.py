"""Colour palettes and label overlays (TF ops for summaries, numpy for PNGs)."""

import numpy as np
import tensorflow as tf


def default_palette(num_classes):
  """A distinct RGB colour per class id (bit-interleaved, as Pascal VOC does)."""
  palette = np.zeros((num_classes, 3), np.uint8)
  for class_id in range(num_classes):
    value, color = class_id, [0, 0, 0]
    for shift in range(7, -1, -1):
      for channel in range(3):
        color[channel] |= ((value >> channel) & 1) << shift
      value >>= 3
    palette[class_id] = color
  return palette


def colorize(labels, palette):
  """Maps int labels [..., H, W] to RGB uint8 [..., H, W, 3].

  Ids outside the palette (the ignore label among them) are drawn black.
  """
  palette = tf.constant(np.concatenate([palette, [[0, 0, 0]]]), tf.uint8)
  labels = tf.cast(labels, tf.int32)
  outside = tf.logical_or(labels < 0, labels >= palette.shape[0] - 1)
  labels = tf.where(outside, palette.shape[0] - 1, labels)
  return tf.gather(palette, labels)


def overlay(images, labels, palette, alpha=0.5):
  """Blends a colourised label map over RGB images (both 0..255) -> uint8."""
  colors = tf.cast(colorize(labels, palette), tf.float32)
  blended = (1.0 - alpha) * tf.cast(images, tf.float32) + alpha * colors
  return tf.cast(tf.clip_by_value(tf.round(blended), 0, 255), tf.uint8)


def side_by_side(image, ground_truth, prediction, palette):
  """image | ground-truth overlay | prediction overlay, as one uint8 array."""
  panels = [np.asarray(image, np.uint8)]
  for labels in (ground_truth, prediction):
    if labels is not None:
      panels.append(overlay(image, labels, palette).numpy())
  return np.concatenate(panels, axis=1)
