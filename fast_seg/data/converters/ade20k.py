"""ADE20K, the SceneParsing or the full release: 150 classes or a whitelist.

The SceneParsing release (ADEChallengeData2016.zip):

    ADEChallengeData2016/images/training/ADE_train_*.jpg         (20210)
    ADEChallengeData2016/annotations/training/ADE_train_*.png
    ADEChallengeData2016/images/validation/ADE_val_*.jpg         (2000)
    ADEChallengeData2016/annotations/validation/ADE_val_*.png

Annotations hold 0 for "other" (unlabelled, never scored) and 1..150 for the
classes; they become 0..149 with 0 -> ignore. A whitelist keeps a few
classes (optionally merging several into one) for small task-specific models.

The full release (ADE20K_2016_07_26.zip, or the newer ADE20K_2021_17_01),
each image in a folder per scene with its object mask beside it:

    ADE20K_2016_07_26/index_ade20k.mat
    ADE20K_2016_07_26/images/training/<letter>/<scene>/ADE_train_*.jpg  (+ *_seg.png)
    ADE20K_2016_07_26/images/validation/<letter>/<scene>/ADE_val_*.jpg  (+ *_seg.png)

    ADE20K_2021_17_01/index_ade20k.pkl
    ADE20K_2021_17_01/images/ADE/training/<scene>/ADE_*.jpg             (+ *_seg.png)
    ADE20K_2021_17_01/images/ADE/validation/<scene>/ADE_val_*.jpg       (+ *_seg.png)

A _seg.png codes a pixel's full-release class as R / 10 * 256 + G (B is the
instance): class v is the index file's objectnames[v - 1], 0 is unlabelled.
The release has 3000+ object names; a pixel becomes one of the 150 classes
when its object name is that class's objectInfo150 name, compared as a set of
comma-separated synonyms (objectInfo150 lists class 90's synonyms in another
order), or one of the full-release names that SceneParsing's own conversion
table (convertFromADE/mapFromADE.txt) also merges into a class (_EXTRA_NAMES).
Every other object becomes "other", i.e. ignore, as in SceneParsing, so both
releases give the same 150 class ids.
"""

import math
import os
import pickle

import numpy as np

from fast_seg.core import standard_fields as fields
from fast_seg.data import convert_lib
from fast_seg.data.converters import ade20k_classes

UNLISTED_CHOICES = ("background", "ignore")
ROOT_NAME = "ADEChallengeData2016"
# The full release's folder names, tried in this order after ROOT_NAME when
# --input_dir is the folder that holds them.
FULL_ROOT_NAMES = ("ADE20K_2016_07_26", "ADE20K_2021_17_01")
# The index file of the full release: a pickle (2021) or a MATLAB struct
# `index` (2016); both have the object names in `objectnames`.
INDEX_FILES = ("index_ade20k.pkl", "index_ade20k.mat")
SEG_SUFFIX = "_seg.png"
_SPLIT_DIRS = {"train": "training", "val": "validation"}

CLASS_NAMES = tuple(name for name, _ in ade20k_classes.CLASSES)
PALETTE = tuple(color for _, color in ade20k_classes.CLASSES)
NUM_ADE_CLASSES = len(ade20k_classes.CLASSES)


def synonyms(ade_id):
  """The comma-separated synonyms of ADE class `ade_id` (1..150)."""
  return [s.strip() for s in CLASS_NAMES[ade_id - 1].split(",")]


def short_name(ade_id):
  """The first synonym, e.g. 'person'; unique over the 150 classes."""
  return synonyms(ade_id)[0]


def labels_text():
  """The 150 classes for --list_labels, with the names --whitelist accepts."""
  lines = ["ADE20K SceneParsing classes (annotation value: names). Without "
           "--whitelist value v becomes class v - 1 and 0 (other) is ignored.",
           "--whitelist accepts the full name or any one synonym, e.g. "
           "'person|car:truck:van'."]
  lines.extend(f"{i:3d}: {name}" for i, name in enumerate(CLASS_NAMES, 1))
  return "\n".join(lines)


def _name_index():
  """Lower-case name -> ADE ids, for full names, first and other synonyms.

  Returns three dicts, searched in that order so that a short name like
  'screen' (class 131's first synonym) wins over the same word further down
  other classes' synonym lists.
  """
  full, first, other = {}, {}, {}
  for ade_id in range(1, NUM_ADE_CLASSES + 1):
    full.setdefault(CLASS_NAMES[ade_id - 1].lower(), []).append(ade_id)
    names = [s.lower() for s in synonyms(ade_id)]
    first.setdefault(names[0], []).append(ade_id)
    for name in names[1:]:
      other.setdefault(name, []).append(ade_id)
  return full, first, other


