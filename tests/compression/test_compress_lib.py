"""compress.py end to end on a trained checkpoint: load, train, report, CLI."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.compression import compress_lib
from fast_seg.compression import filter_pruning
from fast_seg.training import run_settings
from fast_seg.training import train_lib
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers


def _quiet(**kwargs):
  return dict(log=lambda line: None, **kwargs)


@pytest.fixture(scope="module")
def pruned(trained_run, tmp_path_factory):
  """compress_lib.prune of the shared 4-step run, filter_scale 0.25 -> 0.125."""
  config, logdir = trained_run
  output_dir = str(tmp_path_factory.mktemp("pruned"))
  report = compress_lib.prune(config, logdir, output_dir, 0.125, plot=True,
                              **_quiet())
  return config, logdir, output_dir, report


def test_pruned_checkpoint_fits_the_smaller_model(pruned):
  config, _, output_dir, report = pruned
  written = config_util.load_pipeline_config(
      os.path.join(output_dir, "pipeline.config"))
  arch = config_util.get_model_config(written.model)
  assert arch.feature_extractor.filter_scale == 0.125
  assert written.train_config.fine_tune_checkpoint == os.path.abspath(
      report["output_checkpoint"])
  assert written.train_config.fine_tune_checkpoint_type == 1  # SEGMENTATION
  # Every weight of the 0.125 model, aux heads included, comes from it.
  smaller = helpers.restore_every_weight(written, report["output_checkpoint"])
  assert report["params_after"] == smaller.keras_model.count_params()
  assert report["inference_params_after"] == smaller.inference_model.count_params()
  full = model_builder.build(config.model)
  assert report["params_before"] == full.keras_model.count_params()
  assert report["flops_after"] < 0.5 * report["flops_before"]
  assert report["input_shape"] == [1, 64, 64, 3]


def test_the_pruned_folder_can_be_moved(pruned, tmp_path):
  """pipeline.config names ckpt-0 relative to itself: a copy of the folder
  elsewhere fine-tunes from its own ckpt-0."""
  _, _, output_dir, report = pruned
  text = open(os.path.join(output_dir, "pipeline.config"),
              encoding="utf-8").read()
  assert 'fine_tune_checkpoint: "ckpt-0"' in text
  moved = tmp_path / "moved"
  shutil.copytree(output_dir, moved)
  written = config_util.load_pipeline_config(str(moved / "pipeline.config"))
  assert written.train_config.fine_tune_checkpoint == str(moved / "ckpt-0")
  assert report["output_checkpoint"] != str(moved / "ckpt-0")
  helpers.restore_every_weight(written,
                               written.train_config.fine_tune_checkpoint)


def test_pruned_weights_are_the_kept_filters_of_the_source(pruned):
  config, logdir, _, report = pruned
  source = compress_lib.load_model(config, logdir)
  reader = tf.train.load_checkpoint(report["output_checkpoint"])
  group = next(row for row in report["groups"]
               if len(row["convs"]) == 1 and row["after"] < row["before"])
  conv = source.keras_model.get_layer(group["convs"][0])
  kernel = conv.get_weights()[0]
  norms = np.abs(kernel).sum(axis=(0, 1, 2))
  kept = np.sort(np.argsort(-norms, kind="stable")[:group["after"]])
  got = reader.get_tensor(checkpoint_util.weight_key(conv, conv.kernel))
  # Output filters: the highest L1 norms (computed here); input channels:
  # those its input group keeps.
  smaller = model_builder.build(compress_lib.with_scale(config, 0.125).model)
  graph, masks, _ = filter_pruning.plan(source.keras_model, smaller.keras_model)
  in_mask = graph.input_mask(conv.name, masks)
  assert not in_mask.all()
  np.testing.assert_array_equal(got, kernel[:, :, in_mask, :][..., kept])


def test_report_lists_groups_and_plots(pruned):
  _, _, output_dir, report = pruned
  groups = {row["group"]: row for row in report["groups"]}
  # MobileNetV2 widths round to multiples of 8: the 8-channel stem stays.
  assert groups["mobilenet_v2_Conv"]["after"] == 8
  assert groups["icnet_cff1_low_conv"]["after"] == (
      groups["icnet_cff1_low_conv"]["before"] // 2)
  assert "icnet_cff1_high_conv" in groups["icnet_cff1_low_conv"]["convs"]
  assert groups["icnet_classifier"]["after"] == 6  # classes are never pruned
  assert "reaches a model output" in groups["icnet_classifier"]["fixed"]
  text = open(os.path.join(output_dir, "compression_report.md")).read()
  assert "| params (training model) |" in text and "FLOPs at 64x64" in text
  assert json.load(open(os.path.join(output_dir, "compression_report.json")))[
      "params_after"] == report["params_after"]
  assert report["plots"]
  image = np.asarray(Image.open(report["plots"][0]).convert("RGB"))
  assert image.shape == (360, 640, 3)
  assert ((image[..., 0] > 200) & (image[..., 1] < 40)).any()  # the red cut


def test_training_runs_from_the_pruned_checkpoint(pruned, tmp_path):
  _, _, output_dir, report = pruned
  config = config_util.load_pipeline_config(
      os.path.join(output_dir, "pipeline.config"))
  trainer = trainer_lib.Trainer(config, str(tmp_path / "tune"),
                                run_settings.build_strategy("one_device"))
  trainer.restore_or_initialize()
  reader = tf.train.load_checkpoint(report["output_checkpoint"])
  classifier = trainer.model.keras_model.get_layer("icnet_classifier")
  np.testing.assert_array_equal(
      classifier.kernel.numpy(),
      reader.get_tensor(checkpoint_util.weight_key(classifier,
                                                   classifier.kernel)))
  result = train_lib.train(config, str(tmp_path / "train"), num_steps=2)
  assert result["step"] == 2
  assert np.isfinite(result["total_loss"])


def test_soft_pruning_zeroes_and_keeps_shapes(trained_run, tmp_path):
  config, logdir = trained_run
  report = compress_lib.prune(config, logdir, str(tmp_path), 0.125, soft=True,
                              **_quiet())
  assert report["filter_scale_after"] == 0.25
  assert report["params_after"] == report["params_before"]
  model = compress_lib.load_model(config, report["output_checkpoint"])
  kernel = model.keras_model.get_layer("icnet_cff1_low_conv").kernel.numpy()
  zero_filters = (np.abs(kernel).sum(axis=(0, 1, 2)) == 0).sum()
  assert zero_filters == kernel.shape[-1] // 2
  assert report["zeroed_channels"] > 0


def test_scale_and_checkpoint_errors(trained_run, tmp_path):
  config, logdir = trained_run
  for scale in (0.0, 1.5):
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
      compress_lib.prune(config, logdir, str(tmp_path), scale, **_quiet())
  with pytest.raises(ValueError, match="wider than the checkpoint's model"):
    compress_lib.prune(config, logdir, str(tmp_path), 0.5, **_quiet())
  other = helpers.pipeline_config(helpers.train_pipeline_text(
      "unused", model=helpers.model_text(num_classes=4, filter_scale=0.25)))
  with pytest.raises(ValueError,
                     match=r"shape mismatch: icnet_aux_1_16_classifier/bias"):
    compress_lib.prune(other, logdir, str(tmp_path), 0.125, **_quiet())
  for text in ("0.5,0.75", "1.0,x", ""):
    with pytest.raises(ValueError, match="--schedule"):
      compress_lib.parse_schedule(text)


@pytest.mark.slow
def test_progressive_schedule_keeps_every_stage(trained_run, tmp_path):
  config, logdir = trained_run
  reports = compress_lib.progressive(
      config, logdir, str(tmp_path), [0.25, 0.1875, 0.125], finetune_steps=1,
      **_quiet())
  assert [r["filter_scale_after"] for r in reports] == [0.1875, 0.125]
  for k, scale in ((1, "0.1875"), (2, "0.125")):
    stage = tmp_path / f"stage_{k}_scale_{scale}"
    assert (stage / "ckpt-0.index").exists()
    assert (stage / "train" / "ckpt-1.index").exists()
  # Stage 2 pruned the fine-tuned stage-1 weights.
  assert reports[1]["checkpoint"] == reports[0]["finetune"]["checkpoint"]
  final = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  assert config_util.get_model_config(
      final.model).feature_extractor.filter_scale == 0.125
  assert final.train_config.num_steps == config.train_config.num_steps
  assert final.train_config.fine_tune_checkpoint.endswith(
      "stage_2_scale_0.125/train/ckpt-1")


def _compress(*args):
  return subprocess.run([sys.executable, "compress.py", *args],
                        capture_output=True, text=True, cwd=helpers.REPO_ROOT,
                        timeout=600)


def test_cli(trained_run, tmp_path):
  _, logdir = trained_run
  config_path = os.path.join(logdir, "pipeline.config")
  result = _compress("--config_path", config_path, "--checkpoint", logdir,
                     "--output_dir", str(tmp_path / "out"), "--filter_scale",
                     "0.125")
  assert result.returncode == 0, result.stderr
  assert "filter_scale 0.25 -> 0.125" in result.stdout
  assert (tmp_path / "out" / "pipeline.config").exists()
  bad = _compress("--config_path", config_path, "--checkpoint", logdir,
                  "--output_dir", str(tmp_path / "bad"), "--filter_scale", "2")
  assert bad.returncode == 2
  assert "error: --filter_scale must be in (0, 1], got 2.0" in bad.stderr
  both = _compress("--config_path", config_path, "--checkpoint", logdir,
                   "--output_dir", str(tmp_path / "bad"), "--filter_scale",
                   "0.1", "--schedule", "0.25,0.1")
  assert both.returncode == 2 and "exactly one of" in both.stderr
