"""Tests for fast_seg.data.tf_example."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fast_seg.core import standard_fields
from fast_seg.data import tf_example

_TF = standard_fields.TfExampleFields


def _decode(data):
  return np.asarray(Image.open(io.BytesIO(data)))


def test_encode_png_is_lossless_for_rgb_and_labels():
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
  label = rng.integers(0, 256, size=(5, 7), dtype=np.uint8)
  np.testing.assert_array_equal(_decode(tf_example.encode_png(image)), image)
  np.testing.assert_array_equal(_decode(tf_example.encode_png(label)), label)
  # [H, W, 1] is written as a single-channel PNG too.
  decoded = _decode(tf_example.encode_png(label[..., None]))
  assert decoded.ndim == 2
  np.testing.assert_array_equal(decoded, label)


def test_encode_jpeg_keeps_size_and_approximate_values():
  image = np.full((16, 16, 3), 100, np.uint8)
  data = tf_example.encode_jpeg(image, quality=95)
  assert data[:2] == b"\xff\xd8"
  decoded = _decode(data)
  assert decoded.shape == (16, 16, 3)
  assert np.abs(decoded.astype(int) - 100).max() <= 2


@pytest.mark.parametrize("array", [
    np.zeros((4, 4), np.float32),
    np.zeros((4, 4, 2), np.uint8),
    np.zeros((4,), np.uint8),
])
def test_encode_png_rejects_bad_arrays(array):
  with pytest.raises(ValueError):
    tf_example.encode_png(array)


def test_make_example_has_the_deeplab_keys():
  example = tf_example.make_example(
      b"IMG", b"LBL", "a/b.png", height=3, width=4, image_format="jpeg")
  feature = example.features.feature
  assert feature[_TF.image_encoded].bytes_list.value == [b"IMG"]
  assert feature[_TF.label_encoded].bytes_list.value == [b"LBL"]
  assert feature[_TF.image_filename].bytes_list.value == [b"a/b.png"]
  assert feature[_TF.image_format].bytes_list.value == [b"jpeg"]
  assert feature[_TF.label_format].bytes_list.value == [b"png"]
  assert feature[_TF.height].int64_list.value == [3]
  assert feature[_TF.width].int64_list.value == [4]
  assert feature[_TF.channels].int64_list.value == [3]


def _names_in(path):
  names = []
  for record in tf.data.TFRecordDataset(path):
    example = tf.train.Example.FromString(record.numpy())
    names.append(
        example.features.feature[_TF.image_filename].bytes_list.value[0])
  return names


def test_write_sharded_names_and_round_robin(tmp_path):
  examples = (tf_example.make_example(b"i", b"l", f"{i}.png", 1, 1)
              for i in range(5))
  out = str(tmp_path / "out")
  paths = tf_example.write_sharded(examples, out, "train", num_shards=2)
  assert [os.path.basename(p) for p in paths] == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  assert _names_in(paths[0]) == [b"0.png", b"2.png", b"4.png"]
  assert _names_in(paths[1]) == [b"1.png", b"3.png"]


def test_write_sharded_accepts_serialized_examples(tmp_path):
  serialized = [tf_example.make_example(b"i", b"l", "x.png", 1, 1)
                .SerializeToString()]
  paths = tf_example.write_sharded(serialized, str(tmp_path), "val", 1)
  assert [os.path.basename(p) for p in paths] == [
      "val-00000-of-00001.tfrecord"]
  assert _names_in(paths[0]) == [b"x.png"]


def test_write_sharded_rejects_zero_shards(tmp_path):
  with pytest.raises(ValueError, match="num_shards"):
    tf_example.write_sharded([], str(tmp_path), "train", 0)


def test_split_of_shard_reads_what_shard_path_writes():
  path = tf_example.shard_path("/data/x", "train_aug", 3, 12)
  assert tf_example.split_of_shard(path) == "train_aug"
  assert tf_example.split_of_shard("/data/x/train.record") is None


def _record(image, label_png, name="a.png"):
  return tf_example.make_example(
      tf_example.encode_png(image), label_png, name, image.shape[0],
      image.shape[1]).SerializeToString()


def test_readers_decode_what_make_example_writes():
  rng = np.random.default_rng(1)
  image = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
  label = rng.integers(0, 4, (5, 7), dtype=np.uint8)
  record = _record(image, tf_example.encode_png(label))
  fields, decoded_image, decoded_label = tf_example.decode_example(record)
  np.testing.assert_array_equal(decoded_image, image)
  np.testing.assert_array_equal(decoded_label, label[..., None])
  assert fields[_TF.image_format] == b"png"
  decoded = tf_example.decode_checked(
      tf.constant(record), tf.constant("f.tfrecord"), 4, 255)
  np.testing.assert_array_equal(decoded[1].numpy(), label[..., None])
  assert decoded[3].numpy() == b"f.tfrecord: image file a.png"
  assert tf_example.filename_of(record) == "a.png"
  assert tf_example.record_problem(record) is None


def test_decode_example_names_a_missing_key_and_a_record_without_name():
  record = _record(np.zeros((2, 2, 3), np.uint8), b"")
  with pytest.raises(ValueError, match=f"record has no {_TF.label_encoded}"):
    tf_example.decode_example(record)
  assert (tf_example.filename_of(b"not a tf.train.Example")
          == tf_example.UNNAMED_IMAGE)
