"""What a run settles before its first step, as the console reads it."""

import logging

import pytest

from fast_seg.builders import losses_builder
from fast_seg.data import dataset_info
from fast_seg.training import run_settings
from tests import helpers


def _build_loss(config):
  return losses_builder.build(config.model.icnet.loss, 6, 255, "logits", {},
                              "model.icnet.loss")


def _class_weight_lines(caplog):
  return [r for r in caplog.records if "class weights" in r.getMessage()
          or "class_weights" in r.getMessage()]


def test_class_weights_are_logged_once_per_process_and_weights(
    tiny_dataset, caplog, monkeypatch):
  monkeypatch.setattr(losses_builder, "_LOGGED_CLASS_WEIGHTS", set())
  caplog.set_level(logging.INFO, logger="absl")
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset).replace("softmax_cross_entropy {}",
                            "softmax_cross_entropy {} "
                            "class_weighting: MEDIAN_FREQUENCY"))
  run_settings.read_dataset_facts(config)  # computes them: one line
  # Then the trainer's model, and compress.py's one per table row and
  # search step, all from that config: no more lines (there were 25).
  for _ in range(3):
    _build_loss(config)
  lines = _class_weight_lines(caplog)
  assert len(lines) == 1, [r.getMessage() for r in lines]
  assert lines[0].getMessage().startswith(
      f"MEDIAN_FREQUENCY class weights over {tiny_dataset}/train-*.tfrecord: ")
  assert lines[0].pathname.endswith("run_settings.py")  # where it was said
  # Other weights are news: their own line, once.
  config.model.icnet.loss.class_weights[0] = 2.0
  _build_loss(config)
  _build_loss(config)
  lines = _class_weight_lines(caplog)
  assert len(lines) == 2
  assert lines[1].getMessage().startswith(
      "model.icnet.loss: using class_weights 2.000, ")


def _crop_config(tiny_dataset, steps):
  text = helpers.train_pipeline_text(tiny_dataset)
  default = ("data_augmentation_options { random_crop { crop_height: 64 "
             "crop_width: 64 } }")
  assert default in text
  return helpers.pipeline_config(text.replace(default, steps))


def _facts_warning(config):
  info_path, info = dataset_info.load_for_reader(
      config.train_input_reader, config.model, "train_input_reader")
  return run_settings.warn_if_crop_exceeds_images(config, info, info_path)


def test_a_crop_larger_than_every_image_is_said_before_step_one(tiny_dataset):
  """tiny_dataset's dataset_info.json counts 64x64 training images."""
  crop = "data_augmentation_options { random_crop { crop_height: 64 crop_width: 96 } }"
  warning = _facts_warning(_crop_config(tiny_dataset, crop))
  assert warning == (
      "train_config.data_augmentation_options: random_crop 64x96 is larger "
      "than every training image (at most 64x64 (HxW) per "
      f"{tiny_dataset}/dataset_info.json): each crop is padded with the "
      "ignore label; lower the crop or raise max_scale_ratio if that is not "
      "meant")
  # random_scale up to x1.25 reaches 80x80: still short of 96 wide.
  scaled = ("data_augmentation_options { random_scale { min_scale_ratio: 0.5 "
            "max_scale_ratio: 1.25 } } " + crop)
  assert ", 80x80 at random_scale's x1.25)" in _facts_warning(
      _crop_config(tiny_dataset, scaled))
  # Up to x2 reaches 128x128: the crop fits; so does 64x64 unscaled.
  assert _facts_warning(_crop_config(tiny_dataset, scaled.replace(
      "max_scale_ratio: 1.25", "max_scale_ratio: 2.0"))) is None
  assert _facts_warning(_crop_config(tiny_dataset, crop.replace(
      "crop_width: 96", "crop_width: 64"))) is None
  # After a resize the files' sizes say nothing: no warning.
  resized = ("data_augmentation_options { fixed_resize { height: 32 width: 32 "
             "} } " + crop)
  assert _facts_warning(_crop_config(tiny_dataset, resized)) is None


def test_num_steps_zero_is_an_error_not_unset(tiny_dataset):
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset))
  with pytest.raises(ValueError, match=r"^--num_steps must be >= 1, got 0$"):
    run_settings.as_run_config(config, 0)
  assert run_settings.as_run_config(config, None).train_config.num_steps == 4
  assert run_settings.as_run_config(config, 3).train_config.num_steps == 3


@pytest.mark.parametrize("factor, ok", [
    (0, True), (1000, True), (1.5, True), (1, False), (0.5, False),
    (-3, False), (float("nan"), False)])
def test_divergence_factor_is_off_or_over_one(tiny_dataset, factor, ok):
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset))
  assert config.train_config.divergence_factor == 1000  # the default
  config.train_config.divergence_factor = factor
  strategy = run_settings.build_strategy("one_device")
  if ok:
    run_settings.check_train_config(config, strategy)
  else:
    with pytest.raises(ValueError, match=r"train_config\.divergence_factor "
                       r"must be 0 \(off\) or > 1"):
      run_settings.check_train_config(config, strategy)


def test_training_refuses_a_split_without_labels_and_warns_of_one(
    tiny_dataset, tmp_path, caplog):
  info = dataset_info.load(str(tiny_dataset))
  info["class_pixel_frequency"]["val"] = [0.0] * 6
  path = dataset_info.write(str(tmp_path), info)
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset))
  globs = config.train_input_reader.tf_record_input_path
  globs[:] = [str(tmp_path / "val-*.tfrecord")]
  with pytest.raises(ValueError) as error:
    run_settings.check_labelled(config, info, path)
  assert str(error.value).startswith(
      "train_input_reader: every label pixel of split val is the ignore "
      f"label (per {path}: no labelled pixel); there is nothing to train on")
  globs.insert(0, str(tmp_path / "train-*.tfrecord"))
  caplog.set_level(logging.WARNING, logger="absl")
  assert run_settings.check_labelled(config, info, path).endswith(
      "; those images add nothing to the loss")
  assert run_settings.check_labelled(config, None, None) is None
