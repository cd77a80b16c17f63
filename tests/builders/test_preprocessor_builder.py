"""Tests for fast_seg.builders.preprocessor_builder."""

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format

from fast_seg.builders import preprocessor_builder
from fast_seg.protos import input_reader_pb2
from fast_seg.protos import preprocessor_pb2

IGNORE = 255


def _step(text):
  return text_format.Parse(text, preprocessor_pb2.PreprocessingStep())


def _steps(*texts):
  return [_step(t) for t in texts]


def _pair(height=6, width=8):
  index = np.arange(height * width, dtype=np.int32).reshape(height, width, 1)
  image = np.concatenate([index] * 3, axis=-1).astype(np.float32)
  return tf.constant(image), tf.constant(index)


@pytest.mark.parametrize("text", [
    "random_scale {}",
    "random_horizontal_flip {}",
    "color_jitter {}",
])
def test_defaults_build_and_run(text):
  fn = preprocessor_builder.build(_step(text), IGNORE)
  image, label = fn(*_pair())
  assert image.dtype == tf.float32 and label.dtype == tf.int32
  assert image.shape[-1] == 3 and label.shape[-1] == 1


def test_default_values_come_from_the_proto():
  step = _step("random_scale {}").random_scale
  assert (step.min_scale_ratio, step.max_scale_ratio, step.scale_step) == (
      0.5, 2.0, 0.0)
  assert _step("random_horizontal_flip {}").random_horizontal_flip \
      .probability == 0.5


def test_random_crop_non_defaults():
  fn = preprocessor_builder.build(
      _step("random_crop { crop_height: 10 crop_width: 12 }"), IGNORE)
  image, label = fn(*_pair(6, 8))
  assert image.shape == (10, 12, 3) and label.shape == (10, 12, 1)
  np.testing.assert_array_equal(label.numpy()[6:], IGNORE)
  np.testing.assert_array_equal(image.numpy()[:, 8:], 127.5)


def test_random_crop_uses_the_given_ignore_label():
  fn = preprocessor_builder.build(
      _step("random_crop { crop_height: 7 crop_width: 8 }"), ignore_label=11)
  _, label = fn(*_pair(6, 8))
  np.testing.assert_array_equal(label.numpy()[6:], 11)


def test_flip_non_default_probability():
  fn = preprocessor_builder.build(
      _step("random_horizontal_flip { probability: 1.0 }"), IGNORE)
  image, label = _pair()
  out_image, out_label = fn(image, label)
  np.testing.assert_array_equal(out_image, image.numpy()[:, ::-1])
  np.testing.assert_array_equal(out_label, label.numpy()[:, ::-1])


def test_fixed_resize_and_fixed_scale():
  fn = preprocessor_builder.build(
      _step("fixed_resize { height: 3 width: 4 }"), IGNORE)
  image, label = fn(*_pair(6, 8))
  assert image.shape == (3, 4, 3) and label.shape == (3, 4, 1)
  fn = preprocessor_builder.build(
      _step("random_scale { min_scale_ratio: 0.5 max_scale_ratio: 0.5 }"),
      IGNORE)
  image, label = fn(*_pair(6, 8))
  assert image.shape == (3, 4, 3) and label.shape == (3, 4, 1)


def test_color_jitter_leaves_the_label_alone():
  fn = preprocessor_builder.build(
      _step("color_jitter { brightness_delta: 0.3 hue_delta: 0.0 }"), IGNORE)
  image, label = _pair()
  _, out_label = fn(image, label)
  np.testing.assert_array_equal(out_label, label)


def test_empty_oneof_names_the_field_and_the_choices():
  with pytest.raises(ValueError) as error:
    preprocessor_builder.build(preprocessor_pb2.PreprocessingStep(), IGNORE)
  message = str(error.value)
  assert "preprocessing_step" in message
  assert "train_config.data_augmentation_options" in message
  for name in ("random_scale", "random_crop", "random_horizontal_flip",
               "fixed_resize", "color_jitter"):
    assert name in message