_NAME_INDEX = _name_index()


def resolve_name(name):
  """The ADE id (1..150) of a full class name or one of its synonyms.

  Raises:
    ValueError: unknown or ambiguous name, with the closest names.
  """
  key = " ".join(name.split()).lower()
  if not key:
    raise ValueError("--whitelist has an empty class name")
  for names in _NAME_INDEX:
    ids = names.get(key)
    if ids and len(ids) == 1:
      return ids[0]
    if ids:
      choices = "; ".join(f"'{CLASS_NAMES[i - 1]}'" for i in ids)
      raise ValueError(f"--whitelist name '{name.strip()}' is ambiguous: it "
                       f"is a synonym of {choices}; use the full name")
  candidates = sorted({n for names in _NAME_INDEX for n in names})
  close = convert_lib.closest_names(key, candidates)
  hint = (f"; did you mean {', '.join(repr(c) for c in close)}?" if close
          else "")
  raise ValueError(f"--whitelist name '{name.strip()}' is not an ADE20K "
                   f"class{hint} (--list_labels prints them all)")


def parse_whitelist(text):
  """'person|car:truck:van' -> [[13], [21, 84, 103]] (groups of ADE ids).

  Raises:
    ValueError: an unknown, ambiguous, empty or repeated class.
  """
  groups = []
  seen = {}
  for entry in text.split("|"):
    group = []
    for name in entry.split(":"):
      ade_id = resolve_name(name)
      if ade_id in seen:
        raise ValueError(
            f"--whitelist lists '{CLASS_NAMES[ade_id - 1]}' twice (as "
            f"'{seen[ade_id]}' and '{name.strip()}')")
      seen[ade_id] = name.strip()
      group.append(ade_id)
    groups.append(group)
  return groups


# Full-release object names that SceneParsing's mapFromADE.txt maps to a class
# although they are not its objectInfo150 name (the full-release index of each
# in brackets): objectInfo150 merged 'door' and 'double door' into one name,
# added 'closet' and 'booth' to the classes that carry them as a synonym, and
# shortened 'screen, crt screen' to 'crt screen'. Each name here is a whole
# object name: a synonym alone ('pot', 'chest', 'machine') is a different
# full-release object and stays "other".
_EXTRA_NAMES = {
    15: ("door",  # [774]
         "double door"),  # [783]
    36: ("closet",),  # [533]
    89: ("booth",),  # [246]
    142: ("screen, crt screen",),  # [3109]
}


def _name_key(name):
  """'Floor,  Flooring ' -> {'floor', 'flooring'}: how object names compare.

  A set, because objectInfo150 and the full release list class 90's synonyms
  in different orders; case and spacing differ between their files too.
  """
  words = (" ".join(part.split()).lower() for part in str(name).split(","))
  return frozenset(word for word in words if word)


def _full_name_index():
  """Name key -> ADE id (1..150) for the full-release names of each class."""
  index = {}
  for ade_id in range(1, NUM_ADE_CLASSES + 1):
    for name in (CLASS_NAMES[ade_id - 1],) + _EXTRA_NAMES.get(ade_id, ()):
      index[_name_key(name)] = ade_id
  return index


_FULL_NAME_INDEX = _full_name_index()


def full_release_ade_ids(object_names):
  """The ADE id (1..150, 0 = other) of each full-release class value.

  Args:
    object_names: the index file's objectnames; class value v of a _seg.png
      is object_names[v - 1].

  Returns:
    int array [len(object_names) + 1]; entry 0 (unlabelled) is 0.
  """
  ids = np.zeros(len(object_names) + 1, np.int64)
  for value, name in enumerate(object_names, 1):
    ids[value] = _FULL_NAME_INDEX.get(_name_key(name), 0)
  return ids


def _mat_object_names(path):
  """objectnames of the MATLAB struct `index` in the 2016 index_ade20k.mat."""
  import scipy.io  # optional: only the 2016 full release's .mat index needs it
  try:
    index = scipy.io.loadmat(path)["index"]
    cells = np.asarray(index["objectnames"]).ravel()[0]
  except (OSError, ValueError, KeyError, IndexError, TypeError,
          NotImplementedError, scipy.io.matlab.MatReadError) as e:
    raise convert_lib.ConversionError(
        path, f"not an ADE20K index with a struct index.objectnames ({e})")
  cells = np.asarray(cells)
  if cells.dtype != object:
    raise convert_lib.ConversionError(
        path, f"index.objectnames is {cells.dtype}, expected a cell array of "
        "names")
  names = []
  for cell in cells.ravel():
    cell = np.asarray(cell).ravel()
    names.append(str(cell[0]) if cell.size else "")
  return names


