"""Tests for fast_seg.builders.input_reader_builder."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from PIL import Image

from fast_seg.builders import input_reader_builder
from fast_seg.core import standard_fields
from fast_seg.data import tf_example
from fast_seg.protos import input_reader_pb2
from fast_seg.protos import preprocessor_pb2
from fast_seg.utils import cli

_IN = standard_fields.InputFields
_TF = standard_fields.TfExampleFields
IGNORE = 255
NUM_CLASSES = 4
CAMVID_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / (
    "camvid")


def _reader(*globs, **fields):
  config = input_reader_pb2.InputReader(tf_record_input_path=list(globs))
  for name, value in fields.items():
    setattr(config, name, value)
  return config


def _steps(*texts):
  return [text_format.Parse(t, preprocessor_pb2.PreprocessingStep())
          for t in texts]


def _random_pair(rng, height, width, num_classes=NUM_CLASSES):
  image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
  label = rng.integers(0, num_classes, size=(height, width), dtype=np.uint8)
  return image, label


def _write(path, pairs, names=None):
  """Writes (image, label) pairs as PNG examples into one TFRecord file."""
  with tf.io.TFRecordWriter(str(path)) as writer:
    for i, (image, label) in enumerate(pairs):
      name = names[i] if names else f"img_{i}.png"
      example = tf_example.make_example(
          tf_example.encode_png(image), tf_example.encode_png(label), name,
          image.shape[0], image.shape[1])
      writer.write(example.SerializeToString())
  return str(path)


def _build(config, **kwargs):
  defaults = dict(is_training=False, batch_size=1, num_classes=NUM_CLASSES,
                  ignore_label=IGNORE, field_name="eval_input_reader")
  defaults.update(kwargs)
  return input_reader_builder.build(config, **defaults)


def test_eval_reads_back_exact_pixels_in_file_order(tmp_path):
  rng = np.random.default_rng(0)
  first = [_random_pair(rng, 5, 7), _random_pair(rng, 6, 4)]
  second = [_random_pair(rng, 3, 3)]
  _write(tmp_path / "val-00000-of-00002.tfrecord", first, ["a.png", "b.png"])
  _write(tmp_path / "val-00001-of-00002.tfrecord", second, ["c.png"])
  dataset = _build(_reader(str(tmp_path / "val-*.tfrecord")))
  batches = list(dataset)
  assert len(batches) == 3
  for batch, (image, label), name in zip(batches, first + second,
                                         [b"a.png", b"b.png", b"c.png"]):
    assert batch[_IN.image].dtype == tf.float32
    assert batch[_IN.label].dtype == tf.int32
    assert batch[_IN.original_size].dtype == tf.int32
    np.testing.assert_array_equal(batch[_IN.image][0], image.astype(np.float32))
    np.testing.assert_array_equal(batch[_IN.label][0, ..., 0], label)
    np.testing.assert_array_equal(batch[_IN.original_size][0], image.shape[:2])
    assert batch[_IN.filename].numpy().tolist() == [name]


def test_training_batches_have_static_shapes(tmp_path):
  rng = np.random.default_rng(1)
  path = _write(tmp_path / "train.tfrecord",
                [_random_pair(rng, 9 + i, 11 - i) for i in range(3)])
  dataset = _build(
      _reader(path, shuffle_buffer_size=4, num_parallel_calls=2),
      is_training=True, batch_size=2, field_name="train_input_reader",
      augmentations=_steps(
          "random_scale { min_scale_ratio: 0.8 max_scale_ratio: 1.2 }",
          "random_crop { crop_height: 8 crop_width: 10 }",
          "random_horizontal_flip {}", "color_jitter {}"))
  spec = dataset.element_spec
  assert spec[_IN.image].shape.as_list() == [2, 8, 10, 3]
  assert spec[_IN.label].shape.as_list() == [2, 8, 10, 1]
  assert spec[_IN.original_size].shape.as_list() == [2, 2]
  assert spec[_IN.filename].shape.as_list() == [2]
  # Repeats forever: more batches than examples.
  for batch in dataset.take(5):
    image, label = batch[_IN.image].numpy(), batch[_IN.label].numpy()
    assert 0.0 <= image.min() and image.max() <= 255.0
    assert set(np.unique(label)) <= set(range(NUM_CLASSES)) | {IGNORE}


def test_training_without_augmentation_at_batch_size_one(tmp_path):
  rng = np.random.default_rng(2)
  path = _write(tmp_path / "t.tfrecord", [_random_pair(rng, 4, 5)])
  dataset = _build(_reader(path, shuffle=False), is_training=True,
                   batch_size=1, field_name="train_input_reader")
  batch = next(iter(dataset))
  assert batch[_IN.image].shape == (1, 4, 5, 3)


def test_eval_padded_batches_pad_labels_with_ignore(tmp_path):
  rng = np.random.default_rng(3)
  pairs = [_random_pair(rng, 5, 6), _random_pair(rng, 7, 4),
           _random_pair(rng, 3, 3)]
  path = _write(tmp_path / "val.tfrecord", pairs)
  dataset = _build(_reader(path), batch_size=2, padded_size=(8, 8))
  assert dataset.element_spec[_IN.image].shape.as_list() == [None, 8, 8, 3]
  batches = list(dataset)
  assert [b[_IN.image].shape[0] for b in batches] == [2, 1]  # nothing dropped
  images = np.concatenate([b[_IN.image] for b in batches])
  labels = np.concatenate([b[_IN.label] for b in batches])[..., 0]
  sizes = np.concatenate([b[_IN.original_size] for b in batches])
  for (image, label), out_image, out_label, size in zip(
      pairs, images, labels, sizes):
    height, width = label.shape
    np.testing.assert_array_equal(size, [height, width])
    np.testing.assert_array_equal(out_label[:height, :width], label)
    np.testing.assert_array_equal(out_image[:height, :width], image)
    np.testing.assert_array_equal(out_label[height:], IGNORE)
    np.testing.assert_array_equal(out_label[:, width:], IGNORE)
    np.testing.assert_array_equal(out_image[height:], 127.5)


def test_eval_padded_size_too_small_names_the_file_and_the_fields(tmp_path):
  rng = np.random.default_rng(4)
  path = _write(tmp_path / "val.tfrecord", [_random_pair(rng, 9, 4)],
                ["big.png"])
  dataset = _build(_reader(path), batch_size=1, padded_size=(8, 8))
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    list(dataset)
  message = error.value.message
  assert "val.tfrecord" in message and "big.png" in message
  assert "eval_config.padded_height/padded_width" in message
  assert "9x4" in message
  # What the user reads: one line, without TensorFlow's wrapping.
  assert cli.short_message(error.value) == (
      f"{path}: image file big.png is 9x4 (HxW), larger than the padded size "
      "8x8; raise eval_config.padded_height/padded_width")


def test_no_glob_or_empty_glob_names_the_field(tmp_path):
  with pytest.raises(ValueError,
                     match=r"train_input_reader\.tf_record_input_path"):
    _build(_reader(), is_training=True, field_name="train_input_reader")
  glob = str(tmp_path / "nothing-*.tfrecord")
  with pytest.raises(ValueError) as error:
    _build(_reader(glob), is_training=True, field_name="train_input_reader")
  assert "train_input_reader.tf_record_input_path" in str(error.value)
  assert glob in str(error.value)


def test_globs_are_expanded_sorted_and_deduplicated(tmp_path):
  for name in ("b.tfrecord", "a.tfrecord"):
    (tmp_path / name).write_bytes(b"")
  paths = tf_example.expand_input_paths(
      [str(tmp_path / "*.tfrecord"), str(tmp_path / "a.tfrecord")], "f")
  assert paths == [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord")]


def test_record_without_segmentation_keys_names_file_and_key(tmp_path):
  path = str(tmp_path / "detection.tfrecord")
  example = tf.train.Example(features=tf.train.Features(feature={
      _TF.image_encoded: tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[tf_example.encode_png(np.zeros((2, 2, 3), np.uint8))])),
  }))
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(example.SerializeToString())
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    list(_build(_reader(path)))
  message = error.value.message
  assert path in message
  assert _TF.label_encoded in message
  assert "not a segmentation TFRecord" in message


def test_label_of_another_size_names_the_file_and_sizes(tmp_path):
  rng = np.random.default_rng(5)
  image, _ = _random_pair(rng, 5, 6)
  _, label = _random_pair(rng, 4, 6)
  path = _write(tmp_path / "bad.tfrecord", [(image, label)], ["x.png"])
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    list(_build(_reader(path)))
  message = error.value.message
  assert "bad.tfrecord" in message and "x.png" in message
  assert "4x6" in message and "5x6" in message


def test_label_out_of_range_names_the_value(tmp_path):
  rng = np.random.default_rng(6)
  image, label = _random_pair(rng, 5, 6)
  label[2, 3] = 9
  label[0, 0] = IGNORE  # allowed
  path = _write(tmp_path / "range.tfrecord", [(image, label)], ["y.png"])
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    list(_build(_reader(path)))
  message = error.value.message
  assert "y.png" in message and "label value 9" in message


def test_ignore_label_values_are_accepted(tmp_path):
  rng = np.random.default_rng(7)
  image, label = _random_pair(rng, 5, 6)
  label[:2] = IGNORE
  path = _write(tmp_path / "ok.tfrecord", [(image, label)])
  batch = next(iter(_build(_reader(path))))
  np.testing.assert_array_equal(batch[_IN.label][0, ..., 0], label)


def test_jpeg_images_decode(tmp_path):
  image = np.full((6, 5, 3), 90, np.uint8)
  label = np.ones((6, 5), np.uint8)
  path = str(tmp_path / "jpeg.tfrecord")
  example = tf_example.make_example(
      tf_example.encode_jpeg(image), tf_example.encode_png(label), "j.jpg",
      6, 5, image_format="jpeg")
  with tf.io.TFRecordWriter(path) as writer:
    writer.write(example.SerializeToString())
  batch = next(iter(_build(_reader(path))))
  assert batch[_IN.image].shape == (1, 6, 5, 3)
  assert np.abs(batch[_IN.image].numpy() - 90).max() <= 2


@pytest.mark.parametrize("kwargs, match", [
    (dict(is_training=True, batch_size=2, field_name="train_input_reader"),
     "random_crop or fixed_resize"),
    (dict(is_training=True, batch_size=2, field_name="train_input_reader",
          augmentations=_steps("random_crop { crop_height: 4 crop_width: 4 }",
                               "random_scale {}")),
     "random_crop or fixed_resize"),
    (dict(is_training=False, batch_size=2), r"eval_input_reader\.batch_size"),
    (dict(is_training=False, batch_size=1, padded_size=(0, 8)),
     "padded_height"),
    (dict(is_training=True, batch_size=0, field_name="train_input_reader"),
     r"train_config\.batch_size"),
])
def test_bad_settings_raise_value_error(tmp_path, kwargs, match):
  path = _write(tmp_path / "x.tfrecord",
                [_random_pair(np.random.default_rng(8), 4, 4)])
  with pytest.raises(ValueError, match=match):
    _build(_reader(path), **kwargs)


def test_bad_reader_fields_and_proto_type(tmp_path):
  path = _write(tmp_path / "x.tfrecord",
                [_random_pair(np.random.default_rng(9), 4, 4)])
  with pytest.raises(ValueError, match=r"eval_input_reader\.num_parallel_reads"):
    _build(_reader(path, num_parallel_reads=0))
  with pytest.raises(ValueError, match=r"eval_input_reader\.num_parallel_calls"):
    _build(_reader(path, num_parallel_calls=-2))
  with pytest.raises(ValueError, match="InputReader"):
    _build(preprocessor_pb2.PreprocessingStep())
  with pytest.raises(TypeError, match="PreprocessingStep protos"):
    _build(_reader(path), augmentations=[lambda image, label: (image, label)])


def test_camvid_samples_through_the_pipeline(tmp_path):
  if not (CAMVID_DIR / "train.txt").exists():
    pytest.skip(f"CamVid sample data not found at {CAMVID_DIR.resolve()} "
                "(../shared/data/camvid relative to the repository)")
  names = (CAMVID_DIR / "train.txt").read_text().split()[:3]
  examples = []
  for name in names:
    image_bytes = (CAMVID_DIR / "images" / f"{name}.jpg").read_bytes()
    label_bytes = (CAMVID_DIR / "labels" / f"{name}.png").read_bytes()
    with Image.open(CAMVID_DIR / "labels" / f"{name}.png") as label:
      width, height = label.size
    examples.append(tf_example.make_example(
        image_bytes, label_bytes, f"{name}.jpg", height, width, "jpeg"))
  tf_example.write_sharded(examples, str(tmp_path), "train", num_shards=2)
  # CamVid: 11 classes, void = 11 is the ignore label.
  dataset = input_reader_builder.build(
      _reader(str(tmp_path / "train-*.tfrecord"), shuffle_buffer_size=3),
      is_training=True, batch_size=2, num_classes=11, ignore_label=11,
      augmentations=_steps(
          "random_scale { min_scale_ratio: 0.5 max_scale_ratio: 1.0 "
          "scale_step: 0.25 }",
          "random_crop { crop_height: 256 crop_width: 320 }",
          "random_horizontal_flip {}", "color_jitter {}"))
  for batch in dataset.take(3):
    assert batch[_IN.image].shape == (2, 256, 320, 3)
    assert batch[_IN.label].shape == (2, 256, 320, 1)
    labels = batch[_IN.label].numpy()
    assert set(np.unique(labels)) <= set(range(12))
    assert len(np.unique(labels)) > 3  # real content, not just padding
    np.testing.assert_array_equal(batch[_IN.original_size], [[360, 480]] * 2)
    image = batch[_IN.image].numpy()
    assert 0.0 <= image.min() and image.max() <= 255.0


def _examples(dataset):
  return [(b[_IN.filename].numpy().tolist(), b[_IN.image].numpy(),
           b[_IN.label].numpy(), b[_IN.original_size].numpy())
          for b in dataset]


def _assert_same_examples(got, expected):
  assert len(got) == len(expected)
  for a, b in zip(got, expected):
    assert a[0] == b[0]
    for x, y in zip(a[1:], b[1:]):
      np.testing.assert_array_equal(x, y)


def test_cache_keeps_the_first_pass_and_changes_nothing_else(tmp_path):
  rng = np.random.default_rng(10)
  path = tmp_path / "val.tfrecord"
  _write(path, [_random_pair(rng, 5, 7), _random_pair(rng, 6, 4)])
  steps = _steps("fixed_resize { height: 4 width: 4 }")
  cached = _build(_reader(str(path), cache=True), augmentations=steps)
  plain = _build(_reader(str(path)), augmentations=steps)
  first = _examples(cached)
  _assert_same_examples(first, _examples(plain))
  _assert_same_examples(_examples(cached), first)
  # New file contents: the uncached reader sees them, the cached one still
  # serves the decoded first pass.
  _write(path, [_random_pair(rng, 5, 7), _random_pair(rng, 6, 4)])
  _assert_same_examples(_examples(cached), first)
  assert not np.array_equal(_examples(plain)[0][1], first[0][1])


def test_cache_in_training_keeps_augmentation_random(tmp_path):
  rng = np.random.default_rng(11)
  image, label = _random_pair(rng, 4, 6)
  path = _write(tmp_path / "t.tfrecord", [(image, label)])
  dataset = _build(_reader(path, cache=True, shuffle_buffer_size=2),
                   is_training=True, batch_size=1,
                   field_name="train_input_reader",
                   augmentations=_steps("random_horizontal_flip {}"))
  seen = set()
  for batch in dataset.take(30):  # repeats: one example, 30 epochs
    got = batch[_IN.image][0].numpy()
    if np.array_equal(got, image):
      seen.add("as is")
    else:
      np.testing.assert_array_equal(got, image[:, ::-1])
      seen.add("flipped")
  assert seen == {"as is", "flipped"}
