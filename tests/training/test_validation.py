"""Validation during training, the best checkpoint, epochs and the from-scratch notice."""

import json

import numpy as np
import pytest

from fast_seg.compression import compress_lib
from fast_seg.evaluation import eval_lib
from fast_seg.export import export_lib
from fast_seg.training import train_lib
from fast_seg.training import validation
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers

TRAIN_EXAMPLES = 16  # tiny_dataset's train split


def _config(data_dir, num_steps=6, extra_train=""):
  return helpers.pipeline_config(helpers.train_pipeline_text(
      data_dir, num_steps=num_steps, extra_train=extra_train))


@pytest.fixture(scope="module")
def validated_run(tiny_dataset, tmp_path_factory):
  """A 6-step run validating every 2 steps, keeping 1 regular checkpoint."""
  logdir = tmp_path_factory.mktemp("validated_run")
  config = _config(tiny_dataset, extra_train=(
      "eval_every_n_steps: 2 max_checkpoints_to_keep: 1"))
  train_lib.train(config, str(logdir))
  return config, logdir


def _history(logdir):
  path = logdir / validation.VALIDATION_DIR / eval_lib.HISTORY_FILE
  return [json.loads(line) for line in path.read_text().splitlines()]


def test_validation_every_n_steps_and_at_the_end(validated_run):
  _, logdir = validated_run
  history = _history(logdir)
  assert [row["step"] for row in history] == [2, 4, 6]
  assert all(row["num_examples"] == 6 for row in history)


def test_best_checkpoint_is_the_best_validation_step(validated_run):
  _, logdir = validated_run
  history = _history(logdir)
  best_row = max(history, key=lambda row: row["miou"])
  best_dir = logdir / checkpoint_util.BEST_DIR
  record = json.loads((best_dir / checkpoint_util.BEST_FILE).read_text())
  assert record["step"] == best_row["step"] and record["metric"] == "miou"
  assert record["value"] == pytest.approx(best_row["miou"])
  # One checkpoint in best/, kept although max_checkpoints_to_keep is 1.
  assert sorted(p.name for p in best_dir.glob("*.index")) == [
      f"ckpt-{best_row['step']}.index"]
  assert [p.name for p in logdir.glob("ckpt-*.index")] == ["ckpt-6.index"]


def test_best_checkpoint_evaluates_to_the_recorded_miou(validated_run, tmp_path):
  config, logdir = validated_run
  record = json.loads((logdir / "best" / checkpoint_util.BEST_FILE).read_text())
  result = eval_lib.evaluate(config, None, str(tmp_path),
                             checkpoint=str(logdir / "best"))[0]
  assert result["step"] == record["step"]
  assert result["miou"] == pytest.approx(record["value"], abs=1e-9)


def test_export_and_compress_accept_the_best_directory(validated_run):
  config, logdir = validated_run
  model, _, _, path = export_lib.load_model(config, str(logdir / "best"))
  record = json.loads((logdir / "best" / checkpoint_util.BEST_FILE).read_text())
  assert path.endswith(f"best/ckpt-{record['step']}")
  assert model.inference_model.count_params() > 0
  model = compress_lib.load_model(config, str(logdir / "best"))
  assert model.inference_model.count_params() > 0


def test_resumed_run_keeps_the_recorded_best(validated_run, tiny_dataset, tmp_path):
  config, logdir = validated_run
  # A copy of the run with a best value nobody can beat: resuming for two
  # more steps must validate but not replace it.
  import shutil  # pylint: disable=g-import-not-at-top
  copy = tmp_path / "run"
  shutil.copytree(logdir, copy)
  best_file = copy / "best" / checkpoint_util.BEST_FILE
  record = json.loads(best_file.read_text())
  record["value"] = 2.0
  best_file.write_text(json.dumps(record))
  config = _config(tiny_dataset, num_steps=8, extra_train=(
      "eval_every_n_steps: 2 max_checkpoints_to_keep: 1"))
  train_lib.train(config, str(copy))
  assert [row["step"] for row in _history(copy)] == [2, 4, 6, 8]
  assert json.loads(best_file.read_text())["step"] == record["step"]


def test_num_epochs_sets_num_steps(tiny_dataset, tmp_path, capsys):
  # 2.5 epochs of 16 examples at batch 4: 10 steps.
  config = helpers.pipeline_config(
      helpers.train_pipeline_text(tiny_dataset).replace("num_steps: 4", "num_epochs: 2.5"))
  result = train_lib.train(config, str(tmp_path))
  assert result["step"] == 10
  # The caller's config is left as it was; the as-run one has the steps.
  assert not config.train_config.HasField("num_steps")
  out = capsys.readouterr().out
  assert "to 10 (2.5 epochs of 16 examples)" in out
  assert "step 10/10 (epoch 2.5)" in out
  saved = (tmp_path / "pipeline.config").read_text()
  assert "num_steps: 10" in saved and "num_epochs: 2.5" in saved


