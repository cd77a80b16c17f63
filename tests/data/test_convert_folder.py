"""The any-folder converter: index, palette and colour labels, remaps."""

import json

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data.converters import folder
from tests import helpers


def _convert(converter, out, **kwargs):
  return convert.convert(converter, str(out), workers=1, progress=False,
                         log=lambda line: None, **kwargs)


def test_palette_labels_give_their_indices(tmp_path):
  (tmp_path / "images/sub").mkdir(parents=True)
  (tmp_path / "labels/sub").mkdir(parents=True)
  ids = np.array([[0, 1, 2], [2, 255, 0]], np.uint8)
  Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(
      tmp_path / "images/sub/a.jpg")
  label = Image.fromarray(ids, mode="P")
  label.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [9] * (253 * 3))
  label.save(tmp_path / "labels/sub/a_mask.png")
  converter = folder.FolderConverter(
      str(tmp_path / "images"), str(tmp_path / "labels"), label_suffix="_mask",
      class_names=["bg", "x", "y"])
  _convert(converter, tmp_path / "out")
  records = helpers.read_records(str(tmp_path / "out/train-*.tfrecord"))
  np.testing.assert_array_equal(records["sub/a"][1], ids)


def test_color_map_labels(tmp_path):
  (tmp_path / "images").mkdir()
  (tmp_path / "labels").mkdir()
  colors = {"sky": [70, 130, 180], "road": [128, 64, 128],
            "ignore": [[0, 0, 0], [255, 255, 255]]}
  (tmp_path / "colors.json").write_text(json.dumps(colors))
  rgb = np.array([[[70, 130, 180], [128, 64, 128]],
                  [[0, 0, 0], [255, 255, 255]]], np.uint8)
  Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tmp_path / "images/a.png")
  Image.fromarray(rgb).save(tmp_path / "labels/a.png")
  converter = folder.FolderConverter(
      str(tmp_path / "images"), str(tmp_path / "labels"),
      color_map=str(tmp_path / "colors.json"))
  assert converter.class_names == ["sky", "road"]
  assert converter.palette == [[70, 130, 180], [128, 64, 128]]
  _convert(converter, tmp_path / "out")
  label = helpers.read_records(str(tmp_path / "out/train-*.tfrecord"))["a"][1]
  np.testing.assert_array_equal(label, [[0, 1], [255, 255]])
  # A colour outside the map is an error that shows it.
  rgb[0, 0] = (1, 2, 3)
  Image.fromarray(rgb).save(tmp_path / "labels/a.png")
  summary = _convert(converter, tmp_path / "out2", on_error="skip")
  assert "colour(s) not in the colour map: (1, 2, 3)" in (
      summary["splits"]["train"]["problems"][0])


def test_ignore_value_and_reduce_zero_label(tmp_path):
  (tmp_path / "images").mkdir()
  (tmp_path / "labels").mkdir()
  Image.fromarray(np.zeros((1, 4, 3), np.uint8)).save(tmp_path / "images/a.png")
  Image.fromarray(np.array([[0, 1, 2, 9]], np.uint8)).save(
      tmp_path / "labels/a.png")
  ignore_nine = folder.FolderConverter(
      str(tmp_path / "images"), str(tmp_path / "labels"), num_classes=3,
      ignore_value=9)
  _convert(ignore_nine, tmp_path / "out1")
  label = helpers.read_records(str(tmp_path / "out1/train-*.tfrecord"))["a"][1]
  np.testing.assert_array_equal(label, [[0, 1, 2, 255]])
  reduce_zero = folder.FolderConverter(
      str(tmp_path / "images"), str(tmp_path / "labels"), num_classes=9,
      reduce_zero_label=True)
  _convert(reduce_zero, tmp_path / "out2")
  label = helpers.read_records(str(tmp_path / "out2/train-*.tfrecord"))["a"][1]
  np.testing.assert_array_equal(label, [[255, 0, 1, 8]])


