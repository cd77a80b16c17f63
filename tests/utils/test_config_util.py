"""Config loading: named errors, overrides, as-run save, deprecated fields."""

import pytest

from fast_seg.protos import train_pb2
from fast_seg.utils import config_util
from tests import helpers

DEMO_CONFIG = helpers.REPO_ROOT / "configs" / "icnet_mobilenet_v2_synthetic_128.config"
ZOO_CONFIG = (helpers.REPO_ROOT / "model_zoo" / "camvid" /
              "icnet_mobilenet_v2_0.25_camvid_360" / "pipeline.config")
TrainConfig = train_pb2.TrainConfig


def _zoo_config_with(tmp_path, train_fields):
  """A model-zoo pipeline.config, as committed, plus `train_fields`."""
  text = ZOO_CONFIG.read_text()
  assert text.count("train_config {") == 1
  path = tmp_path / "old.config"
  path.write_text(text.replace("train_config {",
                               "train_config {\n  " + train_fields))
  return path


def _warnings(caplog):
  return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


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


# -- deprecated fields ---------------------------------------------------------


def test_model_zoo_configs_load_unchanged_in_float32(caplog):
  for path in sorted(ZOO_CONFIG.parent.parent.glob("*/pipeline.config")):
    config = config_util.load_pipeline_config(str(path))
    assert config.train_config.precision == TrainConfig.FLOAT32
  assert not _warnings(caplog)


def test_old_mixed_precision_is_read_as_precision_with_one_log_line(
    tmp_path, caplog):
  path = _zoo_config_with(tmp_path, "mixed_precision: true")
  config = config_util.load_pipeline_config(str(path))
  train = config.train_config
  assert train.precision == TrainConfig.MIXED_FLOAT16
  assert not train.HasField("mixed_precision")
  assert not train.HasField("mixed_precision_policy")
  assert _warnings(caplog) == [
      f"{path}: train_config {{ mixed_precision: true }} is deprecated; "
      "read as train_config { precision: MIXED_FLOAT16 }, write that instead"]
  # Everything else is the model-zoo file as it is.
  train.ClearField("precision")
  assert config == config_util.load_pipeline_config(str(ZOO_CONFIG))


@pytest.mark.parametrize("old, precision", [
    ("mixed_precision: true", TrainConfig.MIXED_FLOAT16),
    ("mixed_precision: true mixed_precision_policy: MIXED_FLOAT16",
     TrainConfig.MIXED_FLOAT16),
    ("mixed_precision: true mixed_precision_policy: MIXED_BFLOAT16",
     TrainConfig.MIXED_BFLOAT16),
    ("mixed_precision: false", TrainConfig.FLOAT32),
    # The policy counted only with mixed_precision: true.
    ("mixed_precision_policy: MIXED_BFLOAT16", TrainConfig.FLOAT32),
    # Agreeing with precision: fine, the old fields go.
    ("mixed_precision: true mixed_precision_policy: MIXED_BFLOAT16 "
     "precision: MIXED_BFLOAT16", TrainConfig.MIXED_BFLOAT16),
])
def test_old_precision_fields_map_onto_precision(old, precision):
  config = helpers.pipeline_config(f"train_config {{ {old} }}")
  assert config.train_config.precision == precision
  assert config.train_config.HasField("precision")
  for name in config_util.DEPRECATED_PRECISION_FIELDS:
    assert not config.train_config.HasField(name)


@pytest.mark.parametrize("old, match", [
    ("mixed_precision: true precision: FLOAT32",
     r"old.config: .*deprecated mixed_precision: true \(that is precision: "
     r"MIXED_FLOAT16\) and precision: FLOAT32.*delete mixed_precision "),
    ("mixed_precision: true mixed_precision_policy: MIXED_BFLOAT16 "
     "precision: MIXED_FLOAT16",
     r"old.config: .*mixed_precision: true mixed_precision_policy: "
     r"MIXED_BFLOAT16 .*precision: MIXED_FLOAT16.*delete mixed_precision and "
     r"mixed_precision_policy"),
])
def test_old_and_new_precision_that_disagree_name_file_and_fields(
    tmp_path, old, match):
  path = _zoo_config_with(tmp_path, old)
  with pytest.raises(config_util.ConfigError, match=match):
    config_util.load_pipeline_config(str(path))


def test_saved_as_run_config_has_only_precision(tmp_path):
  path = _zoo_config_with(
      tmp_path, "mixed_precision: true mixed_precision_policy: MIXED_BFLOAT16")
  config = config_util.load_pipeline_config(str(path))
  saved = config_util.save_pipeline_config(config, str(tmp_path / "run"))
  text = (tmp_path / "run" / config_util.PIPELINE_CONFIG_NAME).read_text()
  assert "mixed_precision" not in text
  assert "precision: MIXED_BFLOAT16" in text
  assert config_util.load_pipeline_config(saved) == config


