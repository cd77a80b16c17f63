"""dataset_info.json: the class table and statistics written beside TFRecords.

Converters and the synthetic dataset write it; training and eval check the
model's num_classes / ignore_label against it and take class names and
colours from it; prediction overlays and class weighting read it too. Plain
JSON with the keys of `standard_fields.DatasetInfoFields`.
"""

import glob
import json
import os

import numpy as np

from fast_seg.core import standard_fields

_INFO = standard_fields.DatasetInfoFields

REQUIRED_KEYS = (_INFO.num_classes, _INFO.ignore_label, _INFO.class_names,
                 _INFO.palette)


def write(output_dir, info):
  """Writes `info` as output_dir/dataset_info.json (atomically); returns the path."""
  validate(info, "dataset_info")
  path = os.path.join(output_dir, _INFO.file_name)
  partial = path + ".partial"
  with open(partial, "w", encoding="utf-8") as f:
    f.write(json.dumps(info, indent=2) + "\n")
  os.replace(partial, path)
  return path


def validate(info, source):
  """Raises ValueError naming `source` unless `info` has a usable class table."""
  missing = [key for key in REQUIRED_KEYS if key not in info]
  if missing:
    raise ValueError(f"{source}: missing keys {missing}")
  num_classes = info[_INFO.num_classes]
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"{source}: num_classes must be a positive int, got "
                     f"{num_classes!r}")
  for key in (_INFO.class_names, _INFO.palette):
    if len(info[key]) != num_classes:
      raise ValueError(f"{source}: {key} has {len(info[key])} entries; "
                       f"num_classes is {num_classes}")
  if any(len(color) != 3 or not all(0 <= c <= 255 for c in color)
         for color in info[_INFO.palette]):
    raise ValueError(f"{source}: palette entries must be [r, g, b] in 0..255")


def load(path):
  """Reads and validates a dataset_info.json file (or the one in a directory)."""
  if os.path.isdir(path):
    path = os.path.join(path, _INFO.file_name)
  try:
    with open(path, encoding="utf-8") as f:
      info = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f"no dataset info file: {path}") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"{path}: not valid JSON ({e})") from None
  validate(info, path)
  return info


def find(file_pattern):
  """The dataset_info.json beside a TFRecord glob, or None.

  `file_pattern` is an input reader's `tf_record_input_path` (a glob, or
  several joined by commas); the info file is looked for in the directory of
  the first one.
  """
  first = file_pattern.split(",")[0].strip()
  if not first:
    return None
  path = os.path.join(os.path.dirname(first), _INFO.file_name)
  return path if os.path.isfile(path) else None


def _splits_read_by(info, file_patterns):
  """The splits an input reader's globs read, or None when a glob is not
  exactly one split's file pattern (a custom glob: unknown)."""
  by_pattern = {pattern: split for split, pattern in
                info.get(_INFO.file_patterns, {}).items()}
  splits = [by_pattern.get(os.path.basename(p)) for p in file_patterns]
  return None if None in splits else splits


def num_examples_for(info, file_patterns):
  """The number of examples the globs read, from the info's split counts.

  Args:
    info: a loaded dataset info dict.
    file_patterns: an input reader's globs (a list of strings).

  Returns:
    The count, or None when a glob is not exactly one split's pattern.
  """
  splits = _splits_read_by(info, file_patterns)
  counts = info.get(_INFO.num_examples, {})
  if splits is None or any(split not in counts for split in splits):
    return None
  return sum(counts[split] for split in splits)


def largest_image_size(info, file_patterns):
  """(height, width), each the largest among the images the globs read.

  From the image_sizes the converter counted, so a size limit (the padded
  eval size) can be checked before any record is read.

  Returns:
    The pair, or None when a glob is not exactly one split's pattern or the
    info has no image sizes (converted by an older fast_seg).
  """
  splits = _splits_read_by(info, file_patterns)
  sizes = info.get(_INFO.image_sizes, {})
  if splits is None or any(split not in sizes for split in splits):
    return None
  pairs = [tuple(int(v) for v in size.split("x"))
           for split in splits for size in sizes[split]]
  if not pairs:
    return None
  return max(h for h, _ in pairs), max(w for _, w in pairs)


