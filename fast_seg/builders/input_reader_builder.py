"""Builds the tf.data input pipeline from an `InputReader` proto.

Reads TFRecords of tf.train.Example with the DeepLab keys, decodes and checks
every example with data/tf_example, the one home of the record schema (missing
keys, label size, label values, with messages that name the TFRecord file and
the image), applies the configured augmentations and batches.

With `cache` the decoded examples (uint8, before any augmentation) are kept in
memory after the first pass, so later epochs skip reading and decoding while
augmentation stays random per epoch.

Multi-worker training: the dataset is built whole on every worker and
tf.distribute shards it with tf.data's AUTO policy: by file when there are at
least as many files as workers (each worker reads only its own files; every
example once per epoch, no wasted decoding), otherwise by element (every
worker reads everything and keeps its share). With file sharding a global
batch is made of per-worker slices from different files, so it holds the same
examples as a single-worker batch only when the files are equally long and
all read at once (num_parallel_reads >= number of files, no shuffle); a run
whose order matters should use that layout.
"""

import tensorflow as tf

from fast_seg.builders import preprocessor_builder
from fast_seg.core import preprocessor
from fast_seg.core import standard_fields
from fast_seg.data import tf_example
from fast_seg.protos import input_reader_pb2
from fast_seg.protos import preprocessor_pb2
from fast_seg.utils import config_util
from fast_seg.utils import memory

_IN = standard_fields.InputFields


def _check_positive(value, field):
  if value < 1:
    raise ValueError(f"{field} must be >= 1, got {value}")


def build(input_reader_config, *, is_training, batch_size, num_classes,
          ignore_label, augmentations=(), padded_size=None,
          field_name="train_input_reader"):
  """Builds a batched tf.data.Dataset of segmentation examples.

  Training interleaves the files, shuffles (if `shuffle`), repeats forever,
  augments and drops the last partial batch (static shapes); `cache` keeps
  the decoded examples and reshuffles after it. Evaluation makes one pass
  in file order; with `padded_size` examples are padded (labels with the
  ignore label) and batched, otherwise the batch size must be 1.

  Args:
    input_reader_config: input_reader_pb2.InputReader.
    is_training: training or evaluation pipeline.
    batch_size: train_config.batch_size, or the reader's batch_size in eval.
    num_classes: label values must be < num_classes or the ignore label.
    ignore_label: label value excluded from losses and metrics; used to pad.
    augmentations: preprocessor_pb2.PreprocessingStep protos, in order.
    padded_size: (height, width) for padded evaluation, or None.
    field_name: config field of `input_reader_config`, for messages.

  Returns:
    tf.data.Dataset of dicts: InputFields.image float32 [N, H, W, 3] in
    0..255, label int32 [N, H, W, 1], filename string [N], original_size
    int32 [N, 2] (as decoded, before augmentation and padding).

  Raises:
    TypeError: an augmentation that is not a PreprocessingStep proto.
    ValueError: wrong proto type, no input files, an out-of-range setting
      or sizes that cannot batch. A bad record raises
      tf.errors.InvalidArgumentError while iterating, naming file and image.
  """
  config = input_reader_config
  augmentations = list(augmentations)
  padded_size = check_settings(
      config, is_training=is_training, batch_size=batch_size,
      num_classes=num_classes, augmentations=augmentations,
      padded_size=padded_size, field_name=field_name)
  paths = tf_example.expand_input_paths(
      config.tf_record_input_path, f"{field_name}.tf_record_input_path")
  augment = preprocessor_builder.build_sequence(augmentations, ignore_label)
  shuffle = is_training and config.shuffle
  records = _read_records(paths, config, is_training, shuffle)

  def decode(record, path):
    return tf_example.decode_checked(record, path, num_classes, ignore_label)

  to_example = _example_function(augment, is_training, padded_size,
                                 ignore_label)
  dataset = _decode_and_augment(records, decode, to_example, config,
                                is_training, shuffle)
  return _batch(dataset, batch_size, is_training, shuffle)


