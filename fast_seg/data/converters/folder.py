"""Any folder of images and masks, matched by basename.

    --images_dir photos/ --labels_dir masks/ [--label_suffix _mask]
    --class_names sky,road,car | --num_classes 3 | --color_map colours.json
    [--train_list train.txt --val_list val.txt --test_list test.txt]

With split lists (mmseg's ann_file, the SegNet tutorial's train.txt) each
list makes a split of the images it names, one per line: a name, a path
relative to --images_dir or any path ending in one, extension optional, or
an '<image> <label>' pair. Without them all pairs are one train split
(`--val_fraction` holds part out).

Labels may be single-channel index PNGs, palette PNGs (their indices are the
ids, as in VOC), or RGB colour images with a colour map JSON
`{"sky": [70, 130, 180], "road": [128, 64, 128], "ignore": [0, 0, 0]}`
whose key order gives the ids ("ignore" is not a class: it maps to 255).
Subfolders are walked; a pair is matched by its path relative to the two
roots without extension (and without `label_suffix` on the label side).
"""

import json
import os

import numpy as np

from fast_seg.core import standard_fields as fields
from fast_seg.data import convert_lib
from fast_seg.utils import image_files
from fast_seg.utils import visualization

IGNORE_KEY = "ignore"
# Splits that a list file can define (--train_list, ...).
SPLIT_LISTS = ("train", "val", "test")


def load_color_map(path):
  """Reads a colour map JSON; returns (class names, {colour: id})."""
  try:
    with open(path, encoding="utf-8") as f:
      table = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f"--color_map file not found: {path}") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"--color_map {path}: not valid JSON ({e})") from None
  if not isinstance(table, dict) or not table:
    raise ValueError(f"--color_map {path}: expected an object "
                     '{"class name": [r, g, b], ...}')
  names, colors = [], {}
  for name, value in table.items():
    entries = value if value and isinstance(value[0], list) else [value]
    for color in entries:
      if (len(color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255
                                     for c in color)):
        raise ValueError(f"--color_map {path}: '{name}' must be [r, g, b] "
                         f"(or a list of them) with values 0..255, got {value}")
      if tuple(color) in colors:
        raise ValueError(f"--color_map {path}: colour {color} is listed twice")
      colors[tuple(color)] = (fields.IGNORE_LABEL if name == IGNORE_KEY
                              else len(names))
    if name != IGNORE_KEY:
      names.append(name)
  return names, colors


