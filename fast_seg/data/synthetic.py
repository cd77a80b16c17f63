"""The built-in sample dataset: coloured, textured shapes on a noisy ground.

fast_seg ships no third-party data, so demos and end-to-end tests train on
images the project draws itself. Each shape class has its own colour family
and texture (varied per shape), so a small CNN learns it in minutes; shapes
overlap, and the labels are exact because image and label are filled from
the same rasterised mask. Output is deterministic for a given seed.

    python -m fast_seg.data.synthetic --output_dir data/synthetic
"""

import json
import os
import time

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
from PIL import Image
from PIL import ImageDraw

from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.data import tf_example
from fast_seg.utils import cli

_INFO = standard_fields.DatasetInfoFields

CLASS_NAMES = ("background", "circle", "rectangle", "triangle", "ellipse",
               "stripe")
NUM_CLASSES = len(CLASS_NAMES)
# One RGB colour per class id for visualisations; shape classes are also
# painted in (jittered) versions of their colour.
PALETTE = (
    (0, 0, 0),
    (230, 25, 75),
    (0, 130, 200),
    (60, 180, 75),
    (255, 225, 25),
    (145, 30, 180),
)
SPLITS = ("train", "val")

# Shapes per image (inclusive range) and their radius as a fraction of the
# shorter image side.
_MIN_SHAPES, _MAX_SHAPES = 2, 6
_MIN_RADIUS, _MAX_RADIUS = 0.1, 0.25


def _image_size(size):
  """(height, width) from an int (square) or a pair."""
  if isinstance(size, int):
    height = width = size
  else:
    height, width = (int(v) for v in size)
  if height < 8 or width < 8:
    raise ValueError(f"image size must be at least 8x8, got {size}")
  return height, width


def _background(rng, height, width):
  """A smooth, low-saturation random field with fine noise, float [H, W, 3]."""
  grey = rng.uniform(70.0, 170.0)
  tint = rng.uniform(-20.0, 20.0, size=3)
  cells = rng.integers(2, 6)
  coarse = rng.uniform(-35.0, 35.0, size=(cells, cells, 3)) + 128.0
  smooth = Image.fromarray(coarse.astype(np.uint8), mode="RGB").resize(
      (width, height), Image.BILINEAR)
  field = np.asarray(smooth, np.float32) - 128.0
  noise = rng.normal(0.0, 8.0, size=(height, width, 3))
  return grey + tint + field + noise


