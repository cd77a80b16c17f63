"""Colour palettes and label overlays (TF ops for summaries, numpy for PNGs).

Ignored pixels (ids outside the palette: the ignore label 255 among them) are
never coloured: an overlay shows the image there as it is. So they differ
from every class, a black background (VOC's, the hair masks') included, where
colouring them black would make the two one.
"""

import functools

import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
import tensorflow as tf

_FONT_SIZE = 14
_MARGIN = 4
_SWATCH = 12
# Height of the title row that annotate() puts above panels of up to
# _FONT_SCALE_FROM pixels (the text grows with larger panels, see _font_size).
TITLE_HEIGHT = _FONT_SIZE + 2 * _MARGIN
# Text is 1/_FONT_DIVISOR of a panel's shorter side, at least _FONT_SIZE.
_FONT_DIVISOR = 40
_FONT_SCALE_FROM = _FONT_SIZE * _FONT_DIVISOR
# default_palette's colours: a grid of sRGB in steps of _GRID_STEP, kept where
# CIELAB lightness is in _LIGHTNESS and chroma at least _MIN_CHROMA (no greys,
# no near-black or near-white: they vanish over skies, roads and shadows).
_GRID_STEP = 15
_LIGHTNESS = (35.0, 88.0)
_MIN_CHROMA = 35.0
# The first colour; the rest follow from it.
_FIRST_COLOUR = (225, 30, 75)
# Sizes up to this come from one cached sequence.
_MAX_DEFAULT_CLASSES = 256


def _srgb_to_lab(rgb):
  """CIELAB (D65) of sRGB colours [..., 3] in 0..255: distances in it follow
  perceived differences far better than RGB distances do."""
  linear = np.asarray(rgb, np.float64) / 255.0
  linear = np.where(linear > 0.04045, ((linear + 0.055) / 1.055) ** 2.4,
                    linear / 12.92)
  to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722],
                     [0.0193, 0.1192, 0.9505]])
  xyz = linear @ to_xyz.T / np.array([0.95047, 1.0, 1.08883])
  delta = 6.0 / 29.0
  f = np.where(xyz > delta ** 3, np.cbrt(xyz), xyz / (3 * delta ** 2) + 4 / 29)
  return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]),
                   200 * (f[..., 1] - f[..., 2])], axis=-1)


@functools.lru_cache(maxsize=None)
def _distinct_colours(count):
  """`count` colours, each the candidate farthest (CIELAB) from all before.

  Greedy farthest-point order: every prefix is as spread out as the greedy
  choice can make it, so class i has the same colour whatever the number
  of classes, and the first classes (the common case) differ most.
  """
  grid = np.arange(0, 256, _GRID_STEP)
  candidates = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"),
                        axis=-1).reshape(-1, 3)
  lab = _srgb_to_lab(candidates)
  chroma = np.hypot(lab[:, 1], lab[:, 2])
  usable = ((chroma >= _MIN_CHROMA) & (lab[:, 0] >= _LIGHTNESS[0])
            & (lab[:, 0] <= _LIGHTNESS[1]))
  candidates, lab = candidates[usable], lab[usable]
  chosen = [int(np.argmin(np.abs(candidates - _FIRST_COLOUR).sum(axis=1)))]
  nearest = np.linalg.norm(lab - lab[chosen[0]], axis=1)
  while len(chosen) < min(count, len(candidates)):
    chosen.append(int(np.argmax(nearest)))
    nearest = np.minimum(nearest, np.linalg.norm(lab - lab[chosen[-1]], axis=1))
  # More classes than candidates (thousands) repeat the sequence.
  palette = np.resize(candidates[chosen].astype(np.uint8), (count, 3))
  palette.setflags(write=False)  # Cached: shared by every caller.
  return palette


def default_palette(num_classes):
  """A colour per class id for datasets without their own: distinct hues.

  Saturated, mid-light colours as far apart as possible (see
  _distinct_colours), so neighbouring classes such as road, pavement and
  car stay apart when blended over a photo; a dataset_info.json palette
  (CamVid's, Cityscapes' official colours) is used instead where there is
  one.
  """
  count = max(num_classes, _MAX_DEFAULT_CLASSES)
  return _distinct_colours(count)[:num_classes].copy()


