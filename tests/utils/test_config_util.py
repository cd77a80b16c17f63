"""Config loading: clear errors naming the file and field; overrides; as-run save."""

import pytest

from fast_seg.utils import config_util
from tests import helpers

DEMO_CONFIG = helpers.REPO_ROOT / "configs" / "icnet_mobilenet_v2_synthetic_128.config"


def test_missing_file():
  with pytest.raises(config_util.ConfigError, match="config file not found: nope.config"):
    config_util.load_pipeline_config("nope.config")


def test_unknown_field_names_file_line_and_field(tmp_path):
  path = tmp_path / "bad.config"
  path.write_text("model {\n  icnet {\n    num_clases: 3\n  }\n}\n")
  with pytest.raises(config_util.ConfigError, match=r"bad.config: 3:5 .*num_clases"):
    config_util.load_pipeline_config(str(path))


def test_overrides_and_save_roundtrip(tmp_path):
  config = config_util.load_pipeline_config(
      str(DEMO_CONFIG), ["train_config { num_steps: 7 batch_size: 2 }"])
  assert config.train_config.num_steps == 7 and config.train_config.batch_size == 2
  assert config.model.icnet.num_classes == 6
  path = config_util.save_pipeline_config(config, str(tmp_path))
  assert config_util.load_pipeline_config(path) == config


def test_bad_override_is_named():
  with pytest.raises(config_util.ConfigError, match=r"--config_override #1"):
    config_util.load_pipeline_config(str(DEMO_CONFIG), ["train_config { steps: 1 }"])


def test_require_oneof_lists_choices():
  config = helpers.pipeline_config("")
  with pytest.raises(ValueError, match=r"model: 'model' is not set; set one of: icnet, pspnet"):
    config_util.get_model_config(config.model)


def test_override_replaces_repeated_fields_and_append_extends():
  glob = 'train_input_reader { tf_record_input_path: "other/train-*.tfrecord" }'
  config = config_util.load_pipeline_config(str(DEMO_CONFIG), [glob])
  assert list(config.train_input_reader.tf_record_input_path) == ["other/train-*.tfrecord"]
  # Other fields of the same message and its siblings are kept.
  original = config_util.load_pipeline_config(str(DEMO_CONFIG))
  assert config.train_input_reader.shuffle == original.train_input_reader.shuffle
  assert config.model == original.model and config.train_config == original.train_config
  # A repeated message field is replaced whole.
  config = config_util.load_pipeline_config(str(DEMO_CONFIG), [
      "train_config { data_augmentation_options { random_horizontal_flip {} } }"])
  steps = config.train_config.data_augmentation_options
  assert len(steps) == 1 and steps[0].WhichOneof("preprocessing_step") == "random_horizontal_flip"
  assert len(original.train_config.data_augmentation_options) > 1
  # --config_append adds to the list.
  config = config_util.load_pipeline_config(str(DEMO_CONFIG), appends=[glob])
  assert list(config.train_input_reader.tf_record_input_path) == list(
      original.train_input_reader.tf_record_input_path) + ["other/train-*.tfrecord"]


def test_override_switches_a_oneof_and_merges_submessages():
  config = config_util.load_pipeline_config(str(DEMO_CONFIG), [
      "model { icnet { feature_extractor { filter_scale: 0.25 } } }",
      "train_config { optimizer { momentum_optimizer { momentum: 0.5 } } }"])
  assert config.model.icnet.feature_extractor.filter_scale == 0.25
  assert config.model.icnet.feature_extractor.type == "mobilenet_v2"  # kept
  assert config.train_config.optimizer.WhichOneof("optimizer") == "momentum_optimizer"
  assert config.train_config.optimizer.momentum_optimizer.momentum == 0.5


def test_bad_append_is_named():
  with pytest.raises(config_util.ConfigError, match=r"--config_append #1"):
    config_util.load_pipeline_config(str(DEMO_CONFIG), appends=["train_config { steps: 1 }"])