def _pickle_object_names(path):
  """objectnames of the dict pickled in the 2021 index_ade20k.pkl.

  Unpickling runs code the file names; it is the index of the release the
  user downloaded, read as its own starter code reads it.
  """
  try:
    with open(path, "rb") as f:
      index = pickle.load(f)
    names = index["objectnames"]
  except OSError as e:
    raise convert_lib.ConversionError(path, f"cannot read ({e.strerror})")
  except (pickle.UnpicklingError, EOFError, AttributeError, ImportError,
          IndexError, KeyError, TypeError, ValueError) as e:
    raise convert_lib.ConversionError(
        path, f"not an ADE20K index: a pickled dict with 'objectnames' ({e!r})")
  if isinstance(names, (str, bytes)) or not hasattr(names, "__len__"):
    raise convert_lib.ConversionError(
        path, f"'objectnames' is a {type(names).__name__}, expected a list")
  return [str(name) for name in names]


def read_object_names(root):
  """(index file, its object names) of the full release in `root`.

  Raises:
    LayoutError: no index file: without it a class value has no name.
    ConversionError: an index file without readable object names.
  """
  for file_name in INDEX_FILES:
    path = os.path.join(root, file_name)
    if os.path.isfile(path):
      names = (_mat_object_names(path) if path.endswith(".mat")
               else _pickle_object_names(path))
      if not names:
        raise convert_lib.ConversionError(path, "objectnames is empty")
      return path, names
  # The 2016 release (images/<split>) has the .mat, the 2021 one the .pkl.
  expected, other = (INDEX_FILES if os.path.isdir(
      os.path.join(root, "images", "ADE")) else INDEX_FILES[::-1])
  raise convert_lib.LayoutError(
      f"missing {os.path.join(root, expected)} (or {other}): "
      "the full ADE20K release names the class values of its _seg.png files "
      "there; it comes in the release's zip, beside images/")


def find_layout(input_dir):
  """(root, is_full_release) for --input_dir: a release folder or its parent.

  A folder with annotations/ is the SceneParsing release; one with an index
  file, images/ADE/ or a full release's name is the full release. Anything
  else is taken for SceneParsing, whose missing folders are then reported.
  """
  convert_lib.require_dir(input_dir, "--input_dir")
  root = input_dir
  for name in (ROOT_NAME,) + FULL_ROOT_NAMES:
    if os.path.isdir(os.path.join(input_dir, name)):
      root = os.path.join(input_dir, name)
      break
  if os.path.isdir(os.path.join(root, "annotations")):
    return root, False
  full = (any(os.path.isfile(os.path.join(root, f)) for f in INDEX_FILES)
          or os.path.isdir(os.path.join(root, "images", "ADE"))
          or os.path.basename(os.path.normpath(root)) in FULL_ROOT_NAMES)
  return root, full


def pair_full_release(split_dir):
  """(samples, problems): each X.jpg under `split_dir` with X_seg.png beside.

  Pairs by the path below `split_dir`, so a mask in another scene folder is
  never taken; a sample is named by its file name, as in SceneParsing.
  """
  below = lambda path, suffix: os.path.relpath(path, split_dir)[:-len(suffix)]
  images = convert_lib.list_files(split_dir, (".jpg",), recursive=True)
  labels = convert_lib.list_files(split_dir, (SEG_SUFFIX,), recursive=True)
  pairs, problems = convert_lib.pair_by_key(
      images, labels, lambda path: below(path, ".jpg"),
      lambda path: below(path, SEG_SUFFIX),
      expected_label=lambda path: path[:-len(".jpg")] + SEG_SUFFIX)
  samples, first = [], {}
  for pair in pairs:
    name = os.path.basename(pair.name)
    if name in first:
      problems.append(convert_lib.Problem(
          pair.image_path, f"second image named '{name}' (first: "
          f"{first[name]})"))
      continue
    first[name] = pair.image_path
    samples.append(convert_lib.Sample(name, pair.image_path, pair.label_path))
  samples.sort(key=lambda sample: sample.name)
  return samples, problems


