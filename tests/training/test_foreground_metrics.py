"""Binary models' training log: foreground precision, recall and IoU.

The step counts TP, FP and FN of its batch (main head, model threshold,
the binary loss's foreground rule, ignored pixels left out), sums them over
replicas and steps, and each log line prints and restarts them.
"""

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import metrics
from fast_seg.core import standard_fields as fields
from fast_seg.training import run_settings
from fast_seg.training import train_step
from fast_seg.training import trainer as trainer_lib
from tests import helpers

# Small (fast to trace). The auxiliary target is a second one-channel head;
# only the main one is scored.
_ARCH = dict(arch="dilated_fcn", extractor="mobilenet_v1", num_classes=6,
             filter_scale=0.25)
_MODEL = helpers.model_text(
    **_ARCH, extra="context_depth: 16 decoder_depth: 16 "
    "binary_output { foreground_class_ids: 1 }",
    loss="binary_cross_entropy {} auxiliary_target { class_ids: 3 weight: 0.3 }")
_LINE = re.compile(r"^step (\d+)/\d+ .* loss \S+ \([^)]*\)  precision (\S+) "
                   r"recall (\S+) iou (\S+)  lr ", re.MULTILINE)
_TIMEOUT_S = 240
_RESULT = "RESULT "


def test_batch_counts_by_hand():
  # Foreground ids 2 and 3, threshold 0.4: id 1 is background, and a logit
  # of -0.2 (p = 0.45) is foreground although below p = 0.5.
  model = model_builder.build(helpers.model_config(
      **_ARCH, loss="binary_cross_entropy {}",
      extra="binary_output { foreground_class_ids: [2, 3] threshold: 0.4 }"))
  labels = tf.constant([[2, 3, 1], [0, 255, 2]], tf.int32)[None, ..., None]
  logits = tf.constant([[0.0, 2.0, -0.2], [-3.0, 5.0, -1.0]])[None, ..., None]
  # TP (0,0) (0,1); FP (0,2); TN (1,0); ignored (1,1); FN (1,2).
  eager = train_step.binary_batch_counts(model, logits, labels).numpy()
  np.testing.assert_array_equal(eager, [2, 1, 1])
  compiled = tf.function(
      lambda x, y: train_step.binary_batch_counts(model, x, y),
      jit_compile=True)(logits, labels).numpy()  # as under use_xla
  np.testing.assert_array_equal(compiled, eager)
  assert metrics.precision_recall_iou(eager) == pytest.approx(
      {"precision": 2 / 3, "recall": 2 / 3, "iou": 2 / 4})


