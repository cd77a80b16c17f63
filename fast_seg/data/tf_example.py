"""The segmentation TFRecord schema in one place: writing, reading, checking.

Examples carry the DeepLab / Model Garden keys, so every shard fast_seg
writes is readable by those projects and theirs by fast_seg. Converters and
the synthetic dataset write with these helpers; the input reader, the input
problem finder and inspect read with them, so the keys, their types and how
image and label decode are stated once and a writer cannot drift from its
readers.
"""

import io
import os
import re

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


def split_of_shard(path):
  """The split of a file named by `shard_path`, or None for other names."""
  match = re.fullmatch(r"(.+)-\d{5}-of-\d{5}\.tfrecord",
                       os.path.basename(path))
  return match.group(1) if match else None


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


# Keys a record must carry to be a segmentation example; the rest of the
# DeepLab keys are optional (readers take the size from the decoded image).
REQUIRED_KEYS = (_FIELDS.image_encoded, _FIELDS.label_encoded)
# How messages and reports name a record without image/filename.
UNNAMED_IMAGE = "<unnamed image>"


def _string_features(keys):
  """Parsing spec reading `keys` as strings, "" when absent, so a missing key
  gets a message naming it instead of a bare parse error."""
  return {key: tf.io.FixedLenFeature([], tf.string, "") for key in keys}


# The input reader parses only what it uses, so a record whose other keys
# have an unexpected type still trains.
_READER_FEATURES = _string_features(REQUIRED_KEYS + (_FIELDS.image_filename,))
# Tools that report on records also read the image format.
_REPORT_FEATURES = _string_features(
    REQUIRED_KEYS + (_FIELDS.image_filename, _FIELDS.image_format))


def expand_input_paths(patterns, field):
  """Expands file globs into a list of files, in order, without duplicates.

  Args:
    patterns: iterable of glob strings.
    field: the config field they come from, for messages.

  Returns:
    List of file paths: each glob's matches sorted, globs in the given order.

  Raises:
    ValueError: no glob given, or a glob that matches nothing.
  """
  patterns = list(patterns)
  if not patterns:
    raise ValueError(
        f"{field}: no TFRecord glob given; set e.g. "
        f"tf_record_input_path: \"data/train-*.tfrecord\"")
  paths = []
  seen = set()
  for pattern in patterns:
    matches = sorted(tf.io.gfile.glob(pattern))
    if not matches:
      raise ValueError(f"{field}: glob '{pattern}' matches no file")
    for path in matches:
      if path not in seen:
        seen.add(path)
        paths.append(path)
  return paths


def decode_image(encoded):
  """The image of a record as uint8 [H, W, 3], whatever its format.

  Every reader decodes through here, so training, the problem finder and
  inspect see one image the same way (a grey one as RGB, say).
  """
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def decode_label(encoded):
  """The label PNG of a record as uint8 [H, W, 1] (class ids if it is grey)."""
  return tf.io.decode_png(encoded, channels=1)


def _as_text(part):
  """A message part as a string tensor (or a Python string)."""
  if isinstance(part, tf.Tensor) and part.dtype != tf.string:
    return tf.strings.as_string(part)
  return part if isinstance(part, tf.Tensor) else str(part)


def assert_with_message(condition, *parts):
  """tf.debugging.Assert with a message joined from strings and tensors.

  The message surfaces in the tf.errors.InvalidArgumentError raised when the
  iterator reaches the example, so a bad record is named in a tf.data
  pipeline. It avoids quote characters because the Assert op prints them
  escaped.
  """
  message = tf.strings.join([_as_text(p) for p in parts])
  return tf.debugging.Assert(condition, [message])


def size_text(shape):
  """'HxW' of an int32 [2] tensor, for messages."""
  return tf.strings.join(
      [tf.strings.as_string(shape[0]), "x", tf.strings.as_string(shape[1])])


def _checked_size_and_values(image, label, where, num_classes, ignore_label):
  """Asserts that the label has the image's size and holds only class ids or
  the ignore label; returns the two assert ops."""
  image_size = tf.shape(image)[:2]
  label_size = tf.shape(label)[:2]
  size_check = assert_with_message(
      tf.reduce_all(tf.equal(image_size, label_size)), where,
      ": label PNG is ", size_text(label_size), " (HxW) but the image is ",
      size_text(image_size), "; a label must have its image size")
  values = tf.cast(label, tf.int32)
  bad = tf.logical_and(values >= num_classes, values != ignore_label)
  bad_value = tf.reduce_max(tf.where(bad, values, -1))
  value_check = assert_with_message(
      tf.logical_not(tf.reduce_any(bad)), where, ": label value ", bad_value,
      f" is neither a class id (0..{num_classes - 1}) nor the ignore label "
      f"{ignore_label}")
  return size_check, value_check


