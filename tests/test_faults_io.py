"""Output writing that fails or stops: one named error, nothing half-written.

Each case runs an entry point as a user would (a subprocess) and asserts,
as tests/test_bad_inputs.py does, exit status 2, exactly one `error:` line
naming the path and no traceback; and what is left on disk.

A full disk and a read-only folder cannot be made in CI without root (a
small tmpfs, a read-only mount) and root ignores permission bits: those
cases run the entry point under tests/fault_injection.py, which makes the
low-level writers fail for the paths of a glob as the real fault does.
Where the tests run as a normal user, the read-only cases use a real
`chmod 555` folder instead.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from fast_seg.export import serving
from tests import helpers

INJECT = "tests/fault_injection.py"


def _files(folder):
  """Every path under `folder`, relative, sorted ([] when it is not there)."""
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _config(tiny_dataset, tmp_path, **kwargs):
  path = tmp_path / "pipeline.config"
  path.write_text(helpers.train_pipeline_text(tiny_dataset, **kwargs))
  return path


def _read_only_run(folder, *args):
  """Runs an entry point whose output lies in `folder`, made read-only:
  for real with chmod when not root, else by fault injection."""
  folder.mkdir(exist_ok=True)
  if os.geteuid() != 0:
    folder.chmod(0o555)
    try:
      return helpers.run_entry_point(*args)
    finally:
      folder.chmod(0o755)
  return helpers.run_entry_point(INJECT, "read_only", f"{folder}/*", *args)


@pytest.fixture(name="folder_dataset")
def _folder_dataset(tmp_path):
  """images/ and labels/ of eight 32x32 pairs, for the folder converter."""
  rng = np.random.default_rng(0)
  for sub in ("images", "labels"):
    (tmp_path / sub).mkdir()
  for i in range(8):
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), np.uint8)).save(
        tmp_path / "images" / f"{i}.png")
    Image.fromarray(rng.integers(0, 2, (32, 32), np.uint8)).save(
        tmp_path / "labels" / f"{i}.png")
  return tmp_path


def _convert_args(folder_dataset, output_dir):
  return ("-m", "fast_seg.data.convert", "--dataset", "folder",
          "--images_dir", folder_dataset / "images", "--labels_dir",
          folder_dataset / "labels", "--num_classes", "2",
          "--val_fraction", "0.25", "--workers", "1", "--output_dir",
          output_dir)


# -- read-only output folders: refused before any work ------------------------


def test_train_refuses_a_read_only_logdir(tiny_dataset, tmp_path):
  config = _config(tiny_dataset, tmp_path)
  locked = tmp_path / "locked"
  result = _read_only_run(locked, "train.py", "--config_path", config,
                          "--logdir", locked / "run")
  helpers.assert_one_named_error(
      result, ["--logdir", f"{locked} is not writable"])
  assert _files(locked) == []


def test_export_refuses_a_read_only_output_dir_before_the_work(
    tiny_dataset, tmp_path):
  config = _config(tiny_dataset, tmp_path)
  locked = tmp_path / "locked"
  result = _read_only_run(
      locked, "export.py", "--config_path", config, "--trained_checkpoint",
      tmp_path / "no_checkpoint_needed_yet", "--output_dir", locked / "out",
      "--input_shape", "1,64,64,3")
  helpers.assert_one_named_error(
      result, ["--output_dir", f"{locked} is not writable"])
  assert _files(locked) == []


def test_convert_refuses_a_read_only_output_dir(folder_dataset, tmp_path):
  locked = tmp_path / "locked"
  result = _read_only_run(locked, *_convert_args(folder_dataset,
                                                 locked / "records"))
  helpers.assert_one_named_error(
      result, ["--output_dir", f"{locked} is not writable"])
  assert _files(locked) == []


# -- a full disk: the partial files go, the last good output stays -----------


def test_convert_on_a_full_disk_leaves_no_partial_shard(folder_dataset,
                                                        tmp_path):
  output_dir = tmp_path / "records"
  result = helpers.run_entry_point(
      INJECT, "no_space", f"{output_dir}/train-*.partial",
      *_convert_args(folder_dataset, output_dir))
  helpers.assert_one_named_error(
      result, [f"no space left on {output_dir}/train-00000-of-00001.tfrecord"])
  assert _files(output_dir) == []


@pytest.mark.slow
def test_train_on_a_full_disk_keeps_the_last_good_checkpoint(
    tiny_dataset, tmp_path):
  config = _config(tiny_dataset, tmp_path, num_steps=4, checkpoint_every=2)
  logdir = tmp_path / "run"
  result = helpers.run_entry_point(
      INJECT, "no_space", f"{logdir}/ckpt-4", "train.py", "--config_path",
      config, "--logdir", logdir)
  helpers.assert_one_named_error(
      result, [f"no space left on {logdir}/ckpt-4",
               f"the last good checkpoint is kept: {logdir}/ckpt-2"])
  left = _files(logdir)
  assert not [name for name in left if name.startswith("ckpt-4")], left
  assert "ckpt-2.index" in left and "pipeline.config" in left
  assert ('model_checkpoint_path: "ckpt-2"'
          in (logdir / "checkpoint").read_text())


@pytest.mark.slow
def test_eval_on_a_full_disk_leaves_no_truncated_png(trained_run, tmp_path):
  config = os.path.join(trained_run[1], "pipeline.config")
  eval_dir = tmp_path / "eval"
  result = helpers.run_entry_point(
      INJECT, "no_space", f"{eval_dir}/visualizations/*", "eval.py",
      "--config_path", config, "--checkpoint", trained_run[1],
      "--eval_dir", eval_dir)
  helpers.assert_one_named_error(
      result, [f"no space left on {eval_dir}/visualizations/", ".png"])
  assert not [name for name in _files(eval_dir) if name.endswith(
      (".png", ".partial"))], _files(eval_dir)


def _fake_earlier_export(output_dir):
  """A complete-looking earlier export: its files must stay as they are."""
  (output_dir / serving.SAVED_MODEL_DIR).mkdir(parents=True)
  (output_dir / serving.SAVED_MODEL_DIR / "saved_model.pb").write_bytes(b"old")
  (output_dir / serving.REPORT_NAME).write_text(json.dumps({"old": True}))
  return _files(output_dir)


@pytest.mark.slow
def test_export_on_a_full_disk_keeps_the_earlier_export(trained_run,
                                                        tmp_path):
  output_dir = tmp_path / "out"
  before = _fake_earlier_export(output_dir)
  result = helpers.run_entry_point(
      INJECT, "no_space", f"*/{serving.FROZEN_GRAPH_NAME}", "export.py",
      "--config_path", os.path.join(trained_run[1], "pipeline.config"),
      "--trained_checkpoint", trained_run[1], "--output_dir", output_dir,
      "--input_shape", "1,64,64,3")
  helpers.assert_one_named_error(
      result, [f"no space left on {output_dir}/{serving.FROZEN_GRAPH_NAME}"])
  assert _files(output_dir) == before
  assert (output_dir / serving.REPORT_NAME).read_text() == '{"old": true}'


# -- stopped runs --------------------------------------------------------------


def _start(*args):
  env = dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT),
             TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen([sys.executable, *map(str, args)],
                          cwd=helpers.REPO_ROOT, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(path, process, limit=600):
  """Polls until `path` exists; fails if the process ends first."""
  deadline = time.monotonic() + limit
  while not path.exists():
    assert process.poll() is None, process.communicate()[1][-3000:]
    assert time.monotonic() < deadline, f"{path} never appeared"
    time.sleep(0.05)


@pytest.mark.slow
def test_export_killed_half_way_is_refused_by_predict(trained_run, tmp_path):
  output_dir = tmp_path / "out"
  process = _start(
      "export.py", "--config_path",
      os.path.join(trained_run[1], "pipeline.config"), "--trained_checkpoint",
      trained_run[1], "--output_dir", output_dir, "--input_shape", "1,64,64,3")
  _wait_for(output_dir / "out.partial" / serving.SAVED_MODEL_DIR
            / "saved_model.pb", process)
  process.kill()  # kill -9: no cleanup runs
  process.communicate()
  # Only the staging folder is there, which predict refuses.
  assert _files(output_dir)[0] == "out.partial", _files(output_dir)
  assert not (output_dir / serving.SAVED_MODEL_DIR).exists()
  Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
  result = helpers.run_entry_point(
      "predict.py", "--model", output_dir, "--input", tmp_path / "a.png",
      "--output_dir", tmp_path / "predictions")
  helpers.assert_one_named_error(
      result, [f"--model {output_dir}: an incomplete export",
               serving.REPORT_NAME])


@pytest.mark.slow
def test_compress_stopped_by_sigterm_leaves_nothing(trained_run, tmp_path):
  output_dir = tmp_path / "pruned"
  process = _start(
      "compress.py", "--config_path",
      os.path.join(trained_run[1], "pipeline.config"), "--checkpoint",
      trained_run[1], "--output_dir", output_dir, "--filter_scale", "0.125",
      "--plot")
  _wait_for(output_dir / "ckpt-0.index", process)
  process.send_signal(signal.SIGTERM)
  _, stderr = process.communicate()
  assert process.returncode == 130, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  assert "nothing half-written is left" in stderr
  assert not output_dir.exists(), _files(output_dir)


# -- flags that contradict each other ----------------------------------------


def test_export_refuses_random_weights_with_a_checkpoint(tiny_dataset,
                                                         tmp_path):
  config = _config(tiny_dataset, tmp_path)
  result = helpers.run_entry_point(
      "export.py", "--config_path", config, "--random_weights",
      "--trained_checkpoint", tmp_path / "ckpt-4", "--output_dir",
      tmp_path / "out", "--input_shape", "1,64,64,3")
  helpers.assert_one_named_error(
      result, ["--random_weights", f"--trained_checkpoint {tmp_path}/ckpt-4"])
  assert not (tmp_path / "out").exists()


def test_predict_refuses_an_export_without_its_report(tmp_path):
  export = tmp_path / "export"
  (export / serving.SAVED_MODEL_DIR).mkdir(parents=True)
  Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
  result = helpers.run_entry_point(
      "predict.py", "--model", export, "--input", tmp_path / "a.png",
      "--output_dir", tmp_path / "predictions")
  helpers.assert_one_named_error(
      result, [f"--model {export}: an incomplete export", serving.REPORT_NAME])
