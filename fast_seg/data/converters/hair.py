"""Hair masks: Figaro1k, LFW Part Labels, or any folder of images and masks.

    --layout figaro: Figaro1k/Original/{Training,Testing}/<stem>-org.jpg
                     Figaro1k/GT/{Training,Testing}/<stem>-gt.pbm (white: hair)
    --layout lfw:    lfw_funneled/<person>/<person>_<nnnn>.jpg
                     parts_lfw_funneled_gt_images/<person>_<nnnn>.ppm
                     (red = hair, green = face, blue = background)
    --layout folder: --images_dir a.jpg + --labels_dir a.png (or a_mask.png,
                     a-gt.png, ...)

`--mask_classes` says which mask pixels are which class, by colour
('hair=255,0,0;face=0,255,0'), by channel ('hair=channel:0', channel > 127)
or by value for single-channel masks ('hair=255'). Class 0 is always
'background'; pixels no rule matches become background unless 'background'
has a rule of its own, which makes them an error. A class named 'ignore'
maps to the ignore label.
"""

import os

import numpy as np

from fast_seg.core import standard_fields as fields
from fast_seg.data import convert_lib
from fast_seg.utils import image_files

LAYOUTS = ("figaro", "lfw", "folder")
BACKGROUND = "background"
IGNORE = "ignore"
_FIGARO_ROOT = "Figaro1k"
_FIGARO_SPLITS = {"train": "Training", "test": "Testing"}
_LFW_IMAGES = "lfw_funneled"
_LFW_MASKS = "parts_lfw_funneled_gt_images"
_MASK_EXTENSIONS = image_files.IMAGE_EXTENSIONS + (".pbm", ".pgm", ".gif")
# Tried in order when a mask's basename is not an image's basename.
MASK_SUFFIXES = ("_mask", "-mask", "_gt", "-gt", "_label", "-label", "_seg",
                 "-seg", "_matte", "-matte")
# LFW Part Labels: red hair, green face (skin), blue background.
_LFW_RULES = "hair=channel:0;face=channel:1"
_FOLDER_RULES = "background=0;hair=1"
_FIGARO_RULE = "hair = 1 in 0/1 masks, else > 127"
_CHANNEL_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
_CLASS_COLORS = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0),
                 (255, 0, 255), (0, 255, 255), (128, 0, 0), (0, 128, 0),
                 (0, 0, 128), (128, 128, 0), (128, 0, 128), (0, 128, 128))


def _int(text, low, high, what):
  try:
    value = int(text.strip())
  except ValueError:
    value = None
  if value is None or not low <= value <= high:
    raise ValueError(f"--mask_classes: {what} must be an integer in "
                     f"{low}..{high}, got '{text.strip()}'")
  return value


def parse_mask_classes(text):
  """'hair=255,0,0;face=0,255,0' -> ('color', [('hair', (255, 0, 0)), ...]).

  Returns:
    (kind, rules): kind is 'color', 'channel' or 'value'; each rule is
    (class name, colour tuple | channel index | value), in the given order.

  Raises:
    ValueError: malformed entries, mixed kinds, repeated names or keys.
  """
  rules, kinds = [], set()
  for entry in text.split(";"):
    if not entry.strip():
      continue
    name, sep, spec = entry.partition("=")
    name, spec = name.strip(), spec.strip()
    if not sep or not name or not spec:
      raise ValueError(f"--mask_classes entry '{entry.strip()}' is not "
                       "name=r,g,b | name=channel:c | name=value")
    if spec.lower().startswith("channel:"):
      kinds.add("channel")
      key = _int(spec.partition(":")[2], 0, 2, f"the channel of '{name}'")
    elif "," in spec:
      kinds.add("color")
      parts = spec.split(",")
      if len(parts) != 3:
        raise ValueError(f"--mask_classes: the colour of '{name}' must be "
                         f"r,g,b, got '{spec}'")
      key = tuple(_int(p, 0, 255, f"the colour of '{name}'") for p in parts)
    else:
      kinds.add("value")
      key = _int(spec, 0, 65535, f"the value of '{name}'")
    rules.append((name, key))
  if not rules:
    raise ValueError("--mask_classes is empty")
  if len(kinds) > 1:
    raise ValueError(f"--mask_classes mixes {' and '.join(sorted(kinds))} "
                     "rules; use one kind for all classes")
  names = [n.lower() for n, _ in rules]
  keys = [k for _, k in rules]
  for values, what in ((names, "class"), (keys, "mask key")):
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
      raise ValueError(f"--mask_classes lists {what} {', '.join(repeated)} "
                       "more than once")
  if all(n in (BACKGROUND, IGNORE) for n in names):
    raise ValueError("--mask_classes needs at least one class besides "
                     "background and ignore")
  return kinds.pop(), rules