def check_settings(input_reader_config, *, is_training, batch_size,
                   num_classes, augmentations=(), padded_size=None,
                   field_name="train_input_reader"):
  """Every check of `build` that needs no file: the settings and batching.

  The pipeline check (training/pipeline_check.py) runs it when a command
  starts, so a reader that cannot batch fails before a model is built;
  `build` runs it again for callers that build a reader directly.

  Returns:
    padded_size as a tuple of ints, or None.

  Raises:
    TypeError: an augmentation that is not a PreprocessingStep proto.
    ValueError: wrong proto type, no input pattern, an out-of-range setting
      or sizes that cannot batch, naming the field.
  """
  config_util.check_type(
      input_reader_config, input_reader_pb2.InputReader, field_name)
  augmentations = _check_augmentation_protos(augmentations)
  _check_reader_settings(input_reader_config, num_classes, field_name)
  if is_training:
    _check_training_batch(input_reader_config, batch_size, augmentations,
                          padded_size, field_name)
    return None
  return _check_eval_batch(batch_size, augmentations, padded_size, field_name)


def _batch(dataset, batch_size, is_training, shuffle):
  dataset = dataset.batch(batch_size, drop_remainder=is_training)
  dataset = dataset.prefetch(tf.data.AUTOTUNE)
  if shuffle:
    # Order is random anyway: let tf.data hand out whichever element is ready.
    options = tf.data.Options()
    options.deterministic = False
    dataset = dataset.with_options(options)
  return dataset


def _check_augmentation_protos(augmentations):
  """Protos, not built callables: the reader needs them to know whether
  every example ends up with one size (required to batch)."""
  augmentations = list(augmentations)
  for step in augmentations:
    if not isinstance(step, preprocessor_pb2.PreprocessingStep):
      raise TypeError(
          "augmentations must be PreprocessingStep protos (e.g. "
          "train_config.data_augmentation_options), got "
          f"{type(step).__name__}")
  return augmentations


def _check_reader_settings(config, num_classes, field_name):
  _check_positive(num_classes, "num_classes")
  _check_positive(config.num_parallel_reads, f"{field_name}.num_parallel_reads")
  if config.num_parallel_calls < 0:
    raise ValueError(
        f"{field_name}.num_parallel_calls must be >= 0 (0: AUTOTUNE), got "
        f"{config.num_parallel_calls}")


def _check_training_batch(config, batch_size, augmentations, padded_size,
                          field_name):
  """Training batches need one example size, made by the augmentations."""
  _check_positive(batch_size, "train_config.batch_size")
  if config.shuffle:
    _check_positive(config.shuffle_buffer_size,
                    f"{field_name}.shuffle_buffer_size")
  if padded_size is not None:
    raise ValueError("padded_size is for evaluation; training batches get "
                     "their size from random_crop or fixed_resize")
  if batch_size > 1 and not preprocessor_builder.ends_with_fixed_size(
      augmentations):
    raise ValueError(
        f"train_config.batch_size is {batch_size} but the examples do not "
        "all have one size: add a random_crop or fixed_resize step to "
        "train_config.data_augmentation_options (after any random_scale), "
        "or use batch_size 1")
  size, source = preprocessor_builder.fixed_size_and_source(augmentations)
  if size is not None:
    memory.check_batch_fits(batch_size, size,
                            f"train_config.batch_size x {source}")


