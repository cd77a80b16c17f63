"""ADE20K SceneParsing (ADEChallengeData2016): 150 classes or a whitelist.

    ADEChallengeData2016/images/training/ADE_train_*.jpg         (20210)
    ADEChallengeData2016/annotations/training/ADE_train_*.png
    ADEChallengeData2016/images/validation/ADE_val_*.jpg         (2000)
    ADEChallengeData2016/annotations/validation/ADE_val_*.png

Annotations hold 0 for "other" (unlabelled, never scored) and 1..150 for the
classes; they become 0..149 with 0 -> ignore. A whitelist keeps a few
classes (optionally merging several into one) for small task-specific models.
"""

import math
import os

import numpy as np

from fast_seg.data import convert_lib

UNLISTED_CHOICES = ("background", "ignore")
ROOT_NAME = "ADEChallengeData2016"
_SPLIT_DIRS = {"train": "training", "val": "validation"}

# The SceneParsing class names (objectInfo150, comma separated synonyms) and
# the challenge's colours (color150.mat, as in mmsegmentation's ADE20KDataset).
# Entry i is annotation value i + 1.
_CLASSES = (
    ("wall", (120, 120, 120)),
    ("building, edifice", (180, 120, 120)),
    ("sky", (6, 230, 230)),
    ("floor, flooring", (80, 50, 50)),
    ("tree", (4, 200, 3)),
    ("ceiling", (120, 120, 80)),
    ("road, route", (140, 140, 140)),
    ("bed", (204, 5, 255)),
    ("windowpane, window", (230, 230, 230)),
    ("grass", (4, 250, 7)),
    ("cabinet", (224, 5, 255)),
    ("sidewalk, pavement", (235, 255, 7)),
    ("person, individual, someone, somebody, mortal, soul", (150, 5, 61)),
    ("earth, ground", (120, 120, 70)),
    ("door, double door", (8, 255, 51)),
    ("table", (255, 6, 82)),
    ("mountain, mount", (143, 255, 140)),
    ("plant, flora, plant life", (204, 255, 4)),
    ("curtain, drape, drapery, mantle, pall", (255, 51, 7)),
    ("chair", (204, 70, 3)),
    ("car, auto, automobile, machine, motorcar", (0, 102, 200)),
    ("water", (61, 230, 250)),
    ("painting, picture", (255, 6, 51)),
    ("sofa, couch, lounge", (11, 102, 255)),
    ("shelf", (255, 7, 71)),
    ("house", (255, 9, 224)),
    ("sea", (9, 7, 230)),
    ("mirror", (220, 220, 220)),
    ("rug, carpet, carpeting", (255, 9, 92)),
    ("field", (112, 9, 255)),
    ("armchair", (8, 255, 214)),
    ("seat", (7, 255, 224)),
    ("fence, fencing", (255, 184, 6)),
    ("desk", (10, 255, 71)),
    ("rock, stone", (255, 41, 10)),
    ("wardrobe, closet, press", (7, 255, 255)),
    ("lamp", (224, 255, 8)),
    ("bathtub, bathing tub, bath, tub", (102, 8, 255)),
    ("railing, rail", (255, 61, 6)),
    ("cushion", (255, 194, 7)),
    ("base, pedestal, stand", (255, 122, 8)),
    ("box", (0, 255, 20)),
    ("column, pillar", (255, 8, 41)),
    ("signboard, sign", (255, 5, 153)),
    ("chest of drawers, chest, bureau, dresser", (6, 51, 255)),
    ("counter", (235, 12, 255)),
    ("sand", (160, 150, 20)),
    ("sink", (0, 163, 255)),
    ("skyscraper", (140, 140, 140)),
    ("fireplace, hearth, open fireplace", (250, 10, 15)),
    ("refrigerator, icebox", (20, 255, 0)),
    ("grandstand, covered stand", (31, 255, 0)),
    ("path", (255, 31, 0)),
    ("stairs, steps", (255, 224, 0)),
    ("runway", (153, 255, 0)),
    ("case, display case, showcase, vitrine", (0, 0, 255)),
    ("pool table, billiard table, snooker table", (255, 71, 0)),
    ("pillow", (0, 235, 255)),
    ("screen door, screen", (0, 173, 255)),
    ("stairway, staircase", (31, 0, 255)),
    ("river", (11, 200, 200)),
    ("bridge, span", (255, 82, 0)),
    ("bookcase", (0, 255, 245)),
    ("blind, screen", (0, 61, 255)),
    ("coffee table, cocktail table", (0, 255, 112)),
    ("toilet, can, commode, crapper, pot, potty, stool, throne",
     (0, 255, 133)),
    ("flower", (255, 0, 0)),
    ("book", (255, 163, 0)),
    ("hill", (255, 102, 0)),
    ("bench", (194, 255, 0)),
    ("countertop", (0, 143, 255)),
    ("stove, kitchen stove, range, kitchen range, cooking stove",
     (51, 255, 0)),
    ("palm, palm tree", (0, 82, 255)),
    ("kitchen island", (0, 255, 41)),
    ("computer, computing machine, computing device, data processor, "
     "electronic computer, information processing system", (0, 255, 173)),
    ("swivel chair", (10, 0, 255)),
    ("boat", (173, 255, 0)),
    ("bar", (0, 255, 153)),
    ("arcade machine", (255, 92, 0)),
    ("hovel, hut, hutch, shack, shanty", (255, 0, 255)),
    ("bus, autobus, coach, charabanc, double-decker, jitney, motorbus, "
     "motorcoach, omnibus, passenger vehicle", (255, 0, 245)),
    ("towel", (255, 0, 102)),
    ("light, light source", (255, 173, 0)),
    ("truck, motortruck", (255, 0, 20)),
    ("tower", (255, 184, 184)),
    ("chandelier, pendant, pendent", (0, 31, 255)),
    ("awning, sunshade, sunblind", (0, 255, 61)),
    ("streetlight, street lamp", (0, 71, 255)),
    ("booth, cubicle, stall, kiosk", (255, 0, 204)),
    ("television receiver, television, television set, tv, tv set, "
     "idiot box, boob tube, telly, goggle box", (0, 255, 194)),
    ("airplane, aeroplane, plane", (0, 255, 82)),
    ("dirt track", (0, 10, 255)),
    ("apparel, wearing apparel, dress, clothes", (0, 112, 255)),
    ("pole", (51, 0, 255)),
    ("land, ground, soil", (0, 194, 255)),
    ("bannister, banister, balustrade, balusters, handrail", (0, 122, 255)),
    ("escalator, moving staircase, moving stairway", (0, 255, 163)),
    ("ottoman, pouf, pouffe, puff, hassock", (255, 153, 0)),
    ("bottle", (0, 255, 10)),
    ("buffet, counter, sideboard", (255, 112, 0)),
    ("poster, posting, placard, notice, bill, card", (143, 255, 0)),
    ("stage", (82, 0, 255)),
    ("van", (163, 255, 0)),
    ("ship", (255, 235, 0)),
    ("fountain", (8, 184, 170)),
    ("conveyer belt, conveyor belt, conveyer, conveyor, transporter",
     (133, 0, 255)),
    ("canopy", (0, 255, 92)),
    ("washer, automatic washer, washing machine", (184, 0, 255)),
    ("plaything, toy", (255, 0, 31)),
    ("swimming pool, swimming bath, natatorium", (0, 184, 255)),
    ("stool", (0, 214, 255)),
    ("barrel, cask", (255, 0, 112)),
    ("basket, handbasket", (92, 255, 0)),
    ("waterfall, falls", (0, 224, 255)),
    ("tent, collapsible shelter", (112, 224, 255)),
    ("bag", (70, 184, 160)),
    ("minibike, motorbike", (163, 0, 255)),
    ("cradle", (153, 0, 255)),
    ("oven", (71, 255, 0)),
    ("ball", (255, 0, 163)),
    ("food, solid food", (255, 204, 0)),
    ("step, stair", (255, 0, 143)),
    ("tank, storage tank", (0, 255, 235)),
    ("trade name, brand name, brand, marque", (133, 255, 0)),
    ("microwave, microwave oven", (255, 0, 235)),
    ("pot, flowerpot", (245, 0, 255)),
    ("animal, animate being, beast, brute, creature, fauna", (255, 0, 122)),
    ("bicycle, bike, wheel, cycle", (255, 245, 0)),
    ("lake", (10, 190, 212)),
    ("dishwasher, dish washer, dishwashing machine", (214, 255, 0)),
    ("screen, silver screen, projection screen", (0, 204, 255)),
    ("blanket, cover", (20, 0, 255)),
    ("sculpture", (255, 255, 0)),
    ("hood, exhaust hood", (0, 153, 255)),
    ("sconce", (0, 41, 255)),
    ("vase", (0, 255, 204)),
    ("traffic light, traffic signal, stoplight", (41, 0, 255)),
    ("tray", (41, 255, 0)),
    ("ashcan, trash can, garbage can, wastebin, ash bin, ash-bin, ashbin, "
     "dustbin, trash barrel, trash bin", (173, 0, 255)),
    ("fan", (0, 245, 255)),
    ("pier, wharf, wharfage, dock", (71, 0, 255)),
    ("crt screen", (122, 0, 255)),
    ("plate", (0, 255, 184)),
    ("monitor, monitoring device", (0, 92, 255)),
    ("bulletin board, notice board", (184, 255, 0)),
    ("shower", (0, 133, 255)),
    ("radiator", (255, 214, 0)),
    ("glass, drinking glass", (25, 194, 194)),
    ("clock", (102, 255, 0)),
    ("flag", (92, 0, 255)),
)
CLASS_NAMES = tuple(name for name, _ in _CLASSES)
PALETTE = tuple(color for _, color in _CLASSES)
NUM_ADE_CLASSES = len(_CLASSES)


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


