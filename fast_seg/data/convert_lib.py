"""What every dataset converter shares: reading, checking and encoding a pair.

A converter (one module per dataset in `fast_seg/data/converters/`) only says
where its pairs are and how its label files map to contiguous class ids; this
module decodes and validates each pair and `convert.py` writes the shards.

The per-pair work (`encode_pair`) runs in worker processes and uses only
numpy and PIL, so it forks cheaply and never touches TensorFlow.
"""

import collections
import dataclasses
import difflib
import io
import os
import sys

import numpy as np
from PIL import Image

from fast_seg.core import registry
from fast_seg.core import standard_fields as fields
from fast_seg.utils import image_files

# Formats whose bytes go into the TFRecord unchanged (tf.io.decode_image reads
# them); anything else is re-encoded as PNG.
_PASSTHROUGH_FORMATS = {"PNG": "png", "JPEG": "jpeg"}


class LayoutError(FileNotFoundError):
  """A folder or list file the dataset's layout needs is not there.

  convert.py adds the folder tree the converter reads as the error's `hint`
  (printed under the error line), so the user sees what was expected.
  """
  hint = None


class ConversionError(ValueError):
  """A problem with one input file; the message starts with the file's path.

  `hint` is what to do when it is not "skip the bad file": a setting that
  every file of the dataset fails without. The CLI prints it under the
  error line, as a LayoutError's.
  """

  def __init__(self, path, message, hint=None):
    super().__init__(f"{path}: {message}")
    self.path = path
    self.problem = message
    self.hint = hint


@dataclasses.dataclass(frozen=True)
class Sample:
  """One image and its label file.

  Attributes:
    name: stored as `image/filename`; unique within a split.
    image_path: the image file.
    label_path: the label file.
  """
  name: str
  image_path: str
  label_path: str


@dataclasses.dataclass
class EncodedPair:
  """A checked pair, ready to become a tf.train.Example."""
  name: str
  image_bytes: bytes
  image_format: str
  label_png: bytes
  height: int
  width: int
  class_pixels: np.ndarray  # int64 [num_classes + 1], the last is ignore
  note: str = ""  # e.g. "converted RGBA to RGB"


@dataclasses.dataclass
class Filtered:
  """A valid pair that the converter's filter left out (not an error)."""
  name: str
  reason: str


@dataclasses.dataclass
class Problem:
  """A pair that could not be converted, with the file and the reason.

  `hint` is the ConversionError's: the fix when skipping is not one.
  """
  path: str
  message: str
  hint: str = ""

  def __str__(self):
    return f"{self.path}: {self.message}"


class Flag(collections.namedtuple(
    "Flag", ["kind", "name", "default", "help", "choices"],
    defaults=(None,))):
  """A command-line flag of fast_seg.data.convert that a converter reads.

  kind: 'string', 'bool', 'integer', 'float', 'list' or 'enum' (with
  `choices`), as absl.flags.DEFINE_<kind>. Converters that share a flag
  must declare it alike; its help lists every converter that reads it.
  """
  __slots__ = ()


INPUT_DIR = Flag("string", "input_dir", None,
                 "Root of the dataset in its official layout.")
IMAGES_DIR = Flag("string", "images_dir", None, "The images.")
LABELS_DIR = Flag("string", "labels_dir", None, "The labels (masks).")

# --dataset name -> Converter subclass, filled by @register as converter
# modules load.
CONVERTERS = registry.Registry("--dataset")


def register(cls):
  """Class decorator: makes `cls` a --dataset choice, with its own flags.

  Nothing central to edit: fast_seg.data.converters imports every module of
  its package, and a converter defined anywhere else registers the same way
  (then build it with its class or convert.make_converter).

  Raises:
    ValueError: no name, a name taken by another class, or a flag declared
      differently from another converter's flag of the same name.
  """
  if not cls.name:
    raise ValueError(f"{cls.__name__}.name is empty")
  if cls.name in CONVERTERS and CONVERTERS.get(cls.name) is not cls:
    raise ValueError(f"--dataset {cls.name} is registered twice "
                     f"({CONVERTERS.get(cls.name).__name__}, {cls.__name__})")
  declared = {f.name: f for _, c in CONVERTERS.items()
              for f in c.flags + c.info_flags}
  for flag in cls.flags + cls.info_flags:
    other = declared.get(flag.name)
    if other is not None and other[:3] + other[4:] != flag[:3] + flag[4:]:
      raise ValueError(f"{cls.__name__} declares --{flag.name} unlike "
                       f"another converter: {flag} vs {other}")
  cls.flag_names = tuple(f.name for f in cls.flags)
  CONVERTERS.add(cls.name, cls)
  return cls


