"""Writing segmentation examples as sharded TFRecords with the DeepLab keys.

Dataset converters and the synthetic dataset share these helpers, so every
shard fast_seg writes is readable by DeepLab / Model Garden and vice versa.
"""

import io
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from fast_seg.core import standard_fields

_FIELDS = standard_fields.TfExampleFields


def _to_pil(array):
  """Wraps a uint8 HxW, HxWx1 or HxWx3 array as a PIL image."""
  array = np.asarray(array)
  if array.dtype != np.uint8:
    raise ValueError(f"expected a uint8 array, got {array.dtype}")
  if array.ndim == 3 and array.shape[-1] == 1:
    array = array[..., 0]
  if array.ndim == 2:
    return Image.fromarray(array, mode="L")
  if array.ndim == 3 and array.shape[-1] == 3:
    return Image.fromarray(array, mode="RGB")
  raise ValueError(
      f"expected an array of shape [H, W], [H, W, 1] or [H, W, 3], got "
      f"{array.shape}")


def encode_png(array):
  """Encodes a uint8 array as PNG (lossless, so labels stay exact).

  Args:
    array: uint8 numpy array of shape [H, W], [H, W, 1] (grey / class ids) or
      [H, W, 3] (RGB).

  Returns:
    The PNG file as bytes.

  Raises:
    ValueError: wrong dtype or shape.
  """
  buffer = io.BytesIO()
  _to_pil(array).save(buffer, format="PNG")
  return buffer.getvalue()


def encode_jpeg(array, quality=95):
  """Encodes a uint8 RGB or grey array as JPEG (images only, never labels).

  Args:
    array: uint8 numpy array of shape [H, W], [H, W, 1] or [H, W, 3].
    quality: JPEG quality, 1..100.

  Returns:
    The JPEG file as bytes.

  Raises:
    ValueError: wrong dtype or shape.
  """
  buffer = io.BytesIO()
  _to_pil(array).save(buffer, format="JPEG", quality=int(quality))
  return buffer.getvalue()


def _bytes_feature(value):
  if isinstance(value, str):
    value = value.encode("utf-8")
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64_feature(value):
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(image_bytes, label_png_bytes, filename, height, width,
                 image_format="png"):
  """Builds a tf.train.Example with the DeepLab segmentation keys.

  Args:
    image_bytes: the encoded image file (PNG or JPEG), RGB.
    label_png_bytes: a single-channel PNG of class ids, same size as the image.
    filename: the image's name, kept for error messages and visualisations.
    height: image height in pixels.
    width: image width in pixels.
    image_format: 'png' or 'jpeg' (stored as `image/format`).

  Returns:
    tf.train.Example.
  """
  feature = {
      _FIELDS.image_encoded: _bytes_feature(image_bytes),
      _FIELDS.image_filename: _bytes_feature(filename),
      _FIELDS.image_format: _bytes_feature(image_format),
      _FIELDS.height: _int64_feature(height),
      _FIELDS.width: _int64_feature(width),
      _FIELDS.channels: _int64_feature(3),
      _FIELDS.label_encoded: _bytes_feature(label_png_bytes),
      _FIELDS.label_format: _bytes_feature("png"),
  }
  return tf.train.Example(features=tf.train.Features(feature=feature))


def shard_path(output_dir, split, shard, num_shards):
  """Returns `output_dir/{split}-{shard:05d}-of-{num_shards:05d}.tfrecord`."""
  return os.path.join(
      output_dir, f"{split}-{shard:05d}-of-{num_shards:05d}.tfrecord")


def write_sharded(examples, output_dir, split, num_shards):
  """Writes examples round-robin into `num_shards` TFRecord files.

  Round-robin keeps shards balanced without knowing the count in advance, so
  `examples` may be a generator.

  Args:
    examples: iterable of tf.train.Example (or already serialized bytes).
    output_dir: directory to write into; created if missing.
    split: file name prefix, e.g. 'train' or 'val'.
    num_shards: number of files, >= 1.

  Returns:
    List of the written paths, in shard order (read them back with the glob
    `{output_dir}/{split}-*.tfrecord`).

  Raises:
    ValueError: num_shards < 1.
  """
  if num_shards < 1:
    raise ValueError(f"num_shards must be >= 1, got {num_shards}")
  tf.io.gfile.makedirs(output_dir)
  paths = [shard_path(output_dir, split, i, num_shards)
           for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  try:
    for i, example in enumerate(examples):
      if isinstance(example, tf.train.Example):
        example = example.SerializeToString()
      writers[i % num_shards].write(example)
  finally:
    for writer in writers:
      writer.close()
  return paths