@pytest.mark.parametrize("text, match", [
    ("num_epochs: 2 num_steps: 5", r"train_config.num_steps \(5\) and num_epochs \(2 = 8 steps"),
    ("num_epochs: -1", r"train_config.num_epochs must be >= 0"),
    ("eval_every_n_steps: -2", r"train_config.eval_every_n_steps must be >= 0"),
    ("eval_every_n_steps: 2 best_checkpoint_metric: 'loss'",
     r"train_config.best_checkpoint_metric: unknown 'loss'; allowed: miou"),
])
def test_bad_lengths_and_validation_settings_name_the_field(tiny_dataset, tmp_path, text, match):
  config = helpers.pipeline_config(
      helpers.train_pipeline_text(tiny_dataset).replace("num_steps: 4", text))
  with pytest.raises(ValueError, match=match):
    train_lib.train(config, str(tmp_path))


def test_num_epochs_without_dataset_info_is_refused(tiny_dataset, tmp_path):
  import shutil  # pylint: disable=g-import-not-at-top
  for path in tiny_dataset.glob("train-*.tfrecord"):
    shutil.copy(path, tmp_path)
  config = helpers.pipeline_config(helpers.train_pipeline_text(tmp_path).replace(
      "num_steps: 4", "num_epochs: 1"))
  with pytest.raises(ValueError, match=r"train_config.num_epochs needs the number "
                     r"of training examples .*give train_config.num_steps"):
    train_lib.train(config, str(tmp_path / "run"))


def test_command_line_steps_win_over_epochs(tiny_dataset, tmp_path):
  config = helpers.pipeline_config(
      helpers.train_pipeline_text(tiny_dataset).replace("num_steps: 4", "num_epochs: 3"))
  assert train_lib.train(config, str(tmp_path), num_steps=2)["step"] == 2


@pytest.mark.slow
def test_from_scratch_notice_names_the_field(tiny_dataset, tmp_path, capsys):
  train_lib.train(_config(tiny_dataset, num_steps=1), str(tmp_path))
  out = capsys.readouterr().out
  assert ("Training from scratch: no ImageNet weights "
          "(model.icnet.feature_extractor.weights_path)") in out
  # Not when resuming: the weights come from the run itself.
  train_lib.train(_config(tiny_dataset, num_steps=2), str(tmp_path))
  assert "Training from scratch" not in capsys.readouterr().out


def test_validation_numbers_equal_eval_of_the_same_step(validated_run, tmp_path):
  config, logdir = validated_run
  last = _history(logdir)[-1]
  result = eval_lib.evaluate(config, None, str(tmp_path),
                             checkpoint=str(logdir / "ckpt-6"))[0]
  np.testing.assert_allclose(result["per_class_iou"], last["per_class_iou"])


def test_trainval_epochs_and_enet_weights_count_both_splits(tiny_dataset, tmp_path, capsys):
  # train (16) + val (6) = 22 examples: 2 epochs at batch 4 are 11 steps.
  train_reader = f'tf_record_input_path: "{tiny_dataset}/train-*.tfrecord"'
  text = helpers.train_pipeline_text(tiny_dataset).replace(
      "num_steps: 4", "num_epochs: 2").replace(
          train_reader,
          f'{train_reader} tf_record_input_path: "{tiny_dataset}/val-*.tfrecord"').replace(
              "softmax_cross_entropy {}",
              "softmax_cross_entropy {} class_weighting: ENET enet_weighting_constant: 1.2")
  config = helpers.pipeline_config(text)
  assert len(config.train_input_reader.tf_record_input_path) == 2
  assert train_lib.train(config, str(tmp_path))["step"] == 11
  info = json.loads((tiny_dataset / "dataset_info.json").read_text())
  train = np.asarray(info["class_pixel_frequency"]["train"])
  val = np.asarray(info["class_pixel_frequency"]["val"])
  shares = (16 * train + 6 * val) / 22
  expected = 1 / np.log(1.2 + shares / shares.sum())
  saved = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  assert list(saved.model.icnet.loss.class_weights) == pytest.approx(expected, rel=1e-6)
  assert "to 11 (2.0 epochs of 22 examples)" in capsys.readouterr().out