@convert_lib.register
class HairConverter(convert_lib.Converter):
  """Hair (and other) masks in the Figaro1k, LFW or a plain folder layout."""
  name = "hair"
  splits = ("train",)  # figaro: train and test, set per instance
  description = ("hair masks: --layout figaro (Figaro1k, splits train and "
                 "test), lfw (LFW Part Labels) or folder; --mask_classes")
  flags = (
      convert_lib.Flag("enum", "layout", "folder",
                       "figaro (Original/ GT/), lfw (part labels) or folder "
                       "(--images_dir/--labels_dir).", LAYOUTS),
      convert_lib.INPUT_DIR, convert_lib.IMAGES_DIR, convert_lib.LABELS_DIR,
      convert_lib.Flag("string", "mask_classes", None,
                       "Classes by mask colour or channel, e.g. "
                       "'hair=255,0,0;face=0,255,0' or 'hair=channel:0'."))

  def __init__(self, layout="folder", input_dir=None, images_dir=None,
               labels_dir=None, mask_classes=None):
    if layout not in LAYOUTS:
      raise ValueError(f"--layout must be one of {', '.join(LAYOUTS)}, got "
                       f"'{layout}'")
    self.layout = layout
    if layout == "folder":
      if input_dir:
        raise ValueError("--layout folder reads --images_dir and "
                         "--labels_dir, not --input_dir")
      self.images_dir = convert_lib.require_dir(images_dir, "--images_dir")
      self.labels_dir = convert_lib.require_dir(labels_dir, "--labels_dir")
      if os.path.samefile(self.images_dir, self.labels_dir):
        raise ValueError("--images_dir and --labels_dir must be different "
                         "folders")
    else:
      if images_dir or labels_dir:
        raise ValueError(f"--images_dir and --labels_dir apply to --layout "
                         f"folder; --layout {layout} reads --input_dir")
      if layout == "figaro":
        self.root = convert_lib.find_root(input_dir, _FIGARO_ROOT)
        self.splits = tuple(_FIGARO_SPLITS)
      else:
        self.root = convert_lib.require_dir(input_dir, "--input_dir")
    self.mask_classes = (mask_classes or "").strip() or None
    rules_text = self.mask_classes or {"lfw": _LFW_RULES,
                                       "folder": _FOLDER_RULES}.get(layout)
    self._setup_rules(rules_text)

  def _setup_rules(self, text):
    """Class table and the pixel rule; None text is Figaro's default."""
    if text is None:
      self.kind, self._strict = "binary", False
      self._names = [BACKGROUND, "hair"]
      self._colors = [(0, 0, 0), _CLASS_COLORS[0]]
      self.rule_text = _FIGARO_RULE
      return
    self.rule_text = text
    self.kind, rules = parse_mask_classes(text)
    self._strict = any(n.lower() == BACKGROUND for n, _ in rules)
    self._names, self._colors = [BACKGROUND], [(0, 0, 0)]
    self._rules = []  # (output id, key)
    for name, key in rules:
      if name.lower() == BACKGROUND:
        self._rules.append((0, key))
        continue
      if name.lower() == IGNORE:
        self._rules.append((fields.IGNORE_LABEL, key))
        continue
      class_id = len(self._names)
      self._names.append(name)
      if self.kind == "color":
        color = key
      elif self.kind == "channel":
        color = _CHANNEL_COLORS[key]
      else:
        color = _CLASS_COLORS[(class_id - 1) % len(_CLASS_COLORS)]
      self._colors.append(color)
      self._rules.append((class_id, key))
    if self.kind == "value":
      self._table = convert_lib.lookup_table(
          {key: class_id for class_id, key in self._rules}, size=65536)
      if not self._strict:
        self._table[self._table < 0] = 0
    elif self.kind == "color":
      self._color_ids = {key: class_id for class_id, key in self._rules}

  @property
  def class_names(self):
    return list(self._names)

  @property
  def palette(self):
    return [list(c) for c in self._colors]

  def extra_info(self):
    return {"hair_layout": self.layout, "mask_classes": self.rule_text}

  # --------------------------------------------------------------------------
  # Listing.

  def list_pairs(self, split):
    if split not in self.splits:
      raise ValueError(f"hair --layout {self.layout} has splits "
                       f"{', '.join(self.splits)}, not '{split}'")
    if self.layout == "figaro":
      return self._list_figaro(split)
    if self.layout == "lfw":
      return self._list_lfw()
    return self._list_folder()

  def _list_figaro(self, split):
    image_dir = os.path.join(self.root, "Original", _FIGARO_SPLITS[split])
    label_dir = os.path.join(self.root, "GT", _FIGARO_SPLITS[split])
    _require_layout((image_dir, label_dir), f"{_FIGARO_ROOT} (with Original/ "
                    "and GT/) or its parent")
    images = convert_lib.list_files(image_dir)
    labels = convert_lib.list_files(label_dir, _MASK_EXTENSIONS)
    image_key = lambda p: convert_lib.strip_suffix(p, ("-org",))
    return convert_lib.pair_by_key(
        images, labels, image_key,
        lambda p: convert_lib.strip_suffix(p, ("-gt",)),
        expected_label=lambda p: os.path.join(label_dir,
                                              image_key(p) + "-gt.pbm"))

  def _list_lfw(self):
    """One sample per mask: most LFW images have none and are not listed."""
    image_root = os.path.join(self.root, _LFW_IMAGES)
    mask_dir = os.path.join(self.root, _LFW_MASKS)
    _require_layout((image_root, mask_dir),
                    f"the folder holding {_LFW_IMAGES}/ and {_LFW_MASKS}/")
    samples, problems = [], []
    for mask in convert_lib.list_files(mask_dir, _MASK_EXTENSIONS):
      key = _stem(mask)
      person = key.rpartition("_")[0]
      image = os.path.join(image_root, person, key + ".jpg")
      if os.path.isfile(image):
        samples.append(convert_lib.Sample(key, image, mask))
      else:
        problems.append(convert_lib.Problem(
            mask, f"mask without an image (expected {image})"))
    return samples, problems

  def _list_folder(self):
    images = convert_lib.list_files(self.images_dir)
    labels = convert_lib.list_files(self.labels_dir, _MASK_EXTENSIONS)
    stems = {_stem(p) for p in images}

    def label_key(path):
      """The mask's basename, or it without a known suffix if that pairs."""
      stem = _stem(path)
      if stem in stems:
        return stem
      for suffix in MASK_SUFFIXES:
        if stem.endswith(suffix) and stem[:-len(suffix)] in stems:
          return stem[:-len(suffix)]
      return stem

    return convert_lib.pair_by_key(
        images, labels, _stem, label_key,
        expected_label=lambda p: os.path.join(
            self.labels_dir, f"{_stem(p)}.png or {_stem(p)}_mask.png"))

  # --------------------------------------------------------------------------
  # Reading masks.

  def read_label(self, sample, image_size):
    path = sample.label_path
    mask = convert_lib.read_label_array(path)
    if self.kind in ("binary", "value"):
      mask = convert_lib.require_single_channel(
          mask, path, "--mask_classes with r,g,b or channel:c rules reads "
          "colour masks")
      if self.kind == "binary":
        hair = mask == 1 if int(mask.max(initial=0)) <= 1 else mask > 127
        return hair.astype(np.uint8)
      meaning = f"--mask_classes {self.rule_text}"
      if not self.mask_classes:
        meaning = ("--layout folder reads 0 = background, 1 = hair; for "
                   "other masks pass --mask_classes, e.g. 'hair=255'")
      return convert_lib.apply_lut(mask, self._table, path, meaning)
    if mask.ndim != 3:
      raise convert_lib.ConversionError(
          path, f"mask is single-channel but --mask_classes {self.rule_text} "
          "reads colours; use value rules such as 'hair=255'")
    if self.kind == "color":
      try:
        return convert_lib.map_colors(mask, self._color_ids, path,
                                      default=None if self._strict else 0)
      except convert_lib.ConversionError as e:
        raise convert_lib.ConversionError(
            path, f"{e.problem} (--mask_classes {self.rule_text}; without a "
            "background rule other colours are background)") from None
    ids = np.full(mask.shape[:2], -1 if self._strict else 0, np.int16)
    for class_id, channel in reversed(self._rules):  # the first rule wins
      ids[mask[..., channel] > 127] = class_id
    if self._strict and ids.min() < 0:
      unmatched = int(np.count_nonzero(ids < 0))
      example = tuple(int(v) for v in mask[ids < 0][0][:3])
      raise convert_lib.ConversionError(
          path, f"{unmatched} pixel(s) (e.g. colour {example}) have no channel "
          f"> 127 among the --mask_classes {self.rule_text} rules")
    return ids.astype(np.uint8)


def _require_layout(directories, expected):
  for directory in directories:
    if not os.path.isdir(directory):
      raise convert_lib.LayoutError(f"missing {directory}; --input_dir should be "
                              f"{expected}")


def _stem(path):
  return os.path.splitext(os.path.basename(path))[0]
