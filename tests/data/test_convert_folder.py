"""The any-folder converter: index, palette and colour labels, remaps."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data import convert_lib
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


def _one_based_pairs(root, num_classes, count=2):
  """Images and labels holding ids 1..num_classes, LoveDA's layout."""
  (root / "images").mkdir(parents=True)
  (root / "labels").mkdir(parents=True)
  ids = np.arange(1, num_classes + 1, dtype=np.uint8).reshape(1, -1)
  for i in range(count):
    Image.fromarray(np.zeros((1, num_classes, 3), np.uint8)).save(
        root / "images" / f"{i}.png")
    Image.fromarray(ids).save(root / "labels" / f"{i}.png")


_ONE_BASED_HINT = ("ids 1..7 look 1-based: pass --reduce_zero_label if 0 "
                   "means unlabelled, as in LoveDA and ISPRS; if 0 is a class "
                   "too, there are 8 classes")


def test_one_based_labels_say_reduce_zero_label_not_skip(tmp_path):
  # Every file of such a dataset fails: "--on_error skip" would skip them all.
  _one_based_pairs(tmp_path / "src", num_classes=7)
  result = subprocess.run(
      [sys.executable, "-m", "fast_seg.data.convert", "--dataset", "folder",
       "--images_dir", str(tmp_path / "src/images"), "--labels_dir",
       str(tmp_path / "src/labels"), "--num_classes", "7", "--output_dir",
       str(tmp_path / "out"), "--workers", "1", "--noprogress"],
      capture_output=True, text=True, cwd=helpers.REPO_ROOT, timeout=300,
      check=False)
  assert result.returncode == 2, result.stderr
  label = tmp_path / "src/labels/0.png"
  assert result.stderr.splitlines()[-2:] == [
      f"error: {label}: label values [7] out of range (classes 0..6)",
      f"  {_ONE_BASED_HINT}"]
  assert "--on_error skip" not in result.stderr
  # Skipping lists the files, then the fix once.
  converter = folder.FolderConverter(
      str(tmp_path / "src/images"), str(tmp_path / "src/labels"),
      num_classes=7)
  lines = []
  convert.convert(converter, str(tmp_path / "skipped"), on_error="skip",
                  workers=1, progress=False, log=lines.append)
  assert lines.count(f"train: {_ONE_BASED_HINT}") == 1
  # The fix it names converts them.
  converter = folder.FolderConverter(
      str(tmp_path / "src/images"), str(tmp_path / "src/labels"),
      num_classes=7, reduce_zero_label=True)
  _convert(converter, tmp_path / "fixed")
  label = helpers.read_records(str(tmp_path / "fixed/train-*.tfrecord"))["0"][1]
  np.testing.assert_array_equal(label, [list(range(7))])


def test_other_out_of_range_values_keep_the_skip_hint(tmp_path):
  # 8 with 7 classes is not a shift by one: a bad file, skipping is the fix.
  _one_based_pairs(tmp_path, num_classes=7)
  Image.fromarray(np.array([[0, 1, 2, 3, 4, 5, 8]], np.uint8)).save(
      tmp_path / "labels/0.png")
  Image.fromarray(np.array([[0, 1, 2, 3, 4, 5, 6]], np.uint8)).save(
      tmp_path / "labels/1.png")
  converter = folder.FolderConverter(
      str(tmp_path / "images"), str(tmp_path / "labels"), num_classes=7)
  with pytest.raises(convert_lib.ConversionError) as error:
    _convert(converter, tmp_path / "out")
  assert str(error.value) == (
      f"{tmp_path / 'labels/0.png'}: label values [8] out of range (classes "
      "0..6) (--on_error skip skips such files and converts the rest)")
  assert error.value.hint is None


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