class Converter:
  """Base class: subclasses list their pairs and map label files to ids.

  Subclasses set `name`, `splits` (the labelled splits of the official
  layout), `class_names`, `palette` and `ignore_label`, implement
  `list_pairs` and `read_label`, and register with @register. Their
  constructor's keyword arguments are the CLI flags declared in `flags`
  (`flag_names` lists their names); `info_flags` are flags that print
  information instead of converting (see `info_text`).
  """
  name = None
  splits = ()
  ignore_label = fields.IGNORE_LABEL
  flags = ()
  flag_names = ()
  info_flags = ()
  description = ""

  @classmethod
  def info_text(cls, flag_values):  # pylint: disable=useless-return
    """Text to print instead of converting (an info flag was given), or None."""
    del flag_values
    return None

  # A fixed class table (names, RGB colours in id order); converters whose
  # classes depend on their options override the two properties instead.
  fixed_class_names = ()
  fixed_palette = ()

  @classmethod
  def layout(cls):
    """The folder trees it reads: the blocks indented by 4 spaces in its
    module's docstring, where a reader of the code sees them too."""
    doc = sys.modules[cls.__module__].__doc__ or ""
    blocks, block = [], []
    for line in doc.splitlines() + [""]:
      if line.startswith("    "):
        block.append(line.rstrip())
      elif block:
        blocks.append("\n".join(block))
        block = []
    return "\n  or\n".join(blocks)

  @property
  def class_names(self):
    return list(self.fixed_class_names)

  @property
  def palette(self):
    return [list(color) for color in self.fixed_palette]

  @property
  def num_classes(self):
    return len(self.class_names)

  def list_pairs(self, split):
    """Returns (samples, problems) for `split`; unpaired files are problems."""
    raise NotImplementedError

  def read_label(self, sample, image_size):
    """Returns the label of `sample` as a uint8 [H, W] array of output ids.

    Args:
      sample: the Sample.
      image_size: (height, width) of the image, for converters that need it.

    Raises:
      ConversionError: the label cannot be read or has values the dataset
        does not define.
    """
    raise NotImplementedError

  def source_text(self, split):
    """Where `split`'s images were looked for, as the flags that name the
    folders ('--images_dir photos'), for the message when there are none."""
    del split  # the folder converter's list files are per split
    # A dataset's root may be the archive's folder inside --input_dir.
    given = (("--images_dir", getattr(self, "images_dir", None)),
             ("--input_dir", getattr(self, "root", None)))
    return (", ".join(f"{flag} {path}" for flag, path in given if path)
            or "its input folders")

  def filter_reason(self, label):  # pylint: disable=useless-return
    """Why a valid pair is left out (e.g. too few whitelisted classes), or None."""
    del label
    return None

  def extra_info(self):
    """Converter-specific entries for dataset_info.json (e.g. a label map)."""
    return {}


# ----------------------------------------------------------------------------
# Listing and pairing files.


def require_dir(path, flag):
  """Returns `path` if it is a directory, else raises naming the flag."""
  if not path:
    raise ValueError(f"{flag} is required")
  if not os.path.isdir(path):
    raise LayoutError(f"{flag} is not a directory: {path}")
  return path


def find_root(input_dir, marker, flag="--input_dir"):
  """The dataset root: `input_dir` or its child `marker` (official archive name).

  Users point at either the unpacked archive's folder or its parent.
  """
  require_dir(input_dir, flag)
  nested = os.path.join(input_dir, marker)
  return nested if os.path.isdir(nested) else input_dir


