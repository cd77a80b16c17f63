"""Faults around training, through the real entry points (issue 26).

Two runs on one logdir, a loss that diverges and stays finite, a split whose
every label pixel is ignored, a 0-byte shard, --num_steps 0, a schedule
given in epochs by --config_override. Each case asserts the exit status, the
one `error:` (or warning) line naming what to fix, no traceback, and what is
left on disk. The cases that train are marked slow.
"""

import json
import os
import shutil
import socket
import subprocess

import numpy as np
from PIL import Image
import pytest

from fast_seg.utils import run_lock
from tests import helpers


@pytest.fixture(scope="module", name="root")
def _root(tmp_path_factory):
  return tmp_path_factory.mktemp("faults_training")


@pytest.fixture(scope="module", name="good_config")
def _good_config(tiny_dataset, root):
  path = root / "good.config"
  path.write_text(helpers.train_pipeline_text(tiny_dataset, num_steps=2))
  return path


def _train(config, logdir, *flags):
  return helpers.run_entry_point("train.py", "--config_path", config,
                                 "--logdir", logdir, *flags)


def _write_lock(logdir, pid, host):
  logdir.mkdir()
  owner = {"pid": pid, "host": host, "started": "2026-01-01 00:00:00"}
  (logdir / run_lock.LOCK_NAME).write_text(json.dumps(owner))
  return owner


def test_a_logdir_in_use_is_refused_and_left_alone(good_config, root):
  # A live process on this host holds it: this test's own.
  logdir = root / "in_use"
  owner = _write_lock(logdir, os.getpid(), socket.gethostname())
  result = _train(good_config, logdir)
  helpers.assert_one_named_error(result, [
      f"--logdir {logdir} is in use by another run (process {os.getpid()} "
      f"on host {socket.gethostname()}", "wait for it to end or give "
      "another --logdir"])
  assert os.listdir(logdir) == [run_lock.LOCK_NAME]
  assert json.loads((logdir / run_lock.LOCK_NAME).read_text()) == owner


def test_a_lock_of_another_host_says_how_to_remove_it(good_config, root):
  logdir = root / "other_host"
  _write_lock(logdir, 4242, "gpu-node-7")
  lock = logdir / run_lock.LOCK_NAME
  result = _train(good_config, logdir)
  helpers.assert_one_named_error(result, [
      "locked by process 4242 on host gpu-node-7", f"delete {lock}"])
  assert os.listdir(logdir) == [run_lock.LOCK_NAME]


def _dead_pid():
  with subprocess.Popen(["true"]) as process:  # ends at once
    process.wait()
  return process.pid


@pytest.mark.slow
def test_stale_lock_is_taken_over_and_epochs_override_steps(good_config,
                                                            root):
  # A crashed run's lock (its process is gone); the config has num_steps 2,
  # the override asks for 0.25 epochs: 16 examples / batch 4 -> 1 step.
  logdir = root / "stale"
  dead = _dead_pid()
  _write_lock(logdir, dead, socket.gethostname())
  result = _train(good_config, logdir, "--config_override",
                  "train_config { num_epochs: 0.25 }")
  assert result.returncode == 0, result.stderr[-3000:]
  assert (f"--logdir {logdir}: taking over the lock of process {dead}, "
          "which is no longer running") in result.stdout
  assert "Training done at step 1" in result.stdout
  assert run_lock.LOCK_NAME not in os.listdir(logdir)  # released
  saved = (logdir / "pipeline.config").read_text()
  assert "num_steps: 1\n" in saved and "num_epochs: 0.25" in saved


@pytest.mark.slow
def test_a_finite_divergence_stops_without_a_checkpoint(tiny_dataset, root):
  # Adam at lr 1e6: the loss goes from ~4 at step 1 to ~1e13 at step 2.
  config = root / "diverge.config"
  config.write_text(helpers.train_pipeline_text(tiny_dataset, num_steps=6).replace(
      "learning_rate: 0.003", "learning_rate: 1000000.0"))
  logdir = root / "diverge"
  result = _train(config, logdir)
  helpers.assert_one_named_error(result, [
      "the loss diverged at step 2: smoothed, ", "is over "
      "train_config.divergence_factor (1000) times its running minimum",
      "training stopped at step 2", "The last good checkpoint is kept: none"])
  assert not [name for name in os.listdir(logdir) if name.startswith("ckpt")]
  assert run_lock.LOCK_NAME not in os.listdir(logdir)


def test_num_steps_zero_is_an_error(good_config, root):
  logdir = root / "zero_steps"
  result = _train(good_config, logdir, "--num_steps", "0")
  helpers.assert_one_named_error(result, ["--num_steps must be >= 1, got 0"])
  assert not logdir.exists()


def test_a_zero_byte_shard_is_named(tiny_dataset, root):
  data = root / "empty_shard"
  shutil.copytree(tiny_dataset, data)
  empty = sorted(data.glob("train-*.tfrecord"))[1]
  empty.write_bytes(b"")
  config = root / "empty_shard.config"
  config.write_text(helpers.train_pipeline_text(data, num_steps=2))
  logdir = root / "empty_shard_run"
  result = _train(config, logdir)
  assert f"{data}/train-*.tfrecord: 2 files (1 of them empty), 16 examples" \
      in result.stdout
  helpers.assert_one_named_error(result, [
      "empty_shard.config: train_input_reader.tf_record_input_path: ",
      f"{empty} is empty (0 bytes, no record)", "copy or convert it again"])
  assert not logdir.exists()


def _unlabelled_folder(root):
  """Four images whose label PNGs are all the ignore label 255."""
  images, labels = root / "ignored" / "images", root / "ignored" / "labels"
  images.mkdir(parents=True)
  labels.mkdir()
  rng = np.random.default_rng(0)
  for i in range(4):
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), np.uint8)).save(
        images / f"im{i}.png")
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(labels / f"im{i}.png")
  return images, labels


def test_a_split_without_a_labelled_pixel(root):
  images, labels = _unlabelled_folder(root)
  out = root / "ignored" / "out"
  result = helpers.run_entry_point(
      "-m", "fast_seg.data.convert", "--dataset", "folder", "--images_dir",
      images, "--labels_dir", labels, "--num_classes", "2", "--output_dir",
      out, "--workers", "1", "--noprogress")
  # Converted (a test split without public labels is legitimate), counted.
  assert result.returncode == 0, result.stderr[-3000:]
  assert ("warning: train: 4 of 4 image(s) have only the ignore label; no "
          "labelled pixel in the split: it cannot be trained on"
          ) in result.stdout.splitlines()
  assert sorted(os.listdir(out)) == ["dataset_info.json",
                                     "train-00000-of-00001.tfrecord"]
  # Training refuses it before building anything.
  config = root / "ignored.config"
  config.write_text(helpers.train_pipeline_text(out, num_steps=2, model=(
      helpers.model_text(num_classes=2, filter_scale=0.25))))
  logdir = root / "ignored_run"
  result = _train(config, logdir)
  helpers.assert_one_named_error(result, [
      "ignored.config: train_input_reader: every label pixel of split train "
      f"is the ignore label (per {out}/dataset_info.json", "nothing to train on"])
  assert not logdir.exists()
