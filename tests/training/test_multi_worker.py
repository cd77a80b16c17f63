"""Two local MultiWorkerMirroredStrategy workers train like one device.

Each worker is its own process (TF_CONFIG on 127.0.0.1); the test compares
their final losses and the chief's checkpoint with a one_device run of the
same config and global batch. What makes the runs comparable:

- the same initial weights: every run seeds Keras (the chief's values are
  broadcast to the other worker anyway);
- batch normalization frozen: per-replica batch statistics would differ
  from those of one big batch;
- the same global batches: no shuffle, no random augmentation (a crop of the
  full 64x64), and tf.data's AUTO sharding gives each worker one of the two
  equally long TFRecord shards; a single-worker batch of 4 interleaves the
  two shards, so it holds the same 4 examples as the two workers' halves
  (see input_reader_builder).

Runtime: about a minute of CPU time (three TF processes, run at once).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

from tests import helpers

STEPS = 3
TIMEOUT_S = 240
# Float sums run in another order across replicas; Adam then moves weights
# by ~lr per step, so differences stay near float32 rounding.
RTOL = 1e-4
_RESULT = "RESULT "
_DRIVER = f"""
import json, sys
import tf_keras
tf_keras.utils.set_random_seed(0)
from fast_seg.training import train_lib
from fast_seg.utils import config_util
config = config_util.load_pipeline_config(sys.argv[1])
result = train_lib.train(config, sys.argv[2], strategy=sys.argv[3])
print({_RESULT!r} + json.dumps(result), flush=True)
"""


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _start(config_path, logdir, strategy, env):
  return subprocess.Popen(
      [sys.executable, "-c", _DRIVER, str(config_path), str(logdir), strategy],
      cwd=str(helpers.REPO_ROOT), env=env, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)


def _finish(processes):
  """Waits for every process; returns each one's RESULT dict."""
  outputs = []
  try:
    for process in processes:
      outputs.append(process.communicate(timeout=TIMEOUT_S))
  except subprocess.TimeoutExpired:
    for process in processes:
      process.kill()
    raise AssertionError(f"training did not finish in {TIMEOUT_S} s")
  results = []
  for i, (process, (stdout, stderr)) in enumerate(zip(processes, outputs)):
    assert process.returncode == 0, (
        f"process {i} exited {process.returncode}:\n{stdout[-2000:]}\n"
        f"{stderr[-4000:]}")
    lines = [l for l in stdout.splitlines() if l.startswith(_RESULT)]
    assert lines, f"process {i} printed no result:\n{stdout[-2000:]}"
    results.append(json.loads(lines[-1][len(_RESULT):]))
  return results


def _checkpoint(path):
  reader = tf.train.load_checkpoint(path)
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if name.startswith("model/")}


def test_two_workers_match_one_device(tiny_dataset, tmp_path):
  model = helpers.model_text(
      arch="icnet", extractor="mobilenet_v2", num_classes=6, filter_scale=0.25,
      extra="hyperparams { batch_norm { train: false } }")
  text = helpers.train_pipeline_text(tiny_dataset, num_steps=STEPS, model=model)
  text = text.replace(
      "data_augmentation_options { random_horizontal_flip {} }", "")
  text = text.replace("train_input_reader {",
                      "train_input_reader { shuffle: false")
  config_path = tmp_path / "pipeline.config"
  config_path.write_text(text)
  assert "random_horizontal_flip" not in text
  assert helpers.pipeline_config(text).train_config.batch_size == 4

  ports = _free_ports(2)
  worker_tmp = tmp_path / "worker_tmp"
  worker_tmp.mkdir()
  workers = []
  for index in range(2):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TMPDIR=str(worker_tmp),
               TF_CONFIG=json.dumps({
                   "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                   "task": {"type": "worker", "index": index}}))
    workers.append(_start(config_path, tmp_path / "multi", "multi_worker", env))
  # The reference alongside: it shares nothing with the workers.
  reference = _start(config_path, tmp_path / "single", "one_device",
                     dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  chief, other, single = _finish(workers + [reference])

  assert chief["step"] == other["step"] == single["step"] == STEPS
  print("losses: multi_worker", chief, "one_device", single)
  for name, value in single.items():
    np.testing.assert_allclose(chief[name], value, rtol=RTOL, err_msg=name)
    np.testing.assert_allclose(other[name], value, rtol=RTOL, err_msg=name)
  # Only the chief wrote to the logdir; the other worker's copies are gone.
  latest = tf.train.latest_checkpoint(str(tmp_path / "multi"))
  assert latest.endswith(f"ckpt-{STEPS}")
  assert not list(worker_tmp.iterdir())
  multi_weights = _checkpoint(latest)
  single_weights = _checkpoint(str(tmp_path / "single" / f"ckpt-{STEPS}"))
  assert multi_weights.keys() == single_weights.keys()
  worst = 0.0
  for name, expected in single_weights.items():
    got = multi_weights[name]
    scale = max(np.abs(expected).max(), 1e-3)
    worst = max(worst, np.abs(got - expected).max() / scale)
  print(f"largest weight difference relative to the tensor's max: {worst:.2e}")
  assert worst < RTOL