def test_wrong_proto_type():
  with pytest.raises(ValueError, match="PreprocessingStep"):
    preprocessor_builder.build(input_reader_pb2.InputReader(), IGNORE)


@pytest.mark.parametrize("text, field", [
    ("random_scale { min_scale_ratio: 2.0 max_scale_ratio: 1.0 }",
     "random_scale.max_scale_ratio"),
    ("random_scale { min_scale_ratio: 0.0 }", "random_scale.min_scale_ratio"),
    ("random_scale { scale_step: -0.1 }", "random_scale.scale_step"),
    ("random_crop { crop_width: 8 }", "random_crop.crop_height"),
    ("random_crop { crop_height: 8 crop_width: -1 }",
     "random_crop.crop_width"),
    ("random_horizontal_flip { probability: 1.5 }",
     "random_horizontal_flip.probability"),
    ("random_horizontal_flip { probability: -0.1 }",
     "random_horizontal_flip.probability"),
    ("fixed_resize { height: 4 }", "fixed_resize.width"),
    ("color_jitter { brightness_delta: -0.1 }",
     "color_jitter.brightness_delta"),
    ("color_jitter { contrast_range: 1.5 }", "color_jitter.contrast_range"),
    ("color_jitter { hue_delta: 0.6 }", "color_jitter.hue_delta"),
])
def test_bad_values_name_the_field(text, field):
  with pytest.raises(ValueError, match=field.replace(".", r"\.")):
    preprocessor_builder.build(_step(text), IGNORE)


def test_build_sequence_applies_in_order_and_names_the_index():
  fn = preprocessor_builder.build_sequence(_steps(
      "random_scale { min_scale_ratio: 2.0 max_scale_ratio: 2.0 }",
      "random_crop { crop_height: 5 crop_width: 5 }",
      "random_horizontal_flip {}"), IGNORE)
  image, label = fn(*_pair(6, 8))
  assert image.shape == (5, 5, 3) and label.shape == (5, 5, 1)
  identity = preprocessor_builder.build_sequence([], IGNORE)
  image, label = _pair()
  assert identity(image, label) == (image, label)
  with pytest.raises(ValueError,
                     match=r"data_augmentation_options\[1\]\.random_crop"):
    preprocessor_builder.build_sequence(
        _steps("random_horizontal_flip {}", "random_crop {}"), IGNORE)


@pytest.mark.parametrize("texts, size", [
    ((), None),
    (("random_horizontal_flip {}",), None),
    (("random_crop { crop_height: 4 crop_width: 5 }",), (4, 5)),
    (("random_crop { crop_height: 4 crop_width: 5 }",
      "random_horizontal_flip {}", "color_jitter {}"), (4, 5)),
    (("random_crop { crop_height: 4 crop_width: 5 }", "random_scale {}"),
     None),
    (("random_scale {}", "fixed_resize { height: 6 width: 7 }"), (6, 7)),
    (("fixed_resize { height: 6 width: 7 }",
      "random_crop { crop_height: 4 crop_width: 5 }"), (4, 5)),
])
def test_fixed_output_size(texts, size):
  steps = _steps(*texts)
  assert preprocessor_builder.fixed_output_size(steps) == size
  assert preprocessor_builder.ends_with_fixed_size(steps) == (size is not None)


@pytest.mark.parametrize("text", [
    "random_rotation {}",
    "random_shear { shear_y: true }",
    "random_zoom {}",
    "random_vertical_flip {}",
    "random_gaussian_blur {}",
    "random_gaussian_noise {}",
    "fixed_row_crop { top: 1 bottom: 2 }",
])
def test_new_steps_build_and_keep_width(text):
  fn = preprocessor_builder.build(_step(text), IGNORE)
  image, label = fn(*_pair(6, 8))
  assert image.dtype == tf.float32 and label.dtype == tf.int32
  assert image.shape[1:] == (8, 3) and label.shape[1:] == (8, 1)
  assert set(np.unique(label)) <= set(range(48)) | {IGNORE}


