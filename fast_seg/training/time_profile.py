"""Where a training run's wall time goes: steps, validation, checkpoints, ...

A long run on a few cores lives or dies by its throughput, and the img/s of
the log line mixes the model with everything around it. The trainer times
each phase of its loop; at the end train.py prints one line and writes
<logdir>/train_time.json, and the training benchmark reports the same
figures, so "slow" can be traced to the step, the first call's tracing, the
validation, the checkpoints or the summaries.

The steps' time includes waiting for the input pipeline (it feeds them
inside the compiled call); `train_benchmark`'s synthetic mode tells the
two apart.
"""

import collections
import contextlib
import json
import os
import time

STEPS = "steps"  # compiled calls after the first (input waits included)
FIRST_CALL = "first_call"  # tracing + the first call's steps
LOGGING = "logging"  # the log line's values (a device sync on GPUs)
IMAGE_SUMMARIES = "image_summaries"
CHECKPOINTS = "checkpoints"
VALIDATION = "validation"
PHASES = (STEPS, FIRST_CALL, LOGGING, IMAGE_SUMMARIES, CHECKPOINTS, VALIDATION)
FILE_NAME = "train_time.json"


class TimeProfile:
  """Seconds per phase of one run of the training loop."""

  def __init__(self, batch_size):
    self.batch_size = batch_size
    self.seconds = collections.defaultdict(float)
    self.steps = {STEPS: 0, FIRST_CALL: 0}
    self._start = time.perf_counter()
    self._called = False

  @contextlib.contextmanager
  def phase(self, name):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.seconds[name] += time.perf_counter() - start

  @contextlib.contextmanager
  def call(self, count):
    """Times one compiled call of `count` steps (the first one apart)."""
    name = STEPS if self._called else FIRST_CALL
    self._called = True
    self.steps[name] += count
    with self.phase(name):
      yield

  def summary(self):
    """{'wall_s', 'phases': {name: seconds}, 'other_s', images per second
    overall and of the steps alone (after the first call)}."""
    wall = time.perf_counter() - self._start
    phases = {name: round(self.seconds.get(name, 0.0), 6) for name in PHASES}
    steps = self.steps[STEPS] + self.steps[FIRST_CALL]
    return {
        "wall_s": round(wall, 6), "phases": phases,
        "other_s": round(max(wall - sum(phases.values()), 0.0), 6),
        "steps": steps, "batch_size": self.batch_size,
        "images_per_second": steps * self.batch_size / max(wall, 1e-9),
        "step_images_per_second": (
            self.steps[STEPS] * self.batch_size / self.seconds[STEPS]
            if self.seconds.get(STEPS) else None),
    }


def describe(summary):
  """One line: the wall time and each phase's share of it."""
  wall = max(summary["wall_s"], 1e-9)
  shares = [f"{name.replace('_', ' ')} {100 * seconds / wall:.1f}%"
            for name, seconds in summary["phases"].items() if seconds > 0]
  shares.append(f"other {100 * summary['other_s'] / wall:.1f}%")
  rate = summary["step_images_per_second"]
  return (f"Time: {summary['wall_s']:.0f} s for {summary['steps']} steps, "
          f"{summary['images_per_second']:.1f} img/s end to end"
          + (f" ({rate:.1f} img/s in the steps after the first call)"
             if rate else "") + ": " + ", ".join(shares))


def write(summary, logdir):
  with open(os.path.join(logdir, FILE_NAME), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