def decode_checked(record, path, num_classes, ignore_label):
  """Parses, decodes and checks one serialized example in a tf.data pipeline.

  A failed check raises tf.errors.InvalidArgumentError while iterating, with
  a message naming the TFRecord file and the image, because TensorFlow's own
  decode errors name neither.

  Args:
    record: scalar string tensor, one serialized tf.train.Example.
    path: scalar string tensor, the file it was read from.
    num_classes: label values must be < num_classes or the ignore label.
    ignore_label: the label value excluded from losses and metrics.

  Returns:
    (image uint8 [H, W, 3], label uint8 [H, W, 1], filename string,
    'path: image filename' string for later messages). uint8: a quarter of
    the memory where they are cached; cast by the caller.
  """
  features = tf.io.parse_single_example(record, _READER_FEATURES)
  checks = [
      assert_with_message(
          tf.strings.length(features[key]) > 0, path,
          f": record has no {key} (not a segmentation TFRecord?)")
      for key in REQUIRED_KEYS]
  filename = features[_FIELDS.image_filename]
  filename = tf.where(tf.strings.length(filename) > 0, filename,
                      tf.constant(UNNAMED_IMAGE))
  # "image file", so a name such as "2" (LoveDA) reads as a file name.
  where = tf.strings.join([path, ": image file ", filename])
  # Decoding an empty string fails with an unhelpful message: check first.
  with tf.control_dependencies(checks):
    image = decode_image(features[_FIELDS.image_encoded])
    label = decode_label(features[_FIELDS.label_encoded])
  with tf.control_dependencies(_checked_size_and_values(
      image, label, where, num_classes, ignore_label)):
    image = tf.identity(image)
    label = tf.identity(label)
  return image, label, filename, where


def decode_example(record):
  """Parses and decodes one record eagerly, as the input reader does.

  For tools that read on past a bad record (inspect), where the reader's
  in-graph checks would stop at the first one.

  Returns:
    (dict of the parsed keys -> bytes, b"" when absent; image uint8 numpy
    [H, W, 3]; label uint8 numpy [H', W', 1]).

  Raises:
    ValueError: a required key is missing.
    tf.errors.OpError: the record does not parse, or image or label does not
      decode.
  """
  parsed = tf.io.parse_single_example(record, _REPORT_FEATURES)
  fields = {key: value.numpy() for key, value in parsed.items()}
  for key in REQUIRED_KEYS:
    if not fields[key]:
      raise ValueError(f"record has no {key}")
  image = decode_image(fields[_FIELDS.image_encoded]).numpy()
  label = decode_label(fields[_FIELDS.label_encoded]).numpy()
  return fields, image, label


def filename_of(record):
  """image/filename of a record, even one that does not decode.

  Returns:
    The name, or UNNAMED_IMAGE when the record has none or does not parse.
  """
  try:
    name = tf.io.parse_single_example(
        record, _REPORT_FEATURES)[_FIELDS.image_filename]
    return name.numpy().decode("utf-8", "replace") or UNNAMED_IMAGE
  except tf.errors.OpError:
    return UNNAMED_IMAGE


def _first_line(text):
  return str(text).strip().splitlines()[0] if str(text).strip() else "no detail"


def record_problem(serialized):
  """What is wrong with one serialized record, or None.

  Checks what breaks an input pipeline with a bare TensorFlow error: a
  record that is no tf.train.Example, a missing image or label, an image or
  label PNG that does not decode.

  Args:
    serialized: the record's bytes.

  Returns:
    A message naming the image (when the record names it), or None.
  """
  try:
    example = tf.train.Example.FromString(serialized)
  except Exception:  # protobuf's DecodeError, or a runtime-specific one
    return "not a tf.train.Example (is this a TFRecord of another kind?)"
  features = example.features.feature
  name = features[_FIELDS.image_filename].bytes_list.value
  name = f" (image {name[0].decode('utf-8', 'replace')})" if name else ""
  for key in REQUIRED_KEYS:
    if not features[key].bytes_list.value:
      return f"no {key}{name}"
  try:
    decode_image(features[_FIELDS.image_encoded].bytes_list.value[0])
  except tf.errors.OpError as e:
    return f"the image cannot be decoded{name}: {_first_line(e.message)}"
  try:
    decode_label(features[_FIELDS.label_encoded].bytes_list.value[0])
  except tf.errors.OpError as e:
    return f"the label PNG cannot be decoded{name}: {_first_line(e.message)}"
  return None


def find_input_problem(patterns, field):
  """Scans the TFRecords of `patterns` for what broke an input pipeline.

  Called after the pipeline failed with a bare TensorFlow error ("corrupted
  record", "End of sequence", "jpeg::Uncompress failed"), which names neither
  the file nor the image; reads every record once, decoding image and label.

  Returns:
    A message naming the shard (and record and image) of the first problem,
    or saying the input holds no record; None when nothing is wrong.
  """
  paths = expand_input_paths(patterns, field)
  total = 0
  for path in paths:
    index = 0
    try:
      for record in tf.data.TFRecordDataset(path):
        problem = record_problem(record.numpy())
        if problem:
          return f"{field}: {path}, record {index}: {problem}"
        index += 1
    except tf.errors.DataLossError as e:
      return (f"{field}: {path} is a damaged TFRecord file ("
              f"{_first_line(e.message)} after {index} good records); "
              "convert it again")
    total += index
  if not total:
    return (f"{field}: the input is empty: {', '.join(patterns)} matched "
            f"{len(paths)} file(s) holding no record")
  return None
