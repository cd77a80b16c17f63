"""Colour palettes and label overlays (TF ops for summaries, numpy for PNGs)."""

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
import tensorflow as tf

_FONT_SIZE = 14
_MARGIN = 4
_SWATCH = 12
# Height of the title row that annotate() puts above the panels.
TITLE_HEIGHT = _FONT_SIZE + 2 * _MARGIN


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
  return blend(images, colorize(labels, palette), alpha)


def blend(images, colours, alpha=0.5, keep=None):
  """The one overlay arithmetic: `colours` over `images` at opacity `alpha`.

  Args:
    images, colours: RGB [..., H, W, 3] in 0..255, any dtype.
    alpha: opacity of the colours.
    keep: optional bool [..., H, W]: pixels shown as the image alone (rows
      predict.py did not predict).

  Returns:
    uint8 [..., H, W, 3], rounded.
  """
  images = tf.cast(images, tf.float32)
  blended = (1.0 - alpha) * images + alpha * tf.cast(colours, tf.float32)
  blended = tf.clip_by_value(tf.round(blended), 0, 255)
  if keep is not None:
    blended = tf.where(tf.expand_dims(keep, -1), images, blended)
  return tf.cast(blended, tf.uint8)


def side_by_side(image, ground_truth, prediction, palette, class_names=None):
  """image | ground truth | prediction overlays, titled, with a class legend.

  Args:
    image: RGB uint8 [H, W, 3].
    ground_truth, prediction: int labels [H, W], or None to leave one out.
    palette: [C, 3] uint8 colours by class id.
    class_names: names by class id for the legend; None: class_<id>.

  Returns:
    uint8 [H', W', 3]: a title row, the panels and a legend of the classes
    present in the label maps (ignored ids left out).
  """
  panels, titles, label_maps = [np.asarray(image, np.uint8)], ["image"], []
  for title, labels in (("ground truth", ground_truth), ("prediction", prediction)):
    if labels is not None:
      panels.append(overlay(image, labels, palette).numpy())
      titles.append(title)
      label_maps.append(np.asarray(labels))
  return annotate(np.concatenate(panels, axis=1), titles,
                  legend_entries(label_maps, palette, class_names))


def legend_entries(label_maps, palette, class_names=None):
  """(name, colour) of each class id present in any of `label_maps`."""
  present = set()
  for labels in label_maps:
    present.update(int(v) for v in np.unique(labels))
  palette = np.asarray(palette)
  ids = sorted(i for i in present if 0 <= i < len(palette))
  name = lambda i: (class_names[i] if class_names is not None
                    and i < len(class_names) else f"class_{i}")
  return [(name(i), tuple(int(c) for c in palette[i])) for i in ids]


def annotate(panels, titles, entries):
  """Adds titles centred over equal-width panels and a legend below.

  Args:
    panels: uint8 [H, W, 3], len(titles) panels of equal width side by side.
    titles: one title per panel (may be empty: no title row).
    entries: (name, RGB colour) pairs for the legend (may be empty).
  """
  font = ImageFont.load_default(size=_FONT_SIZE)
  height, width = panels.shape[:2]
  title_height = TITLE_HEIGHT if titles else 0
  rows = _legend_rows(entries, width, font)
  legend_height = len(rows) * (_FONT_SIZE + _MARGIN) + (_MARGIN if rows else 0)
  canvas = Image.new("RGB", (width, title_height + height + legend_height),
                     (255, 255, 255))
  canvas.paste(Image.fromarray(panels), (0, title_height))
  draw = ImageDraw.Draw(canvas)
  panel_width = width / max(len(titles), 1)
  for i, title in enumerate(titles):
    text_width = draw.textlength(title, font=font)
    draw.text((i * panel_width + (panel_width - text_width) / 2, _MARGIN), title,
              fill=(0, 0, 0), font=font)
  y = title_height + height + _MARGIN
  for row in rows:
    for x, (name, colour) in row:
      draw.rectangle([x, y + 1, x + _SWATCH, y + 1 + _SWATCH], fill=colour,
                     outline=(0, 0, 0))
      draw.text((x + _SWATCH + _MARGIN, y), name, fill=(0, 0, 0), font=font)
    y += _FONT_SIZE + _MARGIN
  return np.asarray(canvas)


def _legend_rows(entries, width, font):
  """Legend entries laid out left to right, wrapped at `width`: [[(x, entry)]]."""
  rows, row, x = [], [], _MARGIN
  for name, colour in entries:
    entry_width = _SWATCH + 2 * _MARGIN + font.getlength(name) + 2 * _MARGIN
    if row and x + entry_width > width:
      rows.append(row)
      row, x = [], _MARGIN
    row.append((x, (name, colour)))
    x += entry_width
  if row:
    rows.append(row)
  return rows