def decode_seg(rgb, path):
  """The full-release class values of a _seg.png: R / 10 * 256 + G.

  Raises:
    ConversionError: not an RGB image, or red values that are not multiples
      of 10 (a resized or re-encoded mask, whose classes cannot be trusted).
  """
  rgb = np.asarray(rgb)
  if rgb.ndim != 3 or rgb.shape[-1] < 3:
    raise convert_lib.ConversionError(
        path, "expected an RGB ADE20K _seg.png (class = R / 10 * 256 + G), "
        f"got a single-channel image of shape {rgb.shape}")
  red = rgb[..., 0].astype(np.int32)
  if np.any(red % 10):
    bad = np.unique(red[red % 10 != 0])
    shown = ", ".join(str(int(v)) for v in bad[:8])
    raise convert_lib.ConversionError(
        path, f"red values [{shown}{', ...' if len(bad) > 8 else ''}] are not "
        "multiples of 10; an ADE20K _seg.png codes class = R / 10 * 256 + G "
        "(was it resized or re-encoded?)")
  return red // 10 * 256 + rgb[..., 1].astype(np.int32)


def _ade_mapping(groups, unlisted):
  """(ADE id -> output id, output ids of the whitelist groups or None)."""
  if groups is None:
    return {i: i - 1 for i in range(1, NUM_ADE_CLASSES + 1)}, None
  first_id = 1 if unlisted == "background" else 0
  rest = 0 if unlisted == "background" else fields.IGNORE_LABEL
  mapping = {i: rest for i in range(1, NUM_ADE_CLASSES + 1)}
  for output_id, group in enumerate(groups, first_id):
    mapping.update({ade_id: output_id for ade_id in group})
  return mapping, np.arange(first_id, first_id + len(groups))