@convert_lib.register
class ADE20KConverter(convert_lib.Converter):
  """Pairs images/<dir>/X.jpg with annotations/<dir>/X.png."""
  name = "ade20k"
  splits = ("train", "val")
  description = ("ADE20K SceneParsing (ADEChallengeData2016), 150 classes "
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
    self.root = convert_lib.find_root(input_dir, ROOT_NAME)
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
    mapping = {}
    if self.groups is None:
      mapping = {i: i - 1 for i in range(1, NUM_ADE_CLASSES + 1)}
      self._group_ids = None
    else:
      first_id = 1 if unlisted == "background" else 0
      rest = 0 if unlisted == "background" else convert_lib.IGNORE_LABEL
      mapping = {i: rest for i in range(1, NUM_ADE_CLASSES + 1)}
      for output_id, group in enumerate(self.groups, first_id):
        mapping.update({ade_id: output_id for ade_id in group})
      self._group_ids = np.arange(first_id, first_id + len(self.groups))
    self.mapping = mapping
    self._table = convert_lib.lookup_table(mapping, ignore_sources=(0,))
    # A small epsilon keeps e.g. 0.7 * 10 from needing 8 classes.
    self.min_groups = (math.ceil(threshold * len(self.groups) - 1e-9)
                       if self.groups else 0)

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
    image_dir = os.path.join(self.root, "images", _SPLIT_DIRS[split])
    label_dir = os.path.join(self.root, "annotations", _SPLIT_DIRS[split])
    for directory in (image_dir, label_dir):
      if not os.path.isdir(directory):
        raise FileNotFoundError(
            f"missing {directory}; --input_dir should be {ROOT_NAME} (with "
            "images/ and annotations/) or the folder that holds it")
    images = convert_lib.list_files(image_dir)
    labels = convert_lib.list_files(label_dir, (".png",))
    stem = lambda path: os.path.splitext(os.path.basename(path))[0]
    return convert_lib.pair_by_key(
        images, labels, stem, stem,
        expected_label=lambda p: os.path.join(label_dir, stem(p) + ".png"))

  def read_label(self, sample, image_size):
    raw = convert_lib.require_single_channel(
        convert_lib.read_label_array(sample.label_path), sample.label_path,
        "ADE20K annotations are uint8 class ids")
    return convert_lib.apply_lut(
        raw, self._table, sample.label_path,
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
    """The ADE ids behind each output class, so a run can be traced back."""
    if self.groups is None:
      return {}
    names = self.class_names
    label_map = {}
    if self.unlisted == "background":
      listed = {i for group in self.groups for i in group}
      label_map[names[0]] = [i for i in range(1, NUM_ADE_CLASSES + 1)
                             if i not in listed]
      names = names[1:]
    for name, group in zip(names, self.groups):
      label_map[name] = list(group)
    return {"label_map": label_map, "whitelist": self.whitelist,
            "whitelist_threshold": self.whitelist_threshold,
            "unlisted": self.unlisted}
