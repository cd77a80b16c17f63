"""Tests for the built-in synthetic dataset."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.core import standard_fields
from fast_seg.data import synthetic

_INFO = standard_fields.DatasetInfoFields
_TF = standard_fields.TfExampleFields
_REPO = Path(__file__).resolve().parents[2]


def _split(num_images=12, size=48, seed=0):
  return list(synthetic.generate_split(num_images, size, seed))


def test_class_tables_agree():
  assert synthetic.CLASS_NAMES[0] == "background"
  assert len(synthetic.CLASS_NAMES) == len(synthetic.PALETTE)
  assert synthetic.NUM_CLASSES == len(synthetic.CLASS_NAMES) >= 5
  assert len(set(synthetic.PALETTE)) == len(synthetic.PALETTE)


def test_shapes_and_dtypes():
  pairs = _split(num_images=3, size=(40, 56))
  assert len(pairs) == 3
  for image, label in pairs:
    assert image.shape == (40, 56, 3) and image.dtype == np.uint8
    assert label.shape == (40, 56) and label.dtype == np.uint8


def test_same_seed_gives_identical_data_and_other_seed_differs():
  first, second, other = _split(seed=3), _split(seed=3), _split(seed=4)
  for (a_image, a_label), (b_image, b_label) in zip(first, second):
    np.testing.assert_array_equal(a_image, b_image)
    np.testing.assert_array_equal(a_label, b_label)
  assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_every_class_appears_and_labels_are_class_ids():
  labels = np.stack([label for _, label in _split()])
  present = np.unique(labels)
  np.testing.assert_array_equal(present, np.arange(synthetic.NUM_CLASSES))


def test_shapes_have_their_class_colour_family():
  # Mean colour of each class should be nearest to its own palette entry,
  # which is what makes the data learnable.
  pairs = _split(num_images=20, size=64)
  images = np.stack([i for i, _ in pairs]).reshape(-1, 3).astype(float)
  labels = np.stack([l for _, l in pairs]).ravel()
  palette = np.asarray(synthetic.PALETTE, float)
  for class_id in range(1, synthetic.NUM_CLASSES):
    mean = images[labels == class_id].mean(axis=0)
    nearest = np.argmin(np.linalg.norm(palette[1:] - mean, axis=1)) + 1
    assert nearest == class_id, (synthetic.CLASS_NAMES[class_id], mean)


def _read_dir(directory):
  return {name: (Path(directory) / name).read_bytes()
          for name in sorted(os.listdir(directory))}


def test_write_dataset_is_deterministic_and_described(tmp_path):
  kwargs = dict(num_train=6, num_val=3, size=32, seed=1, num_shards=2)
  summary = synthetic.write_dataset(str(tmp_path / "a"), **kwargs)
  synthetic.write_dataset(str(tmp_path / "b"), **kwargs)
  files_a, files_b = _read_dir(tmp_path / "a"), _read_dir(tmp_path / "b")
  assert sorted(files_a) == [
      "dataset_info.json", "train-00000-of-00002.tfrecord",
      "train-00001-of-00002.tfrecord", "val-00000-of-00002.tfrecord",
      "val-00001-of-00002.tfrecord"]
  assert files_a == files_b

  info = json.loads(files_a[_INFO.file_name])
  assert info[_INFO.num_classes] == synthetic.NUM_CLASSES
  assert info[_INFO.ignore_label] == 255
  assert info[_INFO.class_names] == list(synthetic.CLASS_NAMES)
  assert info[_INFO.palette] == [list(c) for c in synthetic.PALETTE]
  assert info[_INFO.num_examples] == {"train": 6, "val": 3}
  for split in ("train", "val"):
    freq = info[_INFO.class_pixel_frequency][split]
    assert len(freq) == synthetic.NUM_CLASSES
    assert abs(sum(freq) - 1.0) < 1e-4
  assert summary[_INFO.num_examples] == {"train": 6, "val": 3}
  assert len(summary["files"]["train"]) == 2

  records = list(tf.data.TFRecordDataset(summary["files"]["train"]))
  assert len(records) == 6
  example = tf.train.Example.FromString(records[0].numpy())
  feature = example.features.feature
  assert feature[_TF.image_format].bytes_list.value == [b"png"]
  assert feature[_TF.height].int64_list.value == [32]

  # Train and val come from different streams of the seed.
  c = synthetic.write_dataset(str(tmp_path / "c"), num_train=3, num_val=3,
                              size=32, seed=1, num_shards=1)
  train, val = (Path(c["files"][s][0]).read_bytes() for s in ("train", "val"))
  assert train != val


def test_rewrite_with_fewer_shards_removes_stale_shards(tmp_path):
  synthetic.write_dataset(str(tmp_path), num_train=4, num_val=2, size=16,
                          num_shards=3)
  synthetic.write_dataset(str(tmp_path), num_train=4, num_val=2, size=16,
                          num_shards=1)
  assert sorted(p.name for p in tmp_path.glob("*.tfrecord")) == [
      "train-00000-of-00001.tfrecord", "val-00000-of-00001.tfrecord"]


def test_bad_arguments():
  with pytest.raises(ValueError, match="8x8"):
    next(synthetic.generate_split(1, 4))
  with pytest.raises(ValueError, match="num_train"):
    synthetic.write_dataset("/nonexistent", num_train=-1)


def test_command_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "fast_seg.data.synthetic",
       f"--output_dir={tmp_path}", "--num_train=2", "--num_val=1",
       "--size=16", "--num_shards=1"],
      cwd=_REPO, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr[-2000:]
  assert (tmp_path / "dataset_info.json").exists()
  assert (tmp_path / "train-00000-of-00001.tfrecord").exists()
