"""Broken TFRecords are named: the shard, the record, the image."""

import shutil

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.data import tf_example

FIELD = "train_input_reader"


def _shards(tiny_dataset, folder):
  folder.mkdir()
  for path in sorted(tiny_dataset.glob("train-*.tfrecord")):
    shutil.copy(path, folder)
  return sorted(folder.glob("*.tfrecord"))


def _problem(folder):
  return tf_example.find_input_problem([str(folder / "*.tfrecord")], FIELD)


def test_good_shards_have_no_problem(tiny_dataset, tmp_path):
  _shards(tiny_dataset, tmp_path / "good")
  assert _problem(tmp_path / "good") is None


def test_truncated_shard_is_named(tiny_dataset, tmp_path):
  shards = _shards(tiny_dataset, tmp_path / "t")
  data = shards[1].read_bytes()
  shards[1].write_bytes(data[:len(data) // 2])
  problem = _problem(tmp_path / "t")
  assert problem.startswith(f"{FIELD}: {shards[1]} is a damaged TFRecord file")
  assert "good records" in problem


def test_random_bytes_shard_is_named(tiny_dataset, tmp_path):
  shards = _shards(tiny_dataset, tmp_path / "r")
  shards[0].write_bytes(np.random.default_rng(0).bytes(500))
  assert f"{shards[0]} is a damaged TFRecord file" in _problem(tmp_path / "r")


def test_empty_input_names_the_glob(tmp_path):
  (tmp_path / "e").mkdir()
  (tmp_path / "e" / "train-00000-of-00001.tfrecord").write_bytes(b"")
  problem = _problem(tmp_path / "e")
  assert problem == (f"{FIELD}: the input is empty: {tmp_path / 'e' / '*.tfrecord'} "
                     "matched 1 file(s) holding no record")


def _write(path, records):
  with tf.io.TFRecordWriter(str(path)) as writer:
    for record in records:
      writer.write(record)


def test_undecodable_jpeg_names_the_record_and_image(tmp_path):
  (tmp_path / "j").mkdir()
  label = tf_example.encode_png(np.zeros((8, 8), np.uint8))
  good = tf_example.make_example(tf_example.encode_png(np.zeros((8, 8, 3), np.uint8)),
                                 label, "good.png", 8, 8)
  bad = tf_example.make_example(b"\xff\xd8\xff\xe0 not a jpeg", label, "street_01.jpg",
                                8, 8, image_format="jpeg")
  path = tmp_path / "j" / "train-00000-of-00001.tfrecord"
  _write(path, [good.SerializeToString(), bad.SerializeToString()])
  problem = _problem(tmp_path / "j")
  assert problem.startswith(f"{FIELD}: {path}, record 1: the image cannot be decoded "
                            "(image street_01.jpg)")


def test_record_that_is_not_an_example(tmp_path):
  (tmp_path / "n").mkdir()
  path = tmp_path / "n" / "train-00000-of-00001.tfrecord"
  _write(path, [b"\x96\x00\xff" * 30])
  assert _problem(tmp_path / "n") == (
      f"{FIELD}: {path}, record 0: not a tf.train.Example (is this a TFRecord of "
      "another kind?)")