def voc_colormap(num_classes=256):
  """Pascal VOC's colour map (bit-interleaved ids): its palette PNGs' own
  colours, kept for reading and writing VOC data, not as a default."""
  palette = np.zeros((num_classes, 3), np.uint8)
  for class_id in range(num_classes):
    value, color = class_id, [0, 0, 0]
    for shift in range(7, -1, -1):
      for channel in range(3):
        color[channel] |= ((value >> channel) & 1) << shift
      value >>= 3
    palette[class_id] = color
  return palette


def _outside(labels, num_colours):
  """Where int `labels` have no colour: the ignored pixels (module doc)."""
  return tf.logical_or(labels < 0, labels >= num_colours)


def colorize(labels, palette):
  """Maps int labels [..., H, W] to RGB uint8 [..., H, W, 3].

  Ids outside the palette (the ignore label among them) come out black
  here; the overlays do not colour them at all (see overlay).
  """
  palette = tf.constant(np.concatenate([palette, [[0, 0, 0]]]), tf.uint8)
  labels = tf.cast(labels, tf.int32)
  labels = tf.where(_outside(labels, palette.shape[0] - 1),
                    palette.shape[0] - 1, labels)
  return tf.gather(palette, labels)


def overlay(images, labels, palette, alpha=0.5):
  """Blends a colourised label map over RGB images (both 0..255) -> uint8.

  Pixels whose id is outside the palette (the ignore label) keep the image's
  own colour, so they read as "not labelled", never as class 0.
  """
  keep = _outside(tf.cast(labels, tf.int32), len(palette))
  return blend(images, colorize(labels, palette), alpha, keep=keep)


def blend(images, colours, alpha=0.5, keep=None):
  """The one overlay arithmetic: `colours` over `images` at opacity `alpha`.

  Args:
    images, colours: RGB [..., H, W, 3] in 0..255, any dtype.
    alpha: opacity of the colours.
    keep: optional bool [..., H, W]: pixels shown as the image alone
      (ignored ids, rows predict.py did not predict).

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


def _font_size(panel_height, panel_width):
  """The legend's and titles' text height for panels of this size.

  _FONT_SIZE up to panels of _FONT_SCALE_FROM pixels, then in proportion to
  the shorter side: a fixed 14 px legend under a 2048x1024 frame shrinks to
  a footnote once the picture is viewed whole.
  """
  return max(_FONT_SIZE, round(min(panel_height, panel_width) / _FONT_DIVISOR))


def annotate(panels, titles, entries):
  """Adds titles centred over equal-width panels and a legend below.

  Text, swatches and margins grow with the panels (_font_size).

  Args:
    panels: uint8 [H, W, 3], len(titles) panels of equal width side by side.
    titles: one title per panel (may be empty: no title row).
    entries: (name, RGB colour) pairs for the legend (may be empty).
  """
  height, width = panels.shape[:2]
  panel_width = width / max(len(titles), 1)
  size = _font_size(height, panel_width)
  margin = round(size * _MARGIN / _FONT_SIZE)
  swatch = round(size * _SWATCH / _FONT_SIZE)
  font = ImageFont.load_default(size=size)
  title_height = size + 2 * margin if titles else 0
  rows = _legend_rows(entries, width, font, margin, swatch)
  legend_height = len(rows) * (size + margin) + (margin if rows else 0)
  canvas = Image.new("RGB", (width, title_height + height + legend_height),
                     (255, 255, 255))
  canvas.paste(Image.fromarray(panels), (0, title_height))
  draw = ImageDraw.Draw(canvas)
  for i, title in enumerate(titles):
    text_width = draw.textlength(title, font=font)
    draw.text((i * panel_width + (panel_width - text_width) / 2, margin), title,
              fill=(0, 0, 0), font=font)
  y = title_height + height + margin
  top = (size - swatch) // 2  # The swatch centred on the text's line.
  for row in rows:
    for x, (name, colour) in row:
      draw.rectangle([x, y + top, x + swatch, y + top + swatch], fill=colour,
                     outline=(0, 0, 0), width=max(1, size // _FONT_SIZE))
      draw.text((x + swatch + margin, y), name, fill=(0, 0, 0), font=font)
    y += size + margin
  return np.asarray(canvas)


def _legend_rows(entries, width, font, margin, swatch):
  """Legend entries laid out left to right, wrapped at `width`: [[(x, entry)]]."""
  rows, row, x = [], [], margin
  for name, colour in entries:
    entry_width = swatch + 2 * margin + font.getlength(name) + 2 * margin
    if row and x + entry_width > width:
      rows.append(row)
      row, x = [], margin
    row.append((x, (name, colour)))
    x += entry_width
  if row:
    rows.append(row)
  return rows
