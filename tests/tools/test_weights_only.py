"""Weights-only checkpoints (model_zoo/): smaller, and read wherever a checkpoint is."""

import os

import numpy as np
import pytest

from fast_seg.evaluation import eval_lib
from fast_seg.tools import weights_only
from fast_seg.training import train_lib
from fast_seg.utils import config_util


def _size(prefix):
  folder, name = os.path.split(prefix)
  return sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)
             if f.startswith(name + "."))


def test_float32_copy_evaluates_identically(trained_run, tmp_path):
  config, logdir = trained_run
  result = weights_only.write(config, logdir, str(tmp_path / "zoo"), "float32")
  assert result["step"] == 4 and result["max_probability_diff"] == 0.0
  source = eval_lib.evaluate(config, None, str(tmp_path / "a"), checkpoint=logdir)[0]
  copy = eval_lib.evaluate(config, None, str(tmp_path / "b"),
                           checkpoint=str(tmp_path / "zoo"))[0]
  assert copy["step"] == 4
  np.testing.assert_array_equal(copy["confusion_matrix"], source["confusion_matrix"])
  # No optimizer state: smaller than the training checkpoint.
  assert result["bytes"] < 0.6 * _size(os.path.join(logdir, "ckpt-4"))
  written = config_util.load_pipeline_config(str(tmp_path / "zoo" / "pipeline.config"))
  assert written.model == config.model


def test_float16_copy_halves_the_size_and_keeps_the_labels(trained_run, tmp_path):
  config, logdir = trained_run
  full = weights_only.write(config, logdir, str(tmp_path / "f32"), "float32")
  half = weights_only.write(config, logdir, str(tmp_path / "f16"), "float16")
  assert half["bytes"] < 0.6 * full["bytes"]
  assert 0 < half["max_probability_diff"] < 1e-2
  assert half["label_agreement"] > 0.99


def test_fine_tuning_starts_from_a_weights_only_checkpoint(trained_run, tmp_path):
  config, logdir = trained_run
  weights_only.write(config, logdir, str(tmp_path / "zoo"), "float16")
  tuned = type(config)()
  tuned.CopyFrom(config)
  tuned.train_config.fine_tune_checkpoint = str(tmp_path / "zoo" / "model")
  tuned.train_config.fine_tune_checkpoint_type = 1  # SEGMENTATION
  assert train_lib.train(tuned, str(tmp_path / "run"), num_steps=1)["step"] == 1


def test_missing_checkpoint_is_a_clear_error(trained_run, tmp_path):
  config, _ = trained_run
  with pytest.raises(ValueError, match="checkpoint not found"):
    weights_only.write(config, str(tmp_path / "nope"), str(tmp_path / "zoo"))


def test_relative_output_dir_gives_a_movable_folder(trained_run, tmp_path, monkeypatch):
  config, logdir = trained_run
  monkeypatch.chdir(tmp_path)
  weights_only.write(config, logdir, "zoo/camvid/x", "float16")
  assert (tmp_path / "zoo/camvid/x/checkpoint").read_text().startswith(
      'model_checkpoint_path: "model"')
  os.rename(tmp_path / "zoo", tmp_path / "moved")
  result = eval_lib.evaluate(config, None, str(tmp_path / "e"),
                             checkpoint="moved/camvid/x")[0]
  assert result["step"] == 4