def test_new_step_defaults_come_from_the_proto():
  rotation = _step("random_rotation {}").random_rotation
  assert (rotation.min_degrees, rotation.max_degrees,
          rotation.probability) == (-10.0, 10.0, 1.0)
  assert _step("random_gaussian_blur {}").random_gaussian_blur \
      .probability == 0.5
  row_crop = _step("fixed_row_crop {}").fixed_row_crop
  assert (row_crop.top, row_crop.bottom) == (0, 0)


def test_new_steps_pass_their_values():
  image, label = _pair(5, 5)
  fn = preprocessor_builder.build(_step(
      "random_rotation { min_degrees: 90 max_degrees: 90 }"), IGNORE)
  _, out_label = fn(image, label)
  np.testing.assert_array_equal(out_label, np.rot90(label.numpy()))
  fn = preprocessor_builder.build(
      _step("random_vertical_flip { probability: 1.0 }"), IGNORE)
  _, out_label = fn(image, label)
  np.testing.assert_array_equal(out_label, label.numpy()[::-1])
  fn = preprocessor_builder.build(
      _step("random_zoom { min_zoom: 0.5 max_zoom: 0.5 }"), ignore_label=11)
  _, out_label = fn(image, label)
  assert out_label.numpy()[0, 0, 0] == 11  # the corner is uncovered
  fn = preprocessor_builder.build(
      _step("fixed_row_crop { top: 1 bottom: 2 }"), IGNORE)
  _, out_label = fn(image, label)
  np.testing.assert_array_equal(out_label, label.numpy()[1:3])
  fn = preprocessor_builder.build(
      _step("resize_with_pad { height: 10 width: 6 }"), ignore_label=11)
  image, out_label = fn(*_pair(3, 6))
  assert image.shape == (10, 6, 3)
  np.testing.assert_array_equal(out_label.numpy()[3:], 11)


@pytest.mark.parametrize("text, field", [
    ("random_rotation { min_degrees: 5 max_degrees: -5 }",
     "random_rotation.max_degrees"),
    ("random_rotation { probability: 1.1 }", "random_rotation.probability"),
    ("random_shear { max_degrees: 60 }", "random_shear.max_degrees"),
    ("random_shear { max_degrees: -1 }", "random_shear.max_degrees"),
    ("random_shear { probability: -0.5 }", "random_shear.probability"),
    ("random_zoom { min_zoom: 0 }", "random_zoom.min_zoom"),
    ("random_zoom { min_zoom: 1.2 max_zoom: 1.1 }", "random_zoom.max_zoom"),
    ("random_zoom { probability: 2 }", "random_zoom.probability"),
    ("random_vertical_flip { probability: -0.1 }",
     "random_vertical_flip.probability"),
    ("random_gaussian_blur { min_sigma: 0 }",
     "random_gaussian_blur.min_sigma"),
    ("random_gaussian_blur { min_sigma: 2 max_sigma: 1 }",
     "random_gaussian_blur.max_sigma"),
    ("random_gaussian_blur { probability: 1.5 }",
     "random_gaussian_blur.probability"),
    ("random_gaussian_noise { stddev: -1 }", "random_gaussian_noise.stddev"),
    ("random_gaussian_noise { probability: 1.5 }",
     "random_gaussian_noise.probability"),
    ("fixed_row_crop { top: -1 }", "fixed_row_crop.top"),
    ("fixed_row_crop { bottom: -2 }", "fixed_row_crop.bottom"),
    ("resize_with_pad { width: 4 }", "resize_with_pad.height"),
    ("resize_with_pad { height: 4 width: 0 }", "resize_with_pad.width"),
])
def test_new_steps_bad_values_name_the_field(text, field):
  with pytest.raises(ValueError) as error:
    preprocessor_builder.build_sequence(
        _steps("random_horizontal_flip {}", text), IGNORE)
  assert f"train_config.data_augmentation_options[1].{field}" in str(
      error.value)


