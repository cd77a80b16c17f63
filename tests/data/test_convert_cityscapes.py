"""Tests for the Cityscapes converter on real gtFine frames in the official layout."""

import json
import os
import re
import shutil

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.data.converters import cityscapes
from tests import helpers

_FULL = helpers.SHARED_DATA / "cityscapes"
_SMALL = helpers.SHARED_DATA / "cityscapes_small"
needs_samples = pytest.mark.skipif(
    not (_FULL.is_dir() and _SMALL.is_dir()),
    reason=f"Cityscapes samples not found under {helpers.SHARED_DATA}")

# split -> (shared folder, stems); two full-size frames keep the test fast.
_SAMPLES = {
    "train": (_FULL, ("aachen_000000_000019", "bochum_000000_000313")),
    "val": (_SMALL, ("frankfurt_000000_000294",)),
}
# The brief's copy of cityscapesScripts' table: labelId -> trainId.
_OFFICIAL = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8,
             22: 9, 23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16,
             32: 17, 33: 18}
_QUIET = dict(progress=False, log=lambda line: None)


def _official_train_ids(label_ids):
  table = np.full(256, 255, np.uint8)
  for label_id, train_id in _OFFICIAL.items():
    table[label_id] = train_id
  return table[label_ids]


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _stem_paths(root, split, stem, annotation="gtFine"):
  """(image path, {kind: label path}) in the official layout."""
  city = stem.split("_")[0]
  image = os.path.join(root, "leftImg8bit", split, city,
                       f"{stem}_leftImg8bit.png")
  labels = {kind: os.path.join(root, annotation, split, city,
                               f"{stem}_{annotation}_{kind}.png")
            for kind in ("labelIds", "labelTrainIds")}
  return image, labels


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory):
  """<parent>/cityscapes with the shared frames, plus a test frame labelled 0."""
  if not (_FULL.is_dir() and _SMALL.is_dir()):
    pytest.skip(f"Cityscapes samples not found under {helpers.SHARED_DATA}")
  root = str(tmp_path_factory.mktemp("cs_parent") / "cityscapes")
  for split, (source, stems) in _SAMPLES.items():
    for stem in stems:
      image, labels = _stem_paths(root, split, stem)
      for path, folder in ((image, "images"),
                           (labels["labelIds"], "labels_labelIds"),
                           (labels["labelTrainIds"], "labels")):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(source / folder / f"{stem}.png", path)
  # The official test labels are all labelId 0 'unlabeled'.
  image, labels = _stem_paths(root, "test", "berlin_000000_000019")
  _save(image, np.random.default_rng(0).integers(0, 256, (16, 32, 3)))
  _save(labels["labelIds"], np.zeros((16, 32)))
  return root


def _shipped(split, stem, folder):
  source = _SAMPLES[split][0]
  return np.asarray(Image.open(source / folder / f"{stem}.png"))


def test_class_table_matches_cityscapes_scripts():
  assert len(cityscapes.CLASS_NAMES) == len(cityscapes.PALETTE) == 19
  assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", n)
             for n in cityscapes.CLASS_NAMES)
  assert cityscapes.CLASS_NAMES[6:8] == ("traffic_light", "traffic_sign")
  assert dict(zip(cityscapes.LABEL_IDS, range(19))) == _OFFICIAL
  assert cityscapes.PALETTE[0] == (128, 64, 128)  # road
  assert cityscapes.PALETTE[13] == (0, 0, 142)  # car
  table = cityscapes.label_id_table()
  for label_id in range(34):
    assert table[label_id] == _OFFICIAL.get(label_id, 255), label_id
  assert (table[34:] == -1).all()


@needs_samples
def test_label_ids_are_mapped_with_the_official_table(shared_root, tmp_path):
  converter = cityscapes.CityscapesConverter(shared_root,
                                             label_source="labelIds")
  out = str(tmp_path / "out")
  convert.convert(converter, out, splits=["train", "val"], workers=1, **_QUIET)
  for split, (source, stems) in _SAMPLES.items():
    records = helpers.read_records(os.path.join(out, f"{split}-*.tfrecord"))
    assert sorted(records) == sorted(stems)
    for stem in stems:
      image, label = records[stem]
      np.testing.assert_array_equal(
          image, np.asarray(Image.open(source / "images" / f"{stem}.png")))
      label_ids = _shipped(split, stem, "labels_labelIds")
      np.testing.assert_array_equal(label, _official_train_ids(label_ids))
      # Rendered trainIds differ from mapped labelIds on polygon boundaries.
      agreement = np.mean(label == _shipped(split, stem, "labels"))
      assert agreement >= 0.99, (stem, agreement)
  with open(os.path.join(out, "dataset_info.json")) as f:
    info = json.load(f)
  assert info["num_classes"] == 19
  assert info["ignore_label"] == 255
  assert info["class_names"] == list(cityscapes.CLASS_NAMES)
  assert info["palette"][10] == [70, 130, 180]  # sky
  assert info["num_examples"] == {"train": 2, "val": 1}
  assert info["source_label_ids"] == list(cityscapes.LABEL_IDS)