def _scalars(directory, prefix):
  """{tag: {step: value}} of the scalars under `prefix` in the event files."""
  values = {}
  for path in directory.glob("events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        if value.tag.startswith(prefix):
          values.setdefault(value.tag, {})[event.step] = float(
              tf.make_ndarray(value.tensor))
  return values


def _foreground_pixels(trainer, first, count):
  """Foreground-labelled pixels of global batches first .. first + count - 1."""
  return sum(int(np.sum(batch[fields.InputFields.label].numpy() == 1)) for batch in
             trainer.build_dataset().skip(first).take(count))


def test_log_line_and_tensorboard_have_foreground_metrics(
    tiny_dataset, tmp_path, capsys, monkeypatch):
  # Logs at step 4 (two calls of 2 steps) and at the last step, 6.
  config = helpers.pipeline_config(helpers.deterministic_train_pipeline_text(
      tiny_dataset, model=_MODEL, num_steps=6, checkpoint_every=6,
      extra_train="steps_per_call: 2").replace(
          "log_every_n_steps: 2", "log_every_n_steps: 4"))
  trainer = trainer_lib.Trainer(config, str(tmp_path),
                                run_settings.build_strategy("one_device"))
  logged_counts = []
  original = metrics.precision_recall_iou
  monkeypatch.setattr(metrics, "precision_recall_iou", lambda counts: (
      logged_counts.append([int(c) for c in counts]) or original(counts)))
  result = trainer.train(6)
  lines = _LINE.findall(capsys.readouterr().out)
  assert [int(line[0]) for line in lines] == [4, 6], lines
  # Each line counts every step since the previous one, and only those:
  # every true-foreground pixel is a TP or an FN, whatever the weights.
  assert [tp + fn for tp, _, fn in logged_counts] == [
      _foreground_pixels(trainer, 0, 4), _foreground_pixels(trainer, 4, 2)]
  for _, *values in lines:
    precision, recall, iou = map(float, values)
    assert all(0.0 <= v <= 1.0 for v in (precision, recall, iou)), values
    assert iou <= min(precision, recall) + 1e-3, values
  # The last line's values come back; its counts restarted after it.
  assert [f"{result[k]:.3f}" for k in ("precision", "recall", "iou")] == list(
      lines[-1][1:])
  np.testing.assert_array_equal(trainer.foreground_counts.numpy(), [0, 0, 0])
  scalars = _scalars(tmp_path / "train", "metrics/")
  assert set(scalars) == {"metrics/foreground_precision",
                          "metrics/foreground_recall", "metrics/foreground_iou"}
  for (step, *values) in lines:
    for name, value in zip(("precision", "recall", "iou"), values):
      logged = scalars[f"metrics/foreground_{name}"][int(step)]
      assert math.isclose(logged, float(value), abs_tol=5e-4), name


def test_multi_class_log_line_is_unchanged(tiny_dataset, tmp_path, capsys):
  model = helpers.model_text(**_ARCH, extra="context_depth: 16 decoder_depth: 16")
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2, model=model))
  trainer = trainer_lib.Trainer(config, str(tmp_path),
                                run_settings.build_strategy("one_device"))
  assert trainer.foreground_counts is None
  result = trainer.train(2)
  assert re.search(r"^step 2/2 .* loss \S+ \(logits=\S+ regularization=\S+\)"
                   r"  lr \S+  \S+ img/s  ETA ", capsys.readouterr().out,
                   re.MULTILINE)
  assert not {"precision", "recall", "iou"} & set(result)
  assert not _scalars(tmp_path / "train", "metrics/")


# Two replicas on two logical CPUs: a process of its own, since logical
# devices must be set before TensorFlow starts.
_DRIVER = f"""
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from fast_seg.core import standard_fields as fields
from fast_seg.training import run_settings
from fast_seg.training import train_step
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import config_util
config = config_util.load_pipeline_config(sys.argv[1])
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
trainer = trainer_lib.Trainer(config, sys.argv[2], strategy)
dataset = trainer.build_dataset()
iterator = trainer.distribute(dataset)
for _ in range(2):
  trainer.train_function(iterator)
labels = [batch[fields.InputFields.label].numpy() for batch in dataset.take(2)]
print({_RESULT!r} + json.dumps({{
    "replicas": strategy.num_replicas_in_sync,
    "counts": trainer.foreground_counts.numpy().tolist(),
    "foreground": int(sum((l == 1).sum() for l in labels)),
    "pixels": int(sum(l.size for l in labels))}}), flush=True)
"""


@pytest.mark.slow
def test_counts_sum_over_replicas(tiny_dataset, tmp_path):
  # Every true-foreground pixel of both global batches (two calls of one
  # step) is a TP or an FN, whatever the weights; a mean over the replicas,
  # or one replica's counts, would give about half.
  config_path = tmp_path / "pipeline.config"
  config_path.write_text(helpers.deterministic_train_pipeline_text(
      tiny_dataset, model=_MODEL, num_steps=2))
  process = subprocess.run(
      [sys.executable, "-c", _DRIVER, str(config_path), str(tmp_path / "run")],
      cwd=str(helpers.REPO_ROOT), capture_output=True, text=True,
      timeout=_TIMEOUT_S, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
      check=False)
  assert process.returncode == 0, process.stderr[-4000:]
  result = json.loads(next(line for line in process.stdout.splitlines()
                           if line.startswith(_RESULT))[len(_RESULT):])
  assert result["replicas"] == 2
  true_positive, false_positive, false_negative = result["counts"]
  assert result["foreground"] > 0
  assert true_positive + false_negative == result["foreground"]
  assert true_positive + false_positive <= result["pixels"]
