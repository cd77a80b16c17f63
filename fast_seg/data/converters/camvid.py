"""CamVid, 11 classes, void (11) -> ignore, in either of two layouts.

The SegNet tutorial's folders:

    CamVid/train/*.png  CamVid/trainannot/*.png   (367)
    CamVid/val/*.png    CamVid/valannot/*.png     (101)
    CamVid/test/*.png   CamVid/testannot/*.png    (233)

or one folder of images and one of labels with a list per split (how many
copies of CamVid are shared, ../shared/data/camvid among them):

    images/<name>.png|jpg  labels/<name>.png  train.txt val.txt test.txt

A list line is a name, or SegNet's "<image path> <label path>" pair (the
image's file name then gives the name).

Labels are single-channel ids 0..10 plus 11 for void (SegNet trains with
`ignore_label: 11`); void becomes 255 so it is ignored like everywhere else.
"""

import os

from fast_seg.data import convert_lib

CLASS_NAMES = ("sky", "building", "pole", "road", "pavement", "tree",
               "sign_symbol", "fence", "car", "pedestrian", "bicyclist")
# The SegNet tutorial's camvid11 colours.
PALETTE = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
           (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
           (64, 0, 128), (64, 64, 0), (0, 128, 192))
VOID_ID = 11


@convert_lib.register
class CamVidConverter(convert_lib.Converter):
  """Pairs `<split>/X.png` with `<split>annot/X.png`, or by the split lists."""
  name = "camvid"
  splits = ("train", "val", "test")
  description = (
      "CamVid, 11 classes: SegNet layout (train/ trainannot/ ...) or "
      "images/ + labels/ + train.txt / val.txt / test.txt")
  flags = (convert_lib.INPUT_DIR,)
  fixed_class_names = CLASS_NAMES
  fixed_palette = PALETTE

  def __init__(self, input_dir):
    self.root = convert_lib.find_root(input_dir, "CamVid")
    self._table = convert_lib.lookup_table(
        {i: i for i in range(len(CLASS_NAMES))}, ignore_sources=(VOID_ID,))

  def list_pairs(self, split):
    if self._has_split_lists():
      return self._list_pairs_from_list(split)
    image_dir = os.path.join(self.root, split)
    label_dir = os.path.join(self.root, split + "annot")
    images = convert_lib.list_files(image_dir)
    labels = convert_lib.list_files(label_dir)
    stem = lambda path: os.path.splitext(os.path.basename(path))[0]
    return convert_lib.pair_by_key(
        images, labels, stem, stem,
        expected_label=lambda p: os.path.join(label_dir, stem(p) + ".png"))

  def _has_split_lists(self):
    return (os.path.isdir(os.path.join(self.root, "images"))
            and os.path.isdir(os.path.join(self.root, "labels"))
            and not os.path.isdir(os.path.join(self.root, "train")))

  def _list_pairs_from_list(self, split):
    image_dir = os.path.join(self.root, "images")
    label_dir = os.path.join(self.root, "labels")
    stem = lambda path: os.path.splitext(os.path.basename(path))[0]
    samples, problems = convert_lib.pair_by_key(
        convert_lib.list_files(image_dir), convert_lib.list_files(label_dir),
        stem, stem,
        expected_label=lambda p: os.path.join(label_dir, stem(p) + ".png"))
    return convert_lib.keep_listed(samples, problems,
                                   os.path.join(self.root, f"{split}.txt"))

  def read_label(self, sample, image_size):
    raw = convert_lib.require_single_channel(
        convert_lib.read_label_array(sample.label_path), sample.label_path)
    return convert_lib.apply_lut(raw, self._table, sample.label_path,
                                 "CamVid ids are 0..10 and 11 = void")