def list_files(directory, extensions=image_files.IMAGE_EXTENSIONS, recursive=False):
  """Sorted paths of files with one of `extensions` under `directory`."""
  if not os.path.isdir(directory):
    raise LayoutError(f"missing directory: {directory}")
  paths = []
  if recursive:
    for root, _, names in os.walk(directory):
      paths.extend(os.path.join(root, n) for n in names
                   if n.lower().endswith(extensions))
  else:
    paths = [os.path.join(directory, n) for n in os.listdir(directory)
             if n.lower().endswith(extensions)]
  return sorted(paths)


def pair_by_key(images, labels, image_key, label_key, expected_label=None):
  """Pairs image and label paths whose keys are equal.

  Args:
    images: image paths.
    labels: label paths.
    image_key: function path -> key (e.g. the basename without the suffix).
    label_key: function path -> key, or None for files that are not labels of
      this kind (they are ignored, not reported).
    expected_label: function image path -> the label path expected, used in
      the message for an image without a label.

  Returns:
    (samples sorted by key, problems): an image without a label, or a label
    without an image, or two files with one key, is a Problem.
  """
  problems = []
  by_key = {}
  for path in labels:
    key = label_key(path)
    if key is None:
      continue
    if key in by_key:
      problems.append(Problem(path, f"second label for '{key}' (first: "
                              f"{by_key[key]})"))
      continue
    by_key[key] = path
  samples = []
  seen = {}
  for path in images:
    key = image_key(path)
    if key in seen:
      problems.append(Problem(path, f"second image for '{key}' (first: "
                              f"{seen[key]})"))
      continue
    seen[key] = path
    label = by_key.pop(key, None)
    if label is None:
      expected = f" (expected {expected_label(path)})" if expected_label else ""
      problems.append(Problem(path, f"no label file{expected}"))
      continue
    samples.append(Sample(key, path, label))
  for key, path in sorted(by_key.items()):
    problems.append(Problem(path, f"label without an image (key '{key}')"))
  samples.sort(key=lambda s: s.name)
  return samples, problems


def strip_suffix(path, suffixes):
  """Basename of `path` without its extension and the first matching suffix."""
  stem = os.path.splitext(os.path.basename(path))[0]
  for suffix in suffixes:
    if suffix and stem.endswith(suffix):
      return stem[:-len(suffix)]
  return stem


def read_list(path):
  """Non-empty stripped lines of a split list file."""
  if not os.path.isfile(path):
    raise LayoutError(f"missing split list: {path}")
  with open(path, encoding="utf-8") as f:
    return [line.strip() for line in f if line.strip()]


def _listed_name(line):
  """A split list line's name: the first token (a name, a relative path or
  SegNet's '<image> <label>' pair), as a '/' path without extension."""
  return os.path.splitext(line.split()[0].replace("\\", "/"))[0].strip("/")


def keep_listed(samples, problems, list_path):
  """(samples, problems) restricted to the ones a split list names.

  mmseg's ann_file and the SegNet tutorial's lists name a split's images by
  name, relative path or full path. A line matches the sample whose name is
  its longest trailing part ('data/images/sub/a.png' matches 'sub/a' and
  'a'). A listed name with no sample is a problem, so a typo in a list is
  reported, not lost; problems of files the list does not name are dropped.
  """
  by_name = {sample.name: sample for sample in samples}
  stem = lambda path: os.path.splitext(os.path.basename(path))[0]
  listed = [_listed_name(line).split("/") for line in read_list(list_path)]
  problems = [p for p in problems if stem(p.path) in {n[-1] for n in listed}]
  reported = {stem(p.path) for p in problems}
  kept = {}
  for parts in listed:
    name = next(("/".join(parts[i:]) for i in range(len(parts))
                 if "/".join(parts[i:]) in by_name), None)
    if name is not None:
      kept[name] = by_name[name]
    elif parts[-1] not in reported:  # e.g. a typo: no file problem names it
      problems.append(Problem(list_path, f"lists '{'/'.join(parts)}' but no "
                              "image with a label has that name"))
  return sorted(kept.values(), key=lambda s: s.name), problems