def test_bad_range_message_gives_both_values():
  with pytest.raises(ValueError, match=r"must be >= min_degrees \(5.0\), "
                     r"got -5.0"):
    preprocessor_builder.build(_step(
        "random_rotation { min_degrees: 5 max_degrees: -5 }"), IGNORE)


@pytest.mark.parametrize("texts, size", [
    (("resize_with_pad { height: 6 width: 7 }",), (6, 7)),
    (("random_scale {}", "resize_with_pad { height: 6 width: 7 }"), (6, 7)),
    (("resize_with_pad { height: 6 width: 7 }", "random_scale {}"), None),
    (("fixed_resize { height: 10 width: 7 }",
      "fixed_row_crop { top: 2 bottom: 3 }"), (5, 7)),
    (("fixed_row_crop { top: 2 }",), None),
    (("fixed_row_crop { top: 2 }", "fixed_resize { height: 6 width: 7 }"),
     (6, 7)),
    (("random_crop { crop_height: 4 crop_width: 5 }", "random_rotation {}",
      "random_shear {}", "random_zoom {}", "random_vertical_flip {}",
      "random_gaussian_blur {}", "random_gaussian_noise {}"), (4, 5)),
])
def test_fixed_output_size_new_steps(texts, size):
  steps = _steps(*texts)
  assert preprocessor_builder.fixed_output_size(steps) == size
  assert preprocessor_builder.ends_with_fixed_size(steps) == (size is not None)


def test_row_crop_of_a_whole_fixed_size_is_rejected_at_build_time():
  with pytest.raises(
      ValueError,
      match=r"data_augmentation_options\[1\]\.fixed_row_crop removes 2 \+ 2"):
    preprocessor_builder.build_sequence(_steps(
        "fixed_resize { height: 4 width: 4 }",
        "fixed_row_crop { top: 2 bottom: 2 }"), IGNORE)


def test_build_deterministic_sequence_accepts_the_fixed_steps():
  assert preprocessor_builder.DETERMINISTIC_STEPS == (
      "fixed_resize", "fixed_row_crop", "resize_with_pad")
  fn = preprocessor_builder.build_deterministic_sequence(_steps(
      "fixed_row_crop { top: 2 bottom: 0 }",
      "resize_with_pad { height: 8 width: 8 }",
      "fixed_resize { height: 4 width: 6 }"), IGNORE,
      "eval_config.preprocessing")
  image, label = fn(*_pair(6, 8))
  assert image.shape == (4, 6, 3) and label.shape == (4, 6, 1)
  first, _ = fn(*_pair(6, 8))
  np.testing.assert_array_equal(first, image)
  identity = preprocessor_builder.build_deterministic_sequence(
      [], IGNORE, "eval_config.preprocessing")
  image, label = _pair()
  assert identity(image, label) == (image, label)


@pytest.mark.parametrize("text", [
    "random_rotation {}", "random_crop { crop_height: 2 crop_width: 2 }",
    "color_jitter {}", "random_gaussian_noise {}",
])
def test_build_deterministic_sequence_rejects_random_steps(text):
  which = _step(text).WhichOneof("preprocessing_step")
  with pytest.raises(ValueError) as error:
    preprocessor_builder.build_deterministic_sequence(
        _steps("fixed_resize { height: 4 width: 4 }", text), IGNORE,
        "eval_config.preprocessing")
  message = str(error.value)
  assert f"eval_config.preprocessing[1].{which} is random" in message
  assert "fixed_resize, fixed_row_crop, resize_with_pad" in message


def test_build_deterministic_sequence_checks_values_and_empty_steps():
  with pytest.raises(ValueError,
                     match=r"preprocessing\[0\]\.resize_with_pad\.width"):
    preprocessor_builder.build_deterministic_sequence(
        _steps("resize_with_pad { height: 4 }"), IGNORE,
        "eval_config.preprocessing")
  with pytest.raises(ValueError, match=r"preprocessing\[0\]: 'preprocessing"):
    preprocessor_builder.build_deterministic_sequence(
        [preprocessor_pb2.PreprocessingStep()], IGNORE,
        "eval_config.preprocessing")