def split_glob(file_patterns, split, flag="--split"):
  """The glob of `split` of the converted dataset the reader's globs are from.

  Args:
    file_patterns: an input reader's globs; the dataset_info.json beside the
      first one names the splits and their file patterns.
    split: a split name, e.g. 'test'.
    flag: named in errors.

  Raises:
    ValueError: no dataset_info.json beside the globs, or an unknown split
      (the message lists the dataset's splits).
  """
  first = ",".join(file_patterns)
  path = find(first)
  if path is None:
    raise ValueError(f"{flag} {split} needs the dataset_info.json that "
                     f"fast_seg.data.convert writes beside the TFRecords; "
                     f"none beside {first or 'the (empty) input glob'}; give "
                     f"--input_pattern instead")
  patterns = load(path).get(_INFO.file_patterns, {})
  if split not in patterns:
    raise ValueError(f"{flag} {split} is not a split of {path}; its splits: "
                     f"{', '.join(sorted(patterns)) or 'none listed'}")
  return os.path.join(os.path.dirname(path), patterns[split])


def override_globs(reader, reader_field, input_pattern=None, split=None):
  """Applies --input_pattern / --split to an input reader, in place.

  Returns:
    Lines for the user: the reader's resolved globs with their counts.

  Raises:
    ValueError: both given, or a split the dataset does not have.
  """
  if input_pattern and split:
    raise ValueError("give --input_pattern or --split, not both")
  if input_pattern:
    reader.tf_record_input_path[:] = list(input_pattern)
  elif split:
    reader.tf_record_input_path[:] = [
        split_glob(list(reader.tf_record_input_path), split)]
  return [f"{reader_field} reads:"] + describe_globs(
      list(reader.tf_record_input_path))


def describe_globs(file_patterns):
  """One line per glob: how many files it matches (and how many of them are
  empty), and the examples dataset_info.json counts for them if known."""
  lines = []
  for pattern in file_patterns:
    files = glob.glob(pattern)
    line = f"  {pattern}: {len(files)} file{'s' if len(files) != 1 else ''}"
    empty = sum(os.path.getsize(path) == 0 for path in files)
    if empty:
      line += f" ({empty} of them empty)"
    path = find(pattern)
    examples = num_examples_for(load(path), [pattern]) if path else None
    if examples is not None:
      line += f", {examples} examples"
    lines.append(line)
  return lines


def _splits_for(info, file_patterns):
  """The split names whose file patterns the globs are, or None."""
  by_pattern = {pattern: split for split, pattern in
                info.get(_INFO.file_patterns, {}).items()}
  splits = [by_pattern.get(os.path.basename(p)) for p in file_patterns]
  return None if None in splits or not splits else splits


def class_frequencies_for(info, file_patterns, source="dataset_info.json"):
  """Per-class pixel fractions of the splits the globs read.

  Several splits are combined weighted by their example counts.

  Args:
    info: a loaded dataset info dict.
    file_patterns: an input reader's globs.
    source: the info file's path, for messages.

  Returns:
    list of floats, one per class id.

  Raises:
    ValueError: a glob is not one split's pattern, or the info has no
      class_pixel_frequency for it.
  """
  splits = _splits_for(info, file_patterns)
  frequencies = info.get(_INFO.class_pixel_frequency, {})
  if splits is None or any(s not in frequencies for s in splits):
    known = ", ".join(f"{s}: {p}" for s, p in
                      info.get(_INFO.file_patterns, {}).items()) or "none"
    raise ValueError(
        f"{source} has no class_pixel_frequency for {list(file_patterns)}; "
        f"the globs must be one of its splits' patterns ({known})")
  counts = info.get(_INFO.num_examples, {})
  weights = [max(counts.get(s, 1), 1) for s in splits]
  total = np.zeros(info[_INFO.num_classes], np.float64)
  for split, weight in zip(splits, weights):
    total += weight * np.asarray(frequencies[split], np.float64)
  return list(total / sum(weights))


