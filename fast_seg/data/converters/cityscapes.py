"""Cityscapes in its official layout: 19 trainId classes, the rest ignored.

    <root>/leftImg8bit/<split>/<city>/<stem>_leftImg8bit.png
    <root>/gtFine/<split>/<city>/<stem>_gtFine_labelIds.png
    <root>/gtFine/<split>/<city>/<stem>_gtFine_labelTrainIds.png  (optional)
    <root>/gtCoarse/<split>/<city>/<stem>_gtCoarse_labelIds.png    (--coarse)

Fine splits are train (2975), val (500) and test (1525); coarse splits are
train, train_extra (19998) and val. The official test labels are all
'unlabeled', so test converts to all-ignore labels: fine for producing
predictions for the evaluation server, useless for local metrics.

The converter maps the 34 labelIds to trainIds itself with the table of
cityscapesScripts' labels.py, so running createTrainIdLabelImgs.py first is
not needed. When that script's *_labelTrainIds.png files are there,
`--label_source auto` prefers them: they are rendered from the polygons and
differ from the mapped labelIds on a few boundary pixels (~0.5%), and using
them matches what most published Cityscapes numbers trained on.
"""

import os

from fast_seg.core import standard_fields as fields
from fast_seg.data import convert_lib

LABEL_SOURCES = ("auto", "labelIds", "labelTrainIds")
FINE_SPLITS = ("train", "val", "test")
COARSE_SPLITS = ("train", "train_extra", "val")

# In trainId order: (name, Cityscapes labelId, colour), from cityscapesScripts
# labels.py. Every other labelId in 0..33 is void or ignored in evaluation
# (e.g. 0 unlabeled, 6 ground, 9 parking, 29 caravan, 30 trailer).
CLASSES = (
    ("road", 7, (128, 64, 128)),
    ("sidewalk", 8, (244, 35, 232)),
    ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)),
    ("fence", 13, (190, 153, 153)),
    ("pole", 17, (153, 153, 153)),
    ("traffic_light", 19, (250, 170, 30)),
    ("traffic_sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)),
    ("terrain", 22, (152, 251, 152)),
    ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)),
    ("rider", 25, (255, 0, 0)),
    ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)),
    ("bus", 28, (0, 60, 100)),
    ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)),
    ("bicycle", 33, (119, 11, 32)),
)
CLASS_NAMES = tuple(name for name, _, _ in CLASSES)
LABEL_IDS = tuple(label_id for _, label_id, _ in CLASSES)
PALETTE = tuple(color for _, _, color in CLASSES)
# labelIds 0..33 appear in the PNGs (-1, license plate, is never drawn).
NUM_LABEL_IDS = 34

_IMAGE_SUFFIX = "_leftImg8bit"


def label_id_table():
  """LUT labelId -> trainId: the 19 classes, 255 for other ids, -1 past 33."""
  train_ids = {label_id: i for i, label_id in enumerate(LABEL_IDS)}
  return convert_lib.lookup_table(
      train_ids, ignore_sources=[i for i in range(NUM_LABEL_IDS)
                                 if i not in train_ids])