@convert_lib.register
class ADE20KConverter(convert_lib.Converter):
  """Pairs images/<dir>/X.jpg with annotations/<dir>/X.png (SceneParsing) or
  with the X_seg.png beside it (full release)."""
  name = "ade20k"
  splits = ("train", "val")
  description = ("ADE20K SceneParsing (ADEChallengeData2016) or the full "
                 "release (ADE20K_2016_07_26, ADE20K_2021_17_01), 150 classes "
                 "or a --whitelist")
  flags = (
      convert_lib.INPUT_DIR,
      convert_lib.Flag("string", "whitelist", None,
                       "Classes to keep, '|' between classes, ':' merges "
                       "several into one, e.g. 'person|car:truck:van'."),
      convert_lib.Flag("float", "whitelist_threshold", 0.0,
                       "Fraction of the whitelisted classes an image must "
                       "contain to be kept."),
      convert_lib.Flag("enum", "unlisted", "background",
                       "With --whitelist: classes not in the whitelist "
                       "become class 0 'background' or the ignore label.",
                       UNLISTED_CHOICES))
  info_flags = (convert_lib.Flag("bool", "list_labels", False,
                                 "Print the 150 class names and exit."),)

  @classmethod
  def info_text(cls, flag_values):
    return labels_text() if flag_values["list_labels"].value else None

  def __init__(self, input_dir, whitelist=None, whitelist_threshold=0.0,
               unlisted="background"):
    self.root, self.full_release = find_layout(input_dir)
    if unlisted not in UNLISTED_CHOICES:
      raise ValueError(f"--unlisted must be one of {UNLISTED_CHOICES}, got "
                       f"'{unlisted}'")
    threshold = float(whitelist_threshold or 0.0)
    if not 0.0 <= threshold <= 1.0:
      raise ValueError("--whitelist_threshold must be in [0, 1], got "
                       f"{whitelist_threshold}")
    self.whitelist = (whitelist or "").strip() or None
    if threshold and not self.whitelist:
      raise ValueError("--whitelist_threshold needs --whitelist")
    self.whitelist_threshold = threshold
    self.unlisted = unlisted
    self.groups = parse_whitelist(self.whitelist) if self.whitelist else None
    self.mapping, self._group_ids = _ade_mapping(self.groups, unlisted)
    self._table = convert_lib.lookup_table(self.mapping, ignore_sources=(0,))
    # A small epsilon keeps e.g. 0.7 * 10 from needing 8 classes.
    self.min_groups = (math.ceil(threshold * len(self.groups) - 1e-9)
                       if self.groups else 0)
    self.index_path, self.num_object_names = None, 0
    self.unnamed_classes, self._full_table = (), None
    if self.full_release:
      self._read_index()

  def _read_index(self):
    """Maps full-release class values straight to output ids, once.

    The table (one entry per object name, a few KB) goes to the worker
    processes; the index file itself is read here only.
    """
    self.index_path, names = read_object_names(self.root)
    ade_ids = full_release_ade_ids(names)
    self.num_object_names = len(names)
    self._full_table = self._table[ade_ids]
    named = set(ade_ids.tolist())
    self.unnamed_classes = tuple(i for i in range(1, NUM_ADE_CLASSES + 1)
                                 if i not in named)

  @property
  def class_names(self):
    if self.groups is None:
      return [short_name(i) for i in range(1, NUM_ADE_CLASSES + 1)]
    names = ["+".join(short_name(i) for i in group) for group in self.groups]
    if self.unlisted == "background":
      names.insert(0, "background")
    return names

  @property
  def palette(self):
    if self.groups is None:
      return [list(c) for c in PALETTE]
    colors = [list(PALETTE[group[0] - 1]) for group in self.groups]
    if self.unlisted == "background":
      colors.insert(0, [0, 0, 0])
    return colors

  def list_pairs(self, split):
    if split not in _SPLIT_DIRS:
      raise ValueError(f"ade20k has splits {', '.join(self.splits)}, not "
                       f"'{split}'")
    if self.full_release:
      images = os.path.join(self.root, "images")
      if os.path.isdir(os.path.join(images, "ADE")):
        images = os.path.join(images, "ADE")  # the 2021 release
      split_dir = os.path.join(images, _SPLIT_DIRS[split])
      if not os.path.isdir(split_dir):
        raise convert_lib.LayoutError(
            f"missing {split_dir}; the full ADE20K release has "
            "images/{training,validation}/ (images/ADE/... since 2021)")
      return pair_full_release(split_dir)
    image_dir = os.path.join(self.root, "images", _SPLIT_DIRS[split])
    label_dir = os.path.join(self.root, "annotations", _SPLIT_DIRS[split])
    for directory in (image_dir, label_dir):
      if not os.path.isdir(directory):
        raise convert_lib.LayoutError(
            f"missing {directory}; --input_dir should be {ROOT_NAME} (with "
            "images/ and annotations/), a full release "
            f"({' or '.join(FULL_ROOT_NAMES)}, with index_ade20k.* and "
            "images/), or the folder that holds it")
    images = convert_lib.list_files(image_dir)
    labels = convert_lib.list_files(label_dir, (".png",))
    stem = lambda path: os.path.splitext(os.path.basename(path))[0]
    return convert_lib.pair_by_key(
        images, labels, stem, stem,
        expected_label=lambda p: os.path.join(label_dir, stem(p) + ".png"))

  def read_label(self, sample, image_size):
    path = sample.label_path
    if self.full_release:
      values = decode_seg(convert_lib.read_label_array(path), path)
      return convert_lib.apply_lut(
          values, self._full_table, path,
          f"full-release class values are 0 (unlabelled) and "
          f"1..{self.num_object_names}, the object names of {self.index_path}")
    raw = convert_lib.require_single_channel(
        convert_lib.read_label_array(path), path,
        "ADE20K annotations are uint8 class ids")
    return convert_lib.apply_lut(
        raw, self._table, path,
        f"ADE20K annotations are 0 (other) and 1..{NUM_ADE_CLASSES}")

  def filter_reason(self, label):
    if not self.min_groups:
      return None
    counts = np.bincount(label.ravel(), minlength=256)
    present = int(np.count_nonzero(counts[self._group_ids]))
    if present >= self.min_groups:
      return None
    return (f"{present} of the {len(self.groups)} whitelisted classes present, "
            f"--whitelist_threshold {self.whitelist_threshold:g} needs "
            f"{self.min_groups}")

  def extra_info(self):
    """The ADE ids behind each output class, so a run can be traced back,
    and for the full release the index file and the classes it lacks."""
    info = {}
    if self.full_release:
      info["ade20k_full_release"] = {
          "index_file": self.index_path,
          "object_names": self.num_object_names,
          "classes_without_object_name": [short_name(i)
                                          for i in self.unnamed_classes]}
    if self.groups is None:
      return info
    names = self.class_names
    label_map = {}
    if self.unlisted == "background":
      listed = {i for group in self.groups for i in group}
      label_map[names[0]] = [i for i in range(1, NUM_ADE_CLASSES + 1)
                             if i not in listed]
      names = names[1:]
    for name, group in zip(names, self.groups):
      label_map[name] = list(group)
    info.update({"label_map": label_map, "whitelist": self.whitelist,
                 "whitelist_threshold": self.whitelist_threshold,
                 "unlisted": self.unlisted})
    return info