def _texture(rng, class_id, yy, xx):
  """A class-specific pattern in a jittered version of the class colour."""
  base = np.asarray(PALETTE[class_id], np.float32)
  colour = base * rng.uniform(0.8, 1.1) + rng.normal(0.0, 15.0, size=3)
  period = rng.uniform(4.0, 9.0)
  phase = rng.uniform(0.0, 2.0 * np.pi)
  if class_id == 1:  # circle: flat colour
    pattern = np.zeros_like(yy)
  elif class_id == 2:  # rectangle: horizontal stripes
    pattern = np.sin(2.0 * np.pi * yy / period + phase)
  elif class_id == 3:  # triangle: checkerboard
    pattern = (((yy // period).astype(np.int64) +
                (xx // period).astype(np.int64)) % 2) * 2.0 - 1.0
  elif class_id == 4:  # ellipse: dots
    pattern = (np.sin(2.0 * np.pi * yy / period + phase) *
               np.sin(2.0 * np.pi * xx / period + phase))
  else:  # stripe: diagonal gradient
    pattern = np.cos(2.0 * np.pi * (yy + xx) / (6.0 * period) + phase)
  amplitude = rng.uniform(20.0, 40.0)
  return colour + amplitude * pattern[..., None]


def _rotated(points, angle, centre):
  """Rotates [N, 2] (x, y) offsets by `angle` and moves them to `centre`."""
  c, s = np.cos(angle), np.sin(angle)
  rotation = np.array([[c, -s], [s, c]])
  return points @ rotation.T + centre


def _draw_mask(rng, class_id, height, width):
  """Rasterises one shape of `class_id` at a random place, bool [H, W]."""
  short = min(height, width)
  radius = rng.uniform(_MIN_RADIUS, _MAX_RADIUS) * short
  centre = np.array([rng.uniform(0.1, 0.9) * width,
                     rng.uniform(0.1, 0.9) * height])
  angle = rng.uniform(0.0, np.pi)
  mask = Image.new("L", (width, height), 0)
  draw = ImageDraw.Draw(mask)
  if class_id == 1:  # circle
    x, y = centre
    draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=1)
    return np.asarray(mask, bool)
  if class_id == 2:  # rectangle
    half = radius * np.array([1.0, rng.uniform(0.5, 1.0)])
    points = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
  elif class_id == 3:  # triangle, roughly equilateral
    angles = np.array([0.0, 2.0, 4.0]) * np.pi / 3.0 + rng.uniform(
        -0.3, 0.3, size=3)
    radii = radius * rng.uniform(1.0, 1.4, size=3)
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radii[:, None]
  elif class_id == 4:  # ellipse, clearly not round
    t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    axes = radius * np.array([1.3, rng.uniform(0.35, 0.6)])
    points = np.stack([np.cos(t), np.sin(t)], axis=1) * axes
  else:  # stripe: a long thick band
    half = np.array([rng.uniform(1.5, 3.0) * radius,
                     rng.uniform(0.06, 0.12) * short])
    points = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
  points = _rotated(points, angle, centre)
  draw.polygon([tuple(p) for p in points.tolist()], fill=1)
  return np.asarray(mask, bool)


def _shape_classes(rng):
  """Classes of the shapes of one image, in drawing order (later on top)."""
  count = rng.integers(_MIN_SHAPES, _MAX_SHAPES + 1)
  shape_ids = np.arange(1, NUM_CLASSES)
  # A permutation first, so small splits still see every class.
  classes = list(rng.permutation(shape_ids)[:count])
  classes += list(rng.choice(shape_ids, size=count - len(classes)))
  return classes


def generate_split(num_images, size=128, seed=0):
  """Yields synthetic (image, label) pairs, deterministic by seed.

  Args:
    num_images: number of pairs.
    size: image size, an int (square) or (height, width).
    seed: int or tuple of ints (numpy SeedSequence entropy).

  Yields:
    (image uint8 [H, W, 3], label uint8 [H, W]) with label values in
    0..NUM_CLASSES - 1 (no ignore pixels).

  Raises:
    ValueError: size smaller than 8x8.
  """
  height, width = _image_size(size)
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
  for _ in range(num_images):
    image = _background(rng, height, width)
    label = np.zeros((height, width), np.uint8)
    for class_id in _shape_classes(rng):
      mask = _draw_mask(rng, class_id, height, width)
      image = np.where(mask[..., None], _texture(rng, class_id, yy, xx), image)
      label[mask] = class_id
    image += rng.normal(0.0, 4.0, size=image.shape)
    yield np.clip(np.round(image), 0, 255).astype(np.uint8), label


def _remove_stale_shards(output_dir, split, keep):
  """Deletes old shards of `split` that a new write would not overwrite.

  Otherwise a rerun with fewer shards would leave files that the
  `{split}-*.tfrecord` glob still reads.
  """
  pattern = os.path.join(output_dir, f"{split}-?????-of-?????.tfrecord")
  for path in tf.io.gfile.glob(pattern):
    if path not in keep:
      tf.io.gfile.remove(path)


def write_dataset(output_dir, num_train=300, num_val=60, size=128, seed=0,
                  num_shards=2):
  """Writes the synthetic dataset as TFRecords plus dataset_info.json.

  Args:
    output_dir: directory for `train-*.tfrecord`, `val-*.tfrecord` and
      `dataset_info.json`; created if missing.
    num_train: training images.
    num_val: validation images.
    size: image size, an int (square) or (height, width).
    seed: base seed; train and val draw from different streams of it.
    num_shards: TFRecord files per split.

  Returns:
    Summary dict: output_dir, num_classes, num_examples per split, files per
    split and seconds taken.

  Raises:
    ValueError: negative counts, size below 8x8 or num_shards < 1.
  """
  if num_train < 0 or num_val < 0:
    raise ValueError(
        f"num_train and num_val must be >= 0, got {num_train}, {num_val}")
  height, width = _image_size(size)
  start = time.time()
  tf.io.gfile.makedirs(output_dir)
  counts, files = {}, {}
  for split_index, (split, num_images) in enumerate(
      zip(SPLITS, (num_train, num_val))):
    files[split], counts[split] = _write_split(
        output_dir, split, num_images, (height, width), (seed, split_index),
        num_shards)
  info = {
      _INFO.num_classes: NUM_CLASSES,
      _INFO.ignore_label: standard_fields.IGNORE_LABEL,
      _INFO.class_names: list(CLASS_NAMES),
      _INFO.palette: [list(c) for c in PALETTE],
      _INFO.num_examples: {"train": num_train, "val": num_val},
      _INFO.class_pixel_frequency: {
          split: [round(float(c) / max(int(n.sum()), 1), 6) for c in n]
          for split, n in counts.items()},
      _INFO.file_patterns: {split: f"{split}-*.tfrecord" for split in SPLITS},
      _INFO.image_sizes: {
          split: {f"{height}x{width}": n} if n else {}
          for split, n in zip(SPLITS, (num_train, num_val))},
  }
  dataset_info.write(output_dir, info)
  return {
      "output_dir": output_dir,
      _INFO.num_classes: NUM_CLASSES,
      _INFO.num_examples: dict(info[_INFO.num_examples]),
      "files": files,
      "seconds": round(time.time() - start, 3),
  }


def _write_split(output_dir, split, num_images, size, seed, num_shards):
  """Writes one split's shards; returns (paths, pixels per class)."""
  height, width = size
  pixel_counts = np.zeros(NUM_CLASSES, np.int64)

  def examples():
    for i, (image, label) in enumerate(generate_split(num_images, size, seed)):
      pixel_counts[:] += np.bincount(label.ravel(), minlength=NUM_CLASSES)
      yield tf_example.make_example(
          tf_example.encode_png(image), tf_example.encode_png(label),
          f"{split}_{i:05d}.png", height, width, "png")

  paths = tf_example.write_sharded(examples(), output_dir, split, num_shards)
  _remove_stale_shards(output_dir, split, set(paths))
  return paths, pixel_counts


def write_sample_images(output_dir, num_images, size=128, seed=0):
  """Writes unlabelled PNGs (a stream of their own, not train/val images).

  They are what prediction tools run on in the demo.

  Returns:
    The list of written paths.
  """
  tf.io.gfile.makedirs(output_dir)
  paths = []
  pairs = generate_split(num_images, size, (seed, len(SPLITS)))
  for i, (image, _) in enumerate(pairs):
    path = os.path.join(output_dir, f"sample_{i:03d}.png")
    with tf.io.gfile.GFile(path, "wb") as f:
      f.write(tf_example.encode_png(image))
    paths.append(path)
  return paths


def _define_flags():
  # Defined only when run as a script, so importing this module never clashes
  # with another entry point's --output_dir.
  flags.DEFINE_string("output_dir", None, "Directory for the TFRecords.")
  flags.DEFINE_integer("num_train", 300, "Training images.")
  flags.DEFINE_integer("num_val", 60, "Validation images.")
  flags.DEFINE_integer("size", 128, "Image height and width.")
  flags.DEFINE_integer("seed", 0, "Random seed; equal seeds give equal files.")
  flags.DEFINE_integer("num_shards", 2, "TFRecord files per split.")
  flags.DEFINE_integer("num_sample_images", 0,
                       "Also write this many unlabelled PNGs to output_dir/images.")
  flags.mark_flag_as_required("output_dir")


def _main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  summary = write_dataset(f.output_dir, num_train=f.num_train,
                          num_val=f.num_val, size=f.size, seed=f.seed,
                          num_shards=f.num_shards)
  if f.num_sample_images:
    summary["sample_images"] = len(write_sample_images(
        os.path.join(f.output_dir, "images"), f.num_sample_images, f.size,
        f.seed))
  logging.info("wrote %s", json.dumps(summary))
  print(json.dumps(summary, indent=2))


def command():
  """The fast-seg-synthetic command, and python -m fast_seg.data.synthetic."""
  _define_flags()
  cli.run(_main, usage=__doc__)


if __name__ == "__main__":
  command()