@needs_samples
def test_auto_uses_train_id_files_and_test_is_all_ignore(shared_root,
                                                          tmp_path):
  # The parent of the root works too; every fine split by default.
  converter = cityscapes.CityscapesConverter(os.path.dirname(shared_root))
  out = str(tmp_path / "out")
  convert.convert(converter, out, workers=2, **_QUIET)
  for split, (_, stems) in _SAMPLES.items():
    records = helpers.read_records(os.path.join(out, f"{split}-*.tfrecord"))
    for stem in stems:
      np.testing.assert_array_equal(records[stem][1],
                                    _shipped(split, stem, "labels"))
  test = helpers.read_records(os.path.join(out, "test-*.tfrecord"))
  assert list(test) == ["berlin_000000_000019"]
  assert (test["berlin_000000_000019"][1] == 255).all()
  with open(os.path.join(out, "dataset_info.json")) as f:
    info = json.load(f)
  assert info["num_examples"] == {"train": 2, "val": 1, "test": 1}


def _tiny_layout(root, stems, kinds=("labelIds",), split="train",
                 annotation="gtFine", value=7):
  for stem in stems:
    image, labels = _stem_paths(root, split, stem, annotation)
    _save(image, np.zeros((4, 6, 3)))
    for kind in kinds:
      _save(labels[kind], np.full((4, 6), value if kind == "labelIds" else 0))
  return root


def test_label_source_picks_the_file_per_image(tmp_path):
  root = str(tmp_path)
  _tiny_layout(root, ["aachen_000000_000019"], ("labelIds", "labelTrainIds"))
  _tiny_layout(root, ["aachen_000001_000019"], ("labelIds",))
  names = {}
  for source in cityscapes.LABEL_SOURCES:
    samples, problems = cityscapes.CityscapesConverter(
        root, label_source=source).list_pairs("train")
    names[source] = ({s.name: os.path.basename(s.label_path) for s in samples},
                     [str(p) for p in problems])
  assert names["auto"] == ({
      "aachen_000000_000019": "aachen_000000_000019_gtFine_labelTrainIds.png",
      "aachen_000001_000019": "aachen_000001_000019_gtFine_labelIds.png"}, [])
  assert names["labelIds"][0] == {
      "aachen_000000_000019": "aachen_000000_000019_gtFine_labelIds.png",
      "aachen_000001_000019": "aachen_000001_000019_gtFine_labelIds.png"}
  forced, problems = names["labelTrainIds"]
  assert list(forced) == ["aachen_000000_000019"]
  assert len(problems) == 1
  assert "aachen_000001_000019_leftImg8bit.png: no label file" in problems[0]
  assert "aachen_000001_000019_gtFine_labelTrainIds.png" in problems[0]


def test_unpaired_files_are_problems(tmp_path):
  root = str(tmp_path)
  _tiny_layout(root, ["aachen_000000_000019"])
  image, _ = _stem_paths(root, "train", "aachen_000001_000019")
  _save(image, np.zeros((4, 6, 3)))
  _, labels = _stem_paths(root, "train", "bremen_000000_000019")
  _save(labels["labelIds"], np.zeros((4, 6)))
  samples, problems = cityscapes.CityscapesConverter(root).list_pairs("train")
  assert [s.name for s in samples] == ["aachen_000000_000019"]
  messages = "\n".join(str(p) for p in problems)
  assert len(problems) == 2
  assert "aachen_000001_000019_leftImg8bit.png: no label file" in messages
  assert "bremen_000000_000019_gtFine_labelIds.png: label without an image" in (
      messages)


def test_label_id_above_33_is_an_error(tmp_path):
  root = str(tmp_path / "cityscapes")
  _tiny_layout(root, ["aachen_000000_000019"])
  _tiny_layout(root, ["aachen_000001_000019"], value=34)
  bad = _stem_paths(root, "train", "aachen_000001_000019")[1]["labelIds"]
  converter = cityscapes.CityscapesConverter(root)
  with pytest.raises(convert_lib.ConversionError, match=re.escape(bad)
                     + r".*\[34\]"):
    convert.convert(converter, str(tmp_path / "fail"), splits=["train"],
                    workers=1, **_QUIET)
  summary = convert.convert(converter, str(tmp_path / "skip"),
                            splits=["train"], workers=1, on_error="skip",
                            **_QUIET)
  assert summary["splits"]["train"]["written"] == 1
  assert summary["splits"]["train"]["skipped"] == 1


def test_coarse_annotations(tmp_path):
  root = str(tmp_path)
  _tiny_layout(root, ["erlangen_000000_000019"], split="train_extra",
               annotation="gtCoarse", value=26)
  converter = cityscapes.CityscapesConverter(root, coarse=True)
  assert converter.splits == ("train", "train_extra", "val")
  samples, problems = converter.list_pairs("train_extra")
  assert not problems
  assert [s.name for s in samples] == ["erlangen_000000_000019"]
  assert samples[0].label_path.endswith("_gtCoarse_labelIds.png")
  label = converter.read_label(samples[0], (4, 6))
  assert (label == 13).all()  # car


def test_bad_arguments(tmp_path):
  with pytest.raises(ValueError, match="label_source"):
    cityscapes.CityscapesConverter(str(tmp_path), label_source="trainIds")
  with pytest.raises(FileNotFoundError, match="leftImg8bit"):
    cityscapes.CityscapesConverter(str(tmp_path))
  _tiny_layout(str(tmp_path), ["aachen_000000_000019"])
  converter = cityscapes.CityscapesConverter(str(tmp_path))
  with pytest.raises(FileNotFoundError, match="--split"):
    converter.list_pairs("val")
  samples, _ = converter.list_pairs("train")
  _save(samples[0].label_path, np.zeros((4, 6, 3)) + [[[1, 2, 3]]])
  with pytest.raises(convert_lib.ConversionError, match="colour"):
    converter.read_label(samples[0], (4, 6))