@convert_lib.register
class FolderConverter(convert_lib.Converter):
  """Images and labels in two folders, paired by relative path and basename."""
  name = "folder"
  splits = ("train",)
  description = ("any folder: --images_dir + --labels_dir (index, palette or "
                 "colour labels); --val_fraction for a val split")
  flags = (
      convert_lib.IMAGES_DIR, convert_lib.LABELS_DIR,
      convert_lib.Flag("string", "label_suffix", "",
                       "Suffix of label basenames, e.g. '_mask' for a.jpg + "
                       "a_mask.png."),
      convert_lib.Flag("list", "class_names", None,
                       "Class names (their count is num_classes)."),
      convert_lib.Flag("integer", "num_classes", None,
                       "Number of classes when names are not given."),
      convert_lib.Flag("string", "color_map", None,
                       "JSON file {\"class name\": [r, g, b], ...} for RGB "
                       "colour labels (order = class ids)."),
      convert_lib.Flag("integer", "ignore_value", None,
                       "Label value that means 'ignore' (mapped to 255)."),
      convert_lib.Flag("bool", "reduce_zero_label", False,
                       "Label 0 means 'unlabelled' (-> ignore) and ids 1..N "
                       "become 0..N-1 (LoveDA, ISPRS, ADE-style labels)."),
      *(convert_lib.Flag("string", f"{split}_list", None,
                         f"Text file naming the {split} split's images, one "
                         "per line (mmseg's ann_file; SegNet's lists).")
        for split in SPLIT_LISTS))

  def __init__(self, images_dir, labels_dir, label_suffix="", class_names=None,
               num_classes=None, color_map=None, ignore_value=None,
               reduce_zero_label=False, train_list=None, val_list=None,
               test_list=None):
    self.images_dir = convert_lib.require_dir(images_dir, "--images_dir")
    self.labels_dir = convert_lib.require_dir(labels_dir, "--labels_dir")
    self.split_lists = {split: path for split, path in zip(
        SPLIT_LISTS, (train_list, val_list, test_list)) if path}
    for split, path in self.split_lists.items():
      if not os.path.isfile(path):
        raise convert_lib.LayoutError(f"--{split}_list file not found: {path}")
    self.splits = tuple(self.split_lists) or FolderConverter.splits
    self.label_suffix = label_suffix or ""
    self.colors = None
    given = [n for n, v in (("--class_names", class_names),
                            ("--num_classes", num_classes),
                            ("--color_map", color_map)) if v]
    if color_map:
      if ignore_value is not None or reduce_zero_label:
        raise ValueError("--ignore_value and --reduce_zero_label apply to "
                         "index labels, not to --color_map")
      names, self.colors = load_color_map(color_map)
      if class_names and list(class_names) != names:
        raise ValueError(f"--class_names {class_names} differ from the "
                         f"--color_map classes {names}")
      class_names = names
    elif class_names:
      if num_classes and num_classes != len(class_names):
        raise ValueError(f"--num_classes {num_classes} but --class_names has "
                         f"{len(class_names)} names")
    elif num_classes:
      class_names = [f"class_{i}" for i in range(num_classes)]
    if not class_names:
      raise ValueError("--dataset folder needs the classes: --class_names, "
                       "--num_classes or --color_map")
    if len(set(class_names)) != len(class_names):
      raise ValueError(f"class names must be unique: {class_names}")
    if len(class_names) > 255:
      raise ValueError(f"at most 255 classes (255 is the ignore label), got "
                       f"{len(class_names)} ({', '.join(given)})")
    self._names = list(class_names)
    self._reduce_zero_label = reduce_zero_label
    self._table = self._index_table(ignore_value, reduce_zero_label)

  def _index_table(self, ignore_value, reduce_zero_label):
    """Source value -> id for index labels (16-bit range: any PNG works)."""
    count = len(self._names)
    if reduce_zero_label:
      if ignore_value not in (None, 0):
        raise ValueError("--reduce_zero_label already makes 0 the ignore "
                         f"value; --ignore_value {ignore_value} conflicts")
      mapping = {i + 1: i for i in range(count)}
      ignore = (0,)
      self._meaning = f"0 = ignore, classes 1..{count}"
    else:
      mapping = {i: i for i in range(count)}
      ignore = () if ignore_value is None else (ignore_value,)
      if ignore_value is not None and not 0 <= ignore_value < 65536:
        raise ValueError(f"--ignore_value must be in 0..65535, got "
                         f"{ignore_value}")
      if ignore_value is not None and ignore_value < count:
        raise ValueError(
            f"--ignore_value {ignore_value} is a class id (0..{count - 1}); "
            "use --reduce_zero_label if 0 means unlabelled and ids start at 1")
      self._meaning = f"classes 0..{count - 1}" + (
          f", {ignore_value} = ignore" if ignore else "")
    mapping[fields.IGNORE_LABEL] = fields.IGNORE_LABEL
    return convert_lib.lookup_table(mapping, size=65536, ignore_sources=ignore)

  @property
  def class_names(self):
    return list(self._names)

  @property
  def palette(self):
    if self.colors:
      by_id = {i: c for c, i in self.colors.items()
               if i != fields.IGNORE_LABEL}
      return [list(by_id[i]) for i in range(len(self._names))]
    return visualization.default_palette(len(self._names)).tolist()

  def _key(self, root, path, suffix=""):
    relative = os.path.relpath(path, root)
    stem = os.path.splitext(relative)[0]
    if suffix:
      if not stem.endswith(suffix):
        return None  # not a label of this layout
      stem = stem[:-len(suffix)]
    return stem

  def source_text(self, split):
    text = (f"{super().source_text(split)} (files ending "
            f"{', '.join(image_files.IMAGE_EXTENSIONS)}, in subfolders too)")
    if split in self.split_lists:
      text += f" as listed by --{split}_list {self.split_lists[split]}"
    return text

  def list_pairs(self, split):
    """Every pair, or those the split's list names; without lists there is
    one split and convert.py carves val with --val_fraction."""
    images = convert_lib.list_files(self.images_dir, recursive=True)
    labels = convert_lib.list_files(self.labels_dir, recursive=True)
    samples, problems = convert_lib.pair_by_key(
        images, labels, lambda p: self._key(self.images_dir, p),
        lambda p: self._key(self.labels_dir, p, self.label_suffix),
        expected_label=lambda p: os.path.join(
            self.labels_dir, self._key(self.images_dir, p) + self.label_suffix
            + ".png"))
    if split not in self.split_lists:
      return samples, problems
    return convert_lib.keep_listed(samples, problems, self.split_lists[split])

  def read_label(self, sample, image_size):
    array = convert_lib.read_label_array(sample.label_path)
    if self.colors is not None:
      if array.ndim == 2:
        raise convert_lib.ConversionError(
            sample.label_path, "single-channel label but --color_map expects "
            "RGB colour labels")
      return convert_lib.map_colors(array[..., :3], self.colors,
                                    sample.label_path)
    raw = convert_lib.require_single_channel(
        array, sample.label_path, "pass --color_map for colour labels")
    try:
      return convert_lib.apply_lut(raw.astype(np.int64), self._table,
                                   sample.label_path, self._meaning)
    except convert_lib.ConversionError as error:
      hint = self._one_based_hint(raw)
      if hint is None:
        raise
      raise convert_lib.ConversionError(error.path, error.problem,
                                        hint) from None

  def _one_based_hint(self, raw):
    """The fix for ids 1..N read as 0..N-1, or None.

    LoveDA and ISPRS store their N classes as 1..N with 0 = no data; without
    --reduce_zero_label every file holding class N fails, and the usual
    advice (skip the bad files) would skip them all. N being the only
    undefined value is the sign; whether 0 is unlabelled or a class of its
    own only the user knows, so the hint names both fixes.
    """
    if self._reduce_zero_label:
      return None
    count = len(self._names)
    values = np.unique(raw).astype(np.int64)
    size = self._table.shape[0]
    defined = (values < size) & (self._table[np.minimum(values, size - 1)] >= 0)
    if values[~defined].tolist() != [count]:
      return None
    return (f"ids 1..{count} look 1-based: pass --reduce_zero_label if 0 "
            "means unlabelled, as in LoveDA and ISPRS; if 0 is a class too, "
            f"there are {count + 1} classes")