def test_old_precision_fields_in_overrides_and_appends(tmp_path, caplog):
  # An override changes what the file says, as it did before `precision`.
  path = _zoo_config_with(tmp_path, "precision: MIXED_FLOAT16")
  config = config_util.load_pipeline_config(
      str(path), ["train_config { mixed_precision_policy: MIXED_BFLOAT16 }"])
  assert config.train_config.precision == TrainConfig.MIXED_BFLOAT16
  assert _warnings(caplog) == [
      "--config_override #1 ('train_config { mixed_precision_policy: "
      "MIXED_BFLOAT16 }'): train_config { mixed_precision_policy: "
      "MIXED_BFLOAT16 } is deprecated; read as train_config { precision: "
      "MIXED_BFLOAT16 }, write that instead"]
  config = config_util.load_pipeline_config(
      str(path), ["train_config { mixed_precision: false }"])
  assert config.train_config.precision == TrainConfig.FLOAT32
  # Old fields in the file, the new one on the command line: it wins.
  path = _zoo_config_with(tmp_path, "mixed_precision: true")
  config = config_util.load_pipeline_config(
      str(path), ["train_config { precision: FLOAT32 }"])
  assert config.train_config.precision == TrainConfig.FLOAT32
  config = config_util.load_pipeline_config(
      str(DEMO_CONFIG), appends=["train_config { mixed_precision: true }"])
  assert config.train_config.precision == TrainConfig.MIXED_FLOAT16
  assert not config.train_config.HasField("mixed_precision")


def _fine_tune_config(directory, path):
  """The demo config with `fine_tune_checkpoint: path`, saved in directory."""
  config = config_util.load_pipeline_config(str(DEMO_CONFIG))
  config.train_config.fine_tune_checkpoint = path
  return config_util.save_pipeline_config(config, str(directory))


def test_fine_tune_checkpoint_inside_the_folder_is_written_relative(tmp_path):
  """compress.py's output folder (ckpt-0 + pipeline.config) can be moved."""
  folder = tmp_path / "pruned"
  folder.mkdir()
  (folder / "train").mkdir()
  (folder / "train" / "ckpt-1.index").write_text("")
  path = _fine_tune_config(folder, str(folder / "train" / "ckpt-1"))
  assert 'fine_tune_checkpoint: "train/ckpt-1"' in open(path).read()
  moved = tmp_path / "elsewhere"
  folder.rename(moved)
  loaded = config_util.load_pipeline_config(str(moved / "pipeline.config"))
  assert loaded.train_config.fine_tune_checkpoint == str(
      moved / "train" / "ckpt-1")


def test_fine_tune_checkpoint_outside_the_folder_is_kept(tmp_path,
                                                         monkeypatch):
  """A path beside nothing in the config's folder keeps its old meaning:
  the working directory (configs/ name runs/X that way)."""
  outside = str(tmp_path / "runs" / "ckpt-5")
  path = _fine_tune_config(tmp_path / "a", outside)
  assert f'fine_tune_checkpoint: "{outside}"' in open(path).read()
  monkeypatch.chdir(tmp_path)
  path = _fine_tune_config(tmp_path / "b", "runs/ckpt-5")
  loaded = config_util.load_pipeline_config(path)
  assert loaded.train_config.fine_tune_checkpoint == "runs/ckpt-5"
  # Beside the file wins over the working directory; an override's path is
  # the shell's, never read beside the file.
  (tmp_path / "b" / "runs").mkdir()
  (tmp_path / "b" / "runs" / "ckpt-5.index").write_text("")
  assert config_util.load_pipeline_config(
      path).train_config.fine_tune_checkpoint == str(
          tmp_path / "b" / "runs" / "ckpt-5")
  assert config_util.load_pipeline_config(path, [
      'train_config { fine_tune_checkpoint: "runs/ckpt-5" }'
  ]).train_config.fine_tune_checkpoint == "runs/ckpt-5"


# -- the run's length ----------------------------------------------------------


def _length(train_fields, overrides=(), appends=(), tmp_path=None):
  path = tmp_path / "length.config"
  path.write_text(DEMO_CONFIG.read_text().replace(
      "train_config {", "train_config {\n  " + train_fields, 1))
  train = config_util.load_pipeline_config(str(path), overrides, appends).train_config
  return (train.num_steps if train.HasField("num_steps") else None,
          train.num_epochs if train.HasField("num_epochs") else None)


def test_an_override_in_one_unit_replaces_the_files_other(tmp_path):
  assert "num_steps" in DEMO_CONFIG.read_text()  # the file gives steps
  epochs = "train_config { num_epochs: 30 }"
  assert _length("", [epochs], tmp_path=tmp_path) == (None, 30.0)
  assert _length("", appends=[epochs], tmp_path=tmp_path) == (None, 30.0)
  # Steps over epochs likewise; both in one snippet are kept for the check.
  assert _length("num_epochs: 3", ["train_config { num_steps: 9 }"],
                 tmp_path=tmp_path) == (9, None)
  assert _length("", ["train_config { num_steps: 9 num_epochs: 3 }"],
                 tmp_path=tmp_path) == (9, 3.0)
  # num_epochs: 0 means "num_steps decides": it replaces nothing.
  steps, _ = _length("", ["train_config { num_epochs: 0 }"], tmp_path=tmp_path)
  assert steps is not None
  # A file with both keeps both (the run refuses them if they disagree).
  assert _length("num_epochs: 3", tmp_path=tmp_path)[1] == 3.0
  assert _length("num_epochs: 3", tmp_path=tmp_path)[0] is not None