def split_by_fraction(samples, val_fraction, seed):
  """Deterministically moves round(n * val_fraction) samples into val.

  Returns:
    (train samples, val samples), each sorted by name.
  """
  if not 0.0 <= val_fraction < 1.0:
    raise ValueError(f"--val_fraction must be in [0, 1), got {val_fraction}")
  order = np.random.default_rng(seed).permutation(len(samples))
  num_val = int(round(len(samples) * val_fraction))
  val = sorted((samples[i] for i in order[:num_val]), key=lambda s: s.name)
  train = sorted((samples[i] for i in order[num_val:]), key=lambda s: s.name)
  return train, val


def closest_names(name, candidates, limit=3):
  """Up to `limit` candidates that look like `name`, for error messages."""
  return difflib.get_close_matches(name, candidates, n=limit, cutoff=0.5)


# ----------------------------------------------------------------------------
# Reading and checking pixels.


def _open(path, what):
  """Reads and fully decodes an image file, or raises ConversionError."""
  try:
    with open(path, "rb") as f:
      data = f.read()
  except OSError as e:
    raise ConversionError(path, f"cannot read {what} ({e.strerror})") from None
  if not data:
    raise ConversionError(path, f"empty {what} file")
  try:
    image = Image.open(io.BytesIO(data))
    image.load()
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    raise ConversionError(path, f"unreadable or truncated {what} ({e})") from None
  return image, data


def read_image(path):
  """Decodes an image; returns (bytes for the record, format, (h, w), note).

  RGB PNG and JPEG files keep their bytes; grey, palette, RGBA, 16-bit and
  other formats are converted to RGB and re-encoded as PNG, and the note says
  so (the summary counts it).
  """
  image, data = _open(path, "image")
  note = ""
  fmt = _PASSTHROUGH_FORMATS.get(image.format)
  if image.mode != "RGB" or fmt is None:
    if image.mode != "RGB":
      note = f"converted {image.mode} image to RGB"
    else:
      note = f"re-encoded {image.format} image as PNG"
    if image.mode in ("I;16", "I;16B", "I"):
      array = np.asarray(image, np.float64)
      scale = 255.0 / max(float(array.max()), 1.0)
      image = Image.fromarray(np.round(array * scale).astype(np.uint8))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG")
    data, fmt = buffer.getvalue(), "png"
  return data, fmt, (image.height, image.width), note


def read_label_array(path):
  """Decodes a label file to a numpy array.

  Palette PNGs give their indices (as VOC's SegmentationClass stores ids),
  1-bit masks give 0/1, 16-bit files keep their values, RGB(A) files give
  [H, W, 3] colours (alpha dropped).
  """
  image, _ = _open(path, "label")
  if image.mode == "1":
    return np.asarray(image, np.uint8)
  if image.mode in ("RGBA", "LA", "CMYK", "YCbCr", "HSV", "LAB"):
    image = image.convert("RGB" if image.mode != "LA" else "L")
  return np.asarray(image)


def require_single_channel(array, path, hint=""):
  """Returns a [H, W] array or raises ConversionError for a colour label."""
  if array.ndim == 2:
    return array
  if array.ndim == 3 and array.shape[-1] in (3, 4):
    channels = array[..., :3]
    if np.array_equal(channels[..., 0], channels[..., 1]) and np.array_equal(
        channels[..., 0], channels[..., 2]):
      return channels[..., 0]  # a grey label saved as RGB
    raise ConversionError(
        path, "label is a colour image; expected single-channel class ids"
        + (f" ({hint})" if hint else ""))
  raise ConversionError(path, f"unexpected label array shape {array.shape}")


def lookup_table(mapping, size=256, ignore_sources=()):
  """A LUT for `apply_lut`: source value -> output id, -1 for undefined values.

  Args:
    mapping: dict source value -> output id (0..254 or fields.IGNORE_LABEL).
    size: number of source values (256 for 8-bit labels, 65536 for 16-bit).
    ignore_sources: source values that become fields.IGNORE_LABEL.
  """
  table = np.full(size, -1, np.int16)
  for source, target in mapping.items():
    table[source] = target
  for source in ignore_sources:
    table[source] = fields.IGNORE_LABEL
  return table


