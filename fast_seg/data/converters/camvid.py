"""CamVid in the SegNet layout: 11 classes, void (11) -> ignore.

    CamVid/train/*.png  CamVid/trainannot/*.png   (367)
    CamVid/val/*.png    CamVid/valannot/*.png     (101)
    CamVid/test/*.png   CamVid/testannot/*.png    (233)

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


class CamVidConverter(convert_lib.Converter):
  """Pairs `<split>/X.png` with `<split>annot/X.png`."""
  name = "camvid"
  splits = ("train", "val", "test")
  description = "CamVid, SegNet layout (train/ trainannot/ ...), 11 classes"
  flag_names = ("input_dir",)
  fixed_class_names = CLASS_NAMES
  fixed_palette = PALETTE

  def __init__(self, input_dir):
    self.root = convert_lib.find_root(input_dir, "CamVid")
    self._table = convert_lib.lookup_table(
        {i: i for i in range(len(CLASS_NAMES))}, ignore_sources=(VOID_ID,))

  def list_pairs(self, split):
    image_dir = os.path.join(self.root, split)
    label_dir = os.path.join(self.root, split + "annot")
    images = convert_lib.list_files(image_dir)
    labels = convert_lib.list_files(label_dir)
    stem = lambda path: os.path.splitext(os.path.basename(path))[0]
    return convert_lib.pair_by_key(
        images, labels, stem, stem,
        expected_label=lambda p: os.path.join(label_dir, stem(p) + ".png"))

  def read_label(self, sample, image_size):
    raw = convert_lib.require_single_channel(
        convert_lib.read_label_array(sample.label_path), sample.label_path)
    return convert_lib.apply_lut(raw, self._table, sample.label_path,
                                 "CamVid ids are 0..10 and 11 = void")
