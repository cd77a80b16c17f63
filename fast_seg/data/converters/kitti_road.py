"""KITTI road (data_road): road / not road, or the ego lane with --lane.

    data_road/training/image_2/um_000000.png          (um, umm, uu: 289)
    data_road/training/gt_image_2/um_road_000000.png  (all three categories)
    data_road/training/gt_image_2/um_lane_000000.png  (um only: 95)

The ground truth is colour coded as the devkit reads it: valid = R > 0,
road = B > 0, so magenta is road, red is not road and black lies outside the
evaluated area (ignore). `data_road/testing` has no ground truth, so the
only labelled split is train; `--val_fraction` holds part of it out.
"""

import os
import re

from fast_seg.core import standard_fields as fields
from fast_seg.data import convert_lib

ROOT_NAME = "data_road"
# Only urban marked roads come with ego-lane ground truth.
LANE_CATEGORIES = ("um",)
_COLORS = {(255, 0, 255): 1, (255, 0, 0): 0,
           (0, 0, 0): fields.IGNORE_LABEL}
_GT_NAME = re.compile(r"^([a-z]+)_([a-z]+)_(\d+)$")


@convert_lib.register
class KittiRoadConverter(convert_lib.Converter):
  """Pairs image_2/<cat>_<n>.png with gt_image_2/<cat>_{road,lane}_<n>.png."""
  name = "kitti_road"
  splits = ("train",)
  description = ("KITTI road (data_road/training), road vs not road or "
                 "--lane ego lane")
  flags = (convert_lib.INPUT_DIR,
           convert_lib.Flag("bool", "lane", False,
                            "Ego-lane ground truth (um_lane_*) instead of "
                            "road."))

  def __init__(self, input_dir, lane=False):
    self.root = convert_lib.find_root(input_dir, ROOT_NAME)
    self.lane = bool(lane)
    self.kind = "lane" if self.lane else "road"

  @property
  def class_names(self):
    return ["not_lane", "ego_lane"] if self.lane else ["not_road", "road"]

  @property
  def palette(self):
    # The ground truth's own colours.
    return [[255, 0, 0], [255, 0, 255]]

  def list_pairs(self, split):
    if split != "train":
      raise ValueError(f"kitti_road has only the train split, not '{split}' "
                       "(testing has no ground truth)")
    image_dir = os.path.join(self.root, "training", "image_2")
    label_dir = os.path.join(self.root, "training", "gt_image_2")
    for directory in (image_dir, label_dir):
      if not os.path.isdir(directory):
        raise convert_lib.LayoutError(
            f"missing {directory}; --input_dir should be {ROOT_NAME} (with "
            "training/image_2 and training/gt_image_2) or its parent")
    images = convert_lib.list_files(image_dir)
    if self.lane:
      # umm and uu have no lane ground truth: not listed, not reported.
      images = [p for p in images
                if _stem(p).split("_")[0] in LANE_CATEGORIES]
    labels = convert_lib.list_files(label_dir)
    return convert_lib.pair_by_key(
        images, labels, _stem, self._label_key,
        expected_label=lambda p: os.path.join(label_dir,
                                              self._label_name(p)))

  def _label_key(self, path):
    """'um_road_000000' -> 'um_000000'; None for the other kind's files."""
    match = _GT_NAME.match(_stem(path))
    if match is None or match.group(2) not in ("road", "lane"):
      return _stem(path)  # reported as a label without an image
    category, kind, number = match.groups()
    return f"{category}_{number}" if kind == self.kind else None

  def _label_name(self, image_path):
    category, _, number = _stem(image_path).partition("_")
    return f"{category}_{self.kind}_{number}.png"

  def read_label(self, sample, image_size):
    rgb = convert_lib.read_label_array(sample.label_path)
    try:
      return convert_lib.map_colors(rgb, _COLORS, sample.label_path)
    except convert_lib.ConversionError as e:
      raise convert_lib.ConversionError(
          e.path, f"{e.problem}; KITTI road ground truth is magenta "
          "(255, 0, 255) road, red (255, 0, 0) not road and black "
          "(0, 0, 0) invalid") from None


def _stem(path):
  return os.path.splitext(os.path.basename(path))[0]