def apply_lut(raw, table, path, meaning=""):
  """Maps raw label values through `table`; undefined values are an error.

  Args:
    raw: integer [H, W] array.
    table: from `lookup_table`.
    path: the label file, for the message.
    meaning: what the valid raw values are, e.g. 'CamVid ids 0..11'.

  Returns:
    uint8 [H, W] array of output ids.

  Raises:
    ConversionError: listing the undefined values found.
  """
  raw = np.asarray(raw)
  if raw.size and int(raw.max()) >= table.shape[0]:
    bad = np.unique(raw[raw >= table.shape[0]])
    raise ConversionError(path, f"label values {_values(bad)} out of range"
                          + (f" ({meaning})" if meaning else ""))
  mapped = table[raw]
  if raw.size and mapped.min() < 0:
    bad = np.unique(raw[mapped < 0])
    raise ConversionError(path, f"label values {_values(bad)} out of range"
                          + (f" ({meaning})" if meaning else ""))
  return mapped.astype(np.uint8)


def map_colors(rgb, color_to_id, path, default=None):
  """Maps an [H, W, 3] colour label to ids with a {(r, g, b): id} table.

  Args:
    rgb: uint8 [H, W, 3].
    color_to_id: dict colour tuple -> output id.
    path: the label file, for the message.
    default: id for colours not in the table; None makes them an error.

  Returns:
    uint8 [H, W] array of ids.
  """
  rgb = np.asarray(rgb)
  if rgb.ndim != 3 or rgb.shape[-1] < 3:
    raise ConversionError(path, "expected an RGB colour label, got a "
                          "single-channel image")
  codes = (rgb[..., 0].astype(np.int32) << 16) | (
      rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2].astype(np.int32)
  keys = np.array([(r << 16) | (g << 8) | b for r, g, b in color_to_id],
                  np.int32)
  values = np.array(list(color_to_id.values()), np.int32)
  order = np.argsort(keys)
  keys, values = keys[order], values[order]
  index = np.clip(np.searchsorted(keys, codes), 0, max(len(keys) - 1, 0))
  known = keys[index] == codes if len(keys) else np.zeros(codes.shape, bool)
  if default is None and not known.all():
    unknown = np.unique(codes[~known])
    shown = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255})"
                      for c in unknown[:5])
    more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
    raise ConversionError(path, f"{len(unknown)} colour(s) not in the colour "
                          f"map: {shown}{more}")
  ids = np.where(known, values[index], -1 if default is None else default)
  return ids.astype(np.uint8)


def _values(values, limit=8):
  shown = ", ".join(str(int(v)) for v in values[:limit])
  return f"[{shown}{', ...' if len(values) > limit else ''}]"


def encode_label(label):
  """Encodes a uint8 [H, W] id map as a single-channel PNG."""
  buffer = io.BytesIO()
  # Level 1: ids compress well anyway, and level 6 costs 3x the time.
  Image.fromarray(label, mode="L").save(buffer, format="PNG", compress_level=1)
  return buffer.getvalue()


def encode_pair(converter, sample):
  """Reads, checks and encodes one pair (runs in a worker process).

  Returns:
    EncodedPair, Filtered or Problem; never raises for bad input.
  """
  try:
    image_bytes, image_format, (height, width), note = read_image(
        sample.image_path)
    label = converter.read_label(sample, (height, width))
    if label.shape != (height, width):
      raise ConversionError(
          sample.label_path,
          f"label is {label.shape[1]}x{label.shape[0]} (WxH) but its image "
          f"{os.path.basename(sample.image_path)} is {width}x{height}")
    ignore = converter.ignore_label
    num_classes = converter.num_classes
    counts = np.bincount(label.ravel(), minlength=256)
    outside = [v for v in np.flatnonzero(counts)
               if v >= num_classes and v != ignore]
    if outside:
      raise ConversionError(
          sample.label_path, f"label values {_values(outside)} outside the "
          f"{num_classes} classes (ignore label {ignore})")
    reason = converter.filter_reason(label)
    if reason:
      return Filtered(sample.name, reason)
    class_pixels = np.append(counts[:num_classes], counts[ignore])
    return EncodedPair(sample.name, image_bytes, image_format,
                       encode_label(label), height, width,
                       class_pixels.astype(np.int64), note)
  except ConversionError as e:
    return Problem(e.path, e.problem, e.hint or "")