@convert_lib.register
class CityscapesConverter(convert_lib.Converter):
  """Pairs leftImg8bit images with gtFine (or gtCoarse) labels by file stem."""
  name = "cityscapes"
  splits = FINE_SPLITS
  description = ("Cityscapes, official layout (leftImg8bit/, gtFine/ or "
                 "gtCoarse/), 19 classes")
  flags = (convert_lib.INPUT_DIR,
           convert_lib.Flag("enum", "label_source", "auto",
                            "auto uses *_labelTrainIds.png when present, "
                            "else maps *_labelIds.png to trainIds.",
                            LABEL_SOURCES),
           convert_lib.Flag("bool", "coarse", False,
                            "Use the coarse annotations (gtCoarse, splits "
                            "train, train_extra, val)."))
  fixed_class_names = CLASS_NAMES
  fixed_palette = PALETTE

  def __init__(self, input_dir, label_source="auto", coarse=False):
    if label_source not in LABEL_SOURCES:
      raise ValueError(f"--label_source must be one of {LABEL_SOURCES}, got "
                       f"'{label_source}'")
    convert_lib.require_dir(input_dir, "--input_dir")
    # The root holds leftImg8bit/; a parent holding cityscapes/ is fine too.
    root = input_dir
    if not os.path.isdir(os.path.join(root, "leftImg8bit")):
      root = convert_lib.find_root(input_dir, "cityscapes")
    if not os.path.isdir(os.path.join(root, "leftImg8bit")):
      raise convert_lib.LayoutError(
          f"--input_dir {input_dir} has no leftImg8bit/ folder; expected the "
          "Cityscapes root (leftImg8bit/<split>/<city>/, gtFine/<split>/"
          "<city>/) or its parent")
    self.root = root
    self.label_source = label_source
    self.annotation = "gtCoarse" if coarse else "gtFine"
    self.splits = COARSE_SPLITS if coarse else FINE_SPLITS
    self._tables = {
        "labelIds": (label_id_table(), "Cityscapes labelIds are 0..33"),
        "labelTrainIds": (
            convert_lib.lookup_table({i: i for i in range(len(CLASSES))},
                                     ignore_sources=(fields.IGNORE_LABEL,)),
            "labelTrainIds are 0..18 and 255"),
    }

  def extra_info(self):
    # Predictions go back to labelIds for the official evaluation server.
    return {"annotations": self.annotation,
            "source_label_ids": list(LABEL_IDS)}

  def _suffix(self, kind):
    return f"_{self.annotation}_{kind}"

  def list_pairs(self, split):
    image_dir = os.path.join(self.root, "leftImg8bit", split)
    label_dir = os.path.join(self.root, self.annotation, split)
    for directory in (image_dir, label_dir):
      if not os.path.isdir(directory):
        raise convert_lib.LayoutError(
            f"missing {directory} (Cityscapes {split} split); pass --split "
            "with the splits you have")
    images = convert_lib.list_files(image_dir, (".png",), recursive=True)
    found = convert_lib.list_files(label_dir, (".png",), recursive=True)
    by_kind = {kind: [p for p in found
                      if p.endswith(self._suffix(kind) + ".png")]
               for kind in ("labelIds", "labelTrainIds")}
    label_key = lambda p: convert_lib.strip_suffix(
        p, (self._suffix("labelTrainIds"), self._suffix("labelIds")))
    if self.label_source == "auto":
      # Per image: the trainIds file when there is one, else the labelIds.
      rendered = {label_key(p) for p in by_kind["labelTrainIds"]}
      labels = by_kind["labelTrainIds"] + [
          p for p in by_kind["labelIds"] if label_key(p) not in rendered]
      expected_kind = "labelIds"
    else:
      labels = by_kind[self.label_source]
      expected_kind = self.label_source
    image_key = lambda p: convert_lib.strip_suffix(p, (_IMAGE_SUFFIX,))

    def expected_label(image_path):
      city = os.path.basename(os.path.dirname(image_path))
      return os.path.join(label_dir, city, image_key(image_path)
                          + self._suffix(expected_kind) + ".png")

    return convert_lib.pair_by_key(images, labels, image_key, label_key,
                                   expected_label=expected_label)

  def read_label(self, sample, image_size):
    path = sample.label_path
    raw = convert_lib.require_single_channel(
        convert_lib.read_label_array(path), path,
        hint="use *_labelIds.png or *_labelTrainIds.png, not *_color.png")
    kind = ("labelTrainIds"
            if path.endswith(self._suffix("labelTrainIds") + ".png")
            else "labelIds")
    table, meaning = self._tables[kind]
    return convert_lib.apply_lut(raw, table, path, meaning)