def _check_eval_batch(batch_size, augmentations, padded_size, field_name):
  """Eval batches need padding or a fixed size; returns padded_size as ints."""
  _check_positive(batch_size, f"{field_name}.batch_size")
  if (padded_size is None and batch_size != 1
      and not preprocessor_builder.ends_with_fixed_size(augmentations)):
    raise ValueError(
        f"{field_name}.batch_size is {batch_size}, but whole-image "
        "evaluation needs 1 (images differ in size); set "
        "eval_config.padded_height/padded_width to batch padded images, or "
        "resize them to one size with eval_config.preprocessing")
  if padded_size is None:
    size, source = preprocessor_builder.fixed_size_and_source(
        augmentations, "eval_config.preprocessing")
    if size is not None:
      memory.check_batch_fits(batch_size, size,
                              f"{field_name}.batch_size x {source}")
    return None
  padded_size = tuple(int(v) for v in padded_size)
  if len(padded_size) != 2 or min(padded_size) < 1:
    raise ValueError(
        "eval_config.padded_height/padded_width must both be >= 1, got "
        f"{padded_size}")
  memory.check_batch_fits(
      batch_size, padded_size,
      f"{field_name}.batch_size x eval_config.padded_height/padded_width")
  return padded_size


def _read_records(paths, config, is_training, shuffle):
  """(serialized record, file name) pairs: interleaved for training, else
  one pass in file order."""

  def read_file(path):
    # Each record travels with its file name, for error messages.
    return tf.data.TFRecordDataset(path).map(lambda record: (record, path))

  files = tf.data.Dataset.from_tensor_slices(paths)
  if not is_training:
    return files.flat_map(read_file)
  if shuffle:
    files = files.shuffle(len(paths), reshuffle_each_iteration=True)
  return files.interleave(
      read_file, cycle_length=min(config.num_parallel_reads, len(paths)),
      num_parallel_calls=tf.data.AUTOTUNE, deterministic=not shuffle)


def _decode_and_augment(records, decode, to_example, config, is_training,
                        shuffle):
  """Examples from records; with `cache`, decoded once and augmented per epoch."""
  num_parallel_calls = config.num_parallel_calls or tf.data.AUTOTUNE
  if config.cache:
    # Decoded once: the cache sits before shuffle / repeat (a cache after an
    # endless repeat would never complete) and before augmentation.
    decoded = records.map(decode, num_parallel_calls=num_parallel_calls,
                          deterministic=not shuffle).cache()
    if is_training:
      decoded = _shuffle_and_repeat(decoded, config, shuffle)
    return decoded.map(to_example, num_parallel_calls=num_parallel_calls,
                       deterministic=not shuffle)
  if is_training:
    records = _shuffle_and_repeat(records, config, shuffle)
  return records.map(lambda record, path: to_example(*decode(record, path)),
                     num_parallel_calls=num_parallel_calls,
                     deterministic=not shuffle)


def _shuffle_and_repeat(elements, config, shuffle):
  if shuffle:
    elements = elements.shuffle(
        config.shuffle_buffer_size, reshuffle_each_iteration=True)
  return elements.repeat()


def _example_function(augment, is_training, padded_size, ignore_label):
  """decoded (image, label, filename, where) -> the example dict."""

  def to_example(image, label, filename, where):
    image = tf.cast(image, tf.float32)
    label = tf.cast(label, tf.int32)
    original_size = tf.shape(image)[:2]
    image, label = augment(image, label)
    if not is_training:
      # Eval preprocessing is deterministic: the size it gives is what the
      # metrics and overlays crop back to from the padding.
      original_size = tf.shape(image)[:2]
    if padded_size is not None:
      image, label = _pad_checked(image, label, original_size, where,
                                  padded_size, ignore_label)
    return {
        _IN.image: image,
        _IN.label: label,
        _IN.filename: filename,
        _IN.original_size: original_size,
    }

  return to_example


def _pad_checked(image, label, size, where, padded_size, ignore_label):
  """Pads to `padded_size`; an image larger than it fails, naming the image."""
  height, width = padded_size
  fits = tf_example.assert_with_message(
      tf.reduce_all(size <= tf.constant([height, width])), where,
      " is ", tf_example.size_text(size), f" (HxW), larger than the padded "
      f"size {height}x{width}; raise eval_config.padded_height/"
      "padded_width")
  with tf.control_dependencies([fits]):
    image = tf.identity(image)
  return preprocessor.pad_to_size(image, label, height, width, ignore_label)