def palette(info):
  """The palette as a [num_classes, 3] uint8 array."""
  return np.asarray(info[_INFO.palette], np.uint8).reshape(-1, 3)


def check_model(info, num_classes, ignore_label, source, field_prefix):
  """Raises ValueError when a model config disagrees with the dataset.

  Args:
    info: a loaded dataset info dict.
    num_classes: the model's num_classes.
    ignore_label: the model's ignore_label.
    source: where `info` came from, for the message.
    field_prefix: the config field path of the model, e.g. 'model.icnet'.
  """
  if info[_INFO.num_classes] != num_classes:
    raise ValueError(
        f"{field_prefix}.num_classes is {num_classes} but {source} describes "
        f"{info[_INFO.num_classes]} classes ({_short_names(info)})")
  if info[_INFO.ignore_label] != ignore_label:
    raise ValueError(
        f"{field_prefix}.ignore_label is {ignore_label} but {source} uses "
        f"{info[_INFO.ignore_label]}")


def _short_names(info, limit=6):
  names = list(info[_INFO.class_names])
  text = ", ".join(names[:limit])
  return text + (", ..." if len(names) > limit else "")


def _check_files(pattern, field):
  """Refuses a glob that matches no file, or a 0-byte file among its files.

  A 0-byte TFRecord file reads as a valid, empty one: the run would go on
  without its records, and with the example count of dataset_info.json
  (which counts them), so its epochs would be wrong. The converters never
  write one (they drop empty shards); it is a copy or download that did not
  finish.
  """
  files = glob.glob(pattern)
  if not files:
    raise ValueError(f"{field}: glob '{pattern}' matches no file")
  empty = sorted(path for path in files if os.path.getsize(path) == 0)
  if empty:
    more = f" (and {len(empty) - 1} more)" if len(empty) > 1 else ""
    raise ValueError(
        f"{field}: {empty[0]}{more} is empty (0 bytes, no record) among the "
        f"{len(files)} files of '{pattern}'; copy or convert it again, or "
        "remove it")


def splits_without_labels(info, file_patterns):
  """The splits the globs read that hold images but no labelled pixel.

  Every label pixel of such a split is the ignore label (the converter's
  count: all of its class_pixel_frequency is 0): Cityscapes' test split,
  or a colour map / label folder that matched nothing. Training on it runs
  on a zero loss.

  Returns:
    The split names, [] when the globs are not exactly splits' patterns.
  """
  splits = _splits_for(info, file_patterns) or []
  counts = info.get(_INFO.num_examples, {})
  frequencies = info.get(_INFO.class_pixel_frequency, {})
  return [split for split in splits
          if counts.get(split) and split in frequencies
          and not any(frequencies[split])]


def load_for_reader(reader_config, model_config, field_name="input reader"):
  """The dataset_info.json beside an input reader's TFRecords, checked.

  Args:
    reader_config: an InputReader proto (its tf_record_input_path globs).
    model_config: the pipeline's Model proto.
    field_name: where reader_config sits in the pipeline, for messages.

  Returns:
    (path, info), or (None, None) when there is no info file.

  Raises:
    ValueError: no model is configured, a glob matches no file or a 0-byte
      file (said first, before anything that reads the data), or the
      model's num_classes or ignore_label disagree with the info.
  """
  meta_architecture = model_config.WhichOneof("model")
  if meta_architecture is None:
    choices = model_config.DESCRIPTOR.oneofs_by_name["model"].fields
    raise ValueError("model: no architecture is set; add one of "
                     f"{', '.join(f.name for f in choices)} (see configs/)")
  for pattern in reader_config.tf_record_input_path:
    # Local files only (the info file is looked for locally too).
    if "://" not in pattern:
      _check_files(pattern, f"{field_name}.tf_record_input_path")
  path = find(",".join(reader_config.tf_record_input_path))
  if path is None:
    return None, None
  info = load(path)
  arch = getattr(model_config, meta_architecture)
  check_model(info, arch.num_classes, arch.ignore_label, path,
              f"model.{meta_architecture}")
  return path, info