def test_bad_options_name_the_flag(tmp_path):
  (tmp_path / "images").mkdir()
  (tmp_path / "labels").mkdir()
  images, labels = str(tmp_path / "images"), str(tmp_path / "labels")
  with pytest.raises(ValueError, match="--class_names, --num_classes or "
                     "--color_map"):
    folder.FolderConverter(images, labels)
  with pytest.raises(ValueError, match="--ignore_value 1 is a class id"):
    folder.FolderConverter(images, labels, num_classes=3, ignore_value=1)
  with pytest.raises(FileNotFoundError, match="--labels_dir"):
    folder.FolderConverter(images, str(tmp_path / "nope"), num_classes=3)
  (tmp_path / "bad.json").write_text('{"a": [1, 2]}')
  with pytest.raises(ValueError, match="'a' must be"):
    folder.FolderConverter(images, labels, color_map=str(tmp_path / "bad.json"))


@pytest.mark.skipif(not (helpers.SHARED_DATA / "loveda").is_dir(),
                    reason="real LoveDA samples not in ../shared/data")
def test_loveda_with_reduce_zero_label(tmp_path):
  source = helpers.SHARED_DATA / "loveda"
  names = ["background", "building", "road", "water", "barren", "forest",
           "agriculture"]
  converter = folder.FolderConverter(
      str(source / "images"), str(source / "labels"), class_names=names,
      reduce_zero_label=True)
  _convert(converter, tmp_path / "out", val_fraction=0.34, seed=0)
  records = {**helpers.read_records(str(tmp_path / "out/train-*.tfrecord")),
             **helpers.read_records(str(tmp_path / "out/val-*.tfrecord"))}
  assert len(records) == len(list((source / "labels").iterdir()))
  for name, (_, label) in records.items():
    raw = np.asarray(Image.open(source / "labels" / f"{name}.png")).astype(int)
    np.testing.assert_array_equal(label, np.where(raw == 0, 255, raw - 1))


def _pairs(root, names):
  """Images and index labels under root/images and root/labels; the label
  of image i holds the value i everywhere, to tell them apart."""
  for i, name in enumerate(names):
    for folder_name in ("images", "labels"):
      (root / folder_name / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((2, 2, 3), 10 * i, np.uint8)).save(
        root / "images" / f"{name}.jpg")
    Image.fromarray(np.full((2, 2), i, np.uint8)).save(
        root / "labels" / f"{name}.png")


def test_split_lists_make_the_splits(tmp_path):
  _pairs(tmp_path, ["a", "b", "sub/c", "d"])
  # A name, a relative path with extension, SegNet's pair of full paths.
  (tmp_path / "train.txt").write_text(
      "a\nsub/c.jpg\n\n/data/set/images/b.jpg /data/set/labels/b.png\n")
  (tmp_path / "val.txt").write_text("d\n")
  converter = folder.FolderConverter(
      str(tmp_path / "images"), str(tmp_path / "labels"), num_classes=4,
      train_list=str(tmp_path / "train.txt"), val_list=str(tmp_path / "val.txt"))
  assert converter.splits == ("train", "val")
  _convert(converter, tmp_path / "out")
  train = helpers.read_records(str(tmp_path / "out/train-*.tfrecord"))
  val = helpers.read_records(str(tmp_path / "out/val-*.tfrecord"))
  assert sorted(train) == ["a", "b", "sub/c"] and sorted(val) == ["d"]
  assert {name: int(label[0, 0]) for name, (_, label) in train.items()} == {
      "a": 0, "b": 1, "sub/c": 2}


def test_split_list_typo_is_reported_not_lost(tmp_path):
  _pairs(tmp_path, ["a", "b"])
  (tmp_path / "train.txt").write_text("a\nbb\n")
  converter = folder.FolderConverter(
      str(tmp_path / "images"), str(tmp_path / "labels"), num_classes=2,
      train_list=str(tmp_path / "train.txt"))
  summary = _convert(converter, tmp_path / "out", on_error="skip")
  (problem,) = summary["splits"]["train"]["problems"]
  assert "train.txt" in problem and "lists 'bb' but no image" in problem
  with pytest.raises(FileNotFoundError, match="--val_list file not found"):
    folder.FolderConverter(str(tmp_path / "images"), str(tmp_path / "labels"),
                           num_classes=2, val_list=str(tmp_path / "nope.txt"))
