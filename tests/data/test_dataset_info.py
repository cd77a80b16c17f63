"""dataset_info.json: validation, lookup beside a glob, split counts."""

import json

import pytest

from fast_seg.data import dataset_info
from fast_seg.data import synthetic
from fast_seg.protos import input_reader_pb2
from tests import helpers


def _info(**overrides):
  info = {"num_classes": 2, "ignore_label": 255, "class_names": ["a", "b"],
          "palette": [[0, 0, 0], [255, 0, 0]],
          "num_examples": {"train": 7, "val": 3},
          "file_patterns": {"train": "train-*.tfrecord",
                            "val": "val-*.tfrecord"}}
  info.update(overrides)
  return info


def test_write_load_and_find(tmp_path):
  path = dataset_info.write(str(tmp_path), _info())
  assert dataset_info.load(str(tmp_path)) == _info()
  assert dataset_info.find(f"{tmp_path}/val-*.tfrecord") == path
  assert dataset_info.find(f"{tmp_path}/sub/val-*.tfrecord") is None
  assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("overrides, message", [
    ({"class_names": ["a"]}, "class_names has 1 entries; num_classes is 2"),
    ({"palette": [[0, 0, 0], [256, 0, 0]]}, "palette entries"),
    ({"num_classes": 0}, "positive int"),
])
def test_invalid_files_name_the_problem(tmp_path, overrides, message):
  (tmp_path / "dataset_info.json").write_text(json.dumps(_info(**overrides)))
  with pytest.raises(ValueError, match=message):
    dataset_info.load(str(tmp_path / "dataset_info.json"))


def test_check_model_names_the_field_and_file():
  with pytest.raises(ValueError, match=r"model.icnet.num_classes is 3 but "
                     r"x.json describes 2 classes \(a, b\)"):
    dataset_info.check_model(_info(), 3, 255, "x.json", "model.icnet")
  with pytest.raises(ValueError, match="ignore_label is 0"):
    dataset_info.check_model(_info(), 2, 0, "x.json", "model.icnet")
  dataset_info.check_model(_info(), 2, 255, "x.json", "model.icnet")


def test_num_examples_for_split_globs():
  assert dataset_info.num_examples_for(_info(), ["d/val-*.tfrecord"]) == 3
  assert dataset_info.num_examples_for(
      _info(), ["d/train-*.tfrecord", "d/val-*.tfrecord"]) == 10
  assert dataset_info.num_examples_for(_info(), ["d/val-0000*.tfrecord"]) is None


def test_override_globs_by_split_and_by_pattern(tmp_path):
  synthetic.write_dataset(str(tmp_path), num_train=3, num_val=2, size=16,
                          num_shards=1)
  reader = input_reader_pb2.InputReader(
      tf_record_input_path=[f"{tmp_path}/train-*.tfrecord"])
  lines = dataset_info.override_globs(reader, "eval_input_reader", split="val")
  assert list(reader.tf_record_input_path) == [f"{tmp_path}/val-*.tfrecord"]
  assert lines == ["eval_input_reader reads:",
                   f"  {tmp_path}/val-*.tfrecord: 1 file, 2 examples"]
  lines = dataset_info.override_globs(
      reader, "train_input_reader", input_pattern=[f"{tmp_path}/*.tfrecord", "nope/*"])
  assert lines[1:] == [f"  {tmp_path}/*.tfrecord: 2 files", "  nope/*: 0 files"]
  unchanged = dataset_info.override_globs(reader, "train_input_reader")
  assert list(reader.tf_record_input_path) == [f"{tmp_path}/*.tfrecord", "nope/*"]
  assert len(unchanged) == 3


def test_an_unknown_split_lists_the_datasets(tmp_path):
  synthetic.write_dataset(str(tmp_path), num_train=2, num_val=1, size=16,
                          num_shards=1)
  reader = input_reader_pb2.InputReader(
      tf_record_input_path=[f"{tmp_path}/train-*.tfrecord"])
  with pytest.raises(ValueError, match="--split test is not a split of .*; "
                     "its splits: train, val"):
    dataset_info.override_globs(reader, "eval_input_reader", split="test")
  reader.tf_record_input_path[:] = ["elsewhere/x-*.tfrecord"]
  with pytest.raises(ValueError, match="needs the dataset_info.json"):
    dataset_info.override_globs(reader, "eval_input_reader", split="val")


def test_largest_image_size_over_the_splits_a_reader_reads():
  info = _info(image_sizes={"train": {"360x480": 5, "512x256": 2},
                            "val": {"720x960": 3}})
  assert dataset_info.largest_image_size(info, ["d/train-*.tfrecord"]) == (512, 480)
  assert dataset_info.largest_image_size(
      info, ["d/train-*.tfrecord", "d/val-*.tfrecord"]) == (720, 960)
  # A custom glob, or an info without sizes: unknown, so nothing is checked.
  assert dataset_info.largest_image_size(info, ["d/val-0000*.tfrecord"]) is None
  assert dataset_info.largest_image_size(_info(), ["d/val-*.tfrecord"]) is None


def test_synthetic_data_records_its_image_sizes(tmp_path):
  synthetic.write_dataset(str(tmp_path), num_train=2, num_val=1, size=32)
  info = dataset_info.load(str(tmp_path / "dataset_info.json"))
  assert info["image_sizes"] == {"train": {"32x32": 2}, "val": {"32x32": 1}}


def test_splits_without_labels_by_the_converters_counts():
  info = _info(class_pixel_frequency={"train": [0.7, 0.3], "val": [0.0, 0.0]})
  assert dataset_info.splits_without_labels(info, ["d/val-*.tfrecord"]) == ["val"]
  assert dataset_info.splits_without_labels(
      info, ["d/train-*.tfrecord", "d/val-*.tfrecord"]) == ["val"]
  assert dataset_info.splits_without_labels(info, ["d/train-*.tfrecord"]) == []
  # Unknown: a custom glob, or no frequencies (an older converter).
  assert dataset_info.splits_without_labels(info, ["d/val-0*.tfrecord"]) == []
  assert dataset_info.splits_without_labels(_info(), ["d/val-*.tfrecord"]) == []


def test_a_zero_byte_file_among_the_shards_is_named(tmp_path):
  synthetic.write_dataset(str(tmp_path), num_train=3, num_val=2, size=16,
                          num_shards=1)
  empty = tmp_path / "train-00001-of-00001.tfrecord"
  empty.write_bytes(b"")
  glob = f"{tmp_path}/train-*.tfrecord"
  assert dataset_info.describe_globs([glob]) == [
      f"  {glob}: 2 files (1 of them empty), 3 examples"]
  reader = input_reader_pb2.InputReader(tf_record_input_path=[glob])
  with pytest.raises(ValueError) as error:
    dataset_info.load_for_reader(reader, helpers.model_config(num_classes=6),
                                 "train_input_reader")
  assert str(error.value) == (
      f"train_input_reader.tf_record_input_path: {empty} is empty (0 bytes, "
      f"no record) among the 2 files of '{glob}'; copy or convert it again, "
      "or remove it")
