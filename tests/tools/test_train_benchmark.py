"""Training throughput modes, train.py's own loop included (no timings asserted)."""

import pytest

from fast_seg.tools import train_benchmark
from fast_seg.training import time_profile
from tests import helpers


def test_train_py_mode_runs_train_loop_and_reports_its_time(tiny_dataset):
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=100, checkpoint_every=2))
  result = train_benchmark.measure(config, train_benchmark.TRAIN_PY, steps=3)
  summary = result["time"]
  assert result["steps"] == summary["steps"] == 3
  assert result["batch_size"] == 4
  # The rate is of the steps after the first call; the end-to-end one too.
  assert result["images_per_second"] == summary["step_images_per_second"]
  assert result["images_per_second"] == pytest.approx(
      2 * 4 / summary["phases"][time_profile.STEPS], rel=1e-3)
  assert result["end_to_end_images_per_second"] == summary["images_per_second"]
  assert summary["phases"][time_profile.CHECKPOINTS] > 0  # steps 2 and 3


def test_unknown_mode_is_refused(tiny_dataset):
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset))
  with pytest.raises(ValueError, match="--modes: unknown 'fast'; allowed: "
                     "synthetic, pipeline, together, synthetic_memory_saving, "
                     "train_py"):
    train_benchmark.measure(config, "fast", steps=1)
