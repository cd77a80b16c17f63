"""PASCAL VOC 2012 segmentation: 21 classes, the 255 boundary band ignored.

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png   palette PNG, index = id
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

train has 1464 images, val 1449, trainval 2913. With --sbd_dir (the
Semantic Boundaries Dataset, benchmark_RELEASE/dataset/{cls/<id>.mat,
train.txt, val.txt}) there is also train_aug, the 10582-image training set
of DeepLab and most VOC papers: SBD train + SBD val + VOC train, minus VOC
val so that val stays unseen. An image with a VOC SegmentationClass label
keeps it (it has the boundary band and finer outlines); the others take the
SBD .mat label.
"""

import os

import numpy as np

from fast_seg.core import standard_fields as fields
from fast_seg.data import convert_lib
from fast_seg.utils import image_files
from fast_seg.utils import visualization

CLASS_NAMES = ("background", "aeroplane", "bicycle", "bird", "boat",
               "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep",
               "sofa", "train", "tvmonitor")
VOC_SPLITS = ("train", "val", "trainval")
AUG_SPLIT = "train_aug"
# The VOC colour map (bit-interleaved ids); index 255, the boundary band, is
# (224, 224, 192).
_COLORMAP = visualization.voc_colormap(256)
PALETTE = tuple(tuple(int(v) for v in c) for c in _COLORMAP[:len(CLASS_NAMES)])
BOUNDARY_COLOR = tuple(int(v) for v in _COLORMAP[fields.IGNORE_LABEL])
# Images are JPEG in the release; other formats are accepted after it.
_IMAGE_EXTENSIONS = (".jpg",) + tuple(
    e for e in image_files.IMAGE_EXTENSIONS if e != ".jpg")
_MEANING = "VOC ids are 0..20 and 255 = boundary"


@convert_lib.register
class PascalVOCConverter(convert_lib.Converter):
  """Reads the split lists; labels are SegmentationClass PNGs or SBD .mat."""
  name = "voc2012"
  splits = VOC_SPLITS
  description = ("PASCAL VOC 2012 (VOCdevkit/VOC2012), 21 classes; "
                 "train_aug with --sbd_dir")
  flags = (convert_lib.INPUT_DIR,
           convert_lib.Flag("string", "sbd_dir", None,
                            "SBD root (dataset/cls/*.mat, train.txt, val.txt) "
                            "for the train_aug split."))
  fixed_class_names = CLASS_NAMES
  fixed_palette = PALETTE

  def __init__(self, input_dir, sbd_dir=None):
    root = convert_lib.find_root(
        convert_lib.find_root(input_dir, "VOCdevkit"), "VOC2012")
    if not os.path.isdir(os.path.join(root, "JPEGImages")):
      raise convert_lib.LayoutError(
          f"--input_dir {input_dir} has no JPEGImages/ folder; expected "
          "VOC2012 (JPEGImages/, SegmentationClass/, ImageSets/), VOCdevkit "
          "or its parent")
    self.root = root
    self.sbd_root = None
    if sbd_dir:
      sbd = convert_lib.find_root(
          convert_lib.find_root(sbd_dir, "benchmark_RELEASE", "--sbd_dir"),
          "dataset", "--sbd_dir")
      if not os.path.isdir(os.path.join(sbd, "cls")):
        raise convert_lib.LayoutError(
            f"--sbd_dir {sbd_dir} has no cls/ folder; expected SBD's dataset/ "
            "(cls/<id>.mat, train.txt, val.txt) or its parent")
      self.sbd_root = sbd
      self.splits = VOC_SPLITS + (AUG_SPLIT,)
    self._table = convert_lib.lookup_table(
        {i: i for i in range(len(CLASS_NAMES))},
        ignore_sources=(fields.IGNORE_LABEL,))
    self._color_to_id = {c: i for i, c in enumerate(PALETTE)}
    self._color_to_id[BOUNDARY_COLOR] = fields.IGNORE_LABEL

  def _list(self, split):
    path = os.path.join(self.root, "ImageSets", "Segmentation", split + ".txt")
    # First token: the Main/ lists' "<id> <flag>" format reads the same.
    return [line.split()[0] for line in convert_lib.read_list(path)]

  def _sbd_list(self, split):
    return [line.split()[0] for line in convert_lib.read_list(
        os.path.join(self.sbd_root, split + ".txt"))]

  def _image_path(self, image_id):
    folders = [os.path.join(self.root, "JPEGImages")]
    if self.sbd_root:
      folders.append(os.path.join(self.sbd_root, "img"))
    for folder in folders:
      for ext in _IMAGE_EXTENSIONS:
        path = os.path.join(folder, image_id + ext)
        if os.path.isfile(path):
          return path
    return None

  def list_pairs(self, split):
    if split == AUG_SPLIT:
      if not self.sbd_root:
        raise ValueError(f"{AUG_SPLIT} needs --sbd_dir")
      val = set(self._list("val"))
      ids = sorted(set(self._sbd_list("train") + self._sbd_list("val")
                       + self._list("train")) - val)
    else:
      ids = sorted(set(self._list(split)))
    voc_labels = os.path.join(self.root, "SegmentationClass")
    samples, problems = [], []
    for image_id in ids:
      image = self._image_path(image_id)
      if image is None:
        problems.append(convert_lib.Problem(
            os.path.join(self.root, "JPEGImages", image_id + ".jpg"),
            f"image listed in the {split} split is missing"))
        continue
      label = os.path.join(voc_labels, image_id + ".png")
      if not os.path.isfile(label) and split == AUG_SPLIT:
        label = os.path.join(self.sbd_root, "cls", image_id + ".mat")
      if not os.path.isfile(label):
        problems.append(convert_lib.Problem(
            image, f"no label file (expected {label})"))
        continue
      samples.append(convert_lib.Sample(image_id, image, label))
    return samples, problems

  def read_label(self, sample, image_size):
    path = sample.label_path
    if path.endswith(".mat"):
      raw = _read_sbd_mat(path)
    else:
      raw = convert_lib.read_label_array(path)
      if raw.ndim == 3:  # a colour rendering instead of the palette PNG
        raw = convert_lib.map_colors(raw[..., :3], self._color_to_id, path)
    return convert_lib.apply_lut(raw, self._table, path, _MEANING)


def _read_sbd_mat(path):
  """The class map of an SBD cls/<id>.mat (struct GTcls, field Segmentation)."""
  # Imported here: scipy.io costs ~0.25 s and only train_aug needs it.
  import scipy.io  # optional: only SBD .mat labels need scipy
  try:
    segmentation = scipy.io.loadmat(path)["GTcls"][0]["Segmentation"][0]
  except (OSError, ValueError, KeyError, IndexError, TypeError,
          scipy.io.matlab.MatReadError) as e:
    raise convert_lib.ConversionError(
        path, f"not an SBD cls file with GTcls.Segmentation ({e})") from None
  segmentation = np.asarray(segmentation)
  if (segmentation.ndim != 2 or segmentation.dtype.kind not in "ui"
      or (segmentation.size and segmentation.min() < 0)):
    raise convert_lib.ConversionError(
        path, f"GTcls.Segmentation is {segmentation.dtype} "
        f"{segmentation.shape}; expected a 2-D class map of ids >= 0")
  return segmentation
