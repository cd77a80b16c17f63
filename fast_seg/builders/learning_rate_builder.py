"""Builds a learning-rate schedule from a `LearningRate` proto."""

from fast_seg.protos import optimizer_pb2
from fast_seg.core import learning_schedules
from fast_seg.utils import config_util


def _positive(value, field):
  if value <= 0:
    raise ValueError(f"{field} must be > 0, got {value}")
  return value


def _in_range(value, low, high, field):
  if not low <= value <= high:
    raise ValueError(f"{field} must be in [{low:g}, {high:g}], got {value:g}")
  return value


def _decay_steps(value, field):
  if value < 0:
    raise ValueError(f"{field} must be >= 0 (0: the rest of training), got {value}")
  return value


def build(config, num_steps, field_path="learning_rate"):
  """Builds the schedule, with warmup when configured.

  Args:
    config: optimizer_pb2.LearningRate.
    num_steps: train_config.num_steps; decay_steps 0 means "the rest of
      training" (num_steps minus warmup).
    field_path: where `config` sits in the pipeline, for error messages.

  Returns:
    A tf_keras LearningRateSchedule.

  Raises:
    ValueError: empty oneof or out-of-range values, naming the field.
  """
  config_util.check_type(config, optimizer_pb2.LearningRate, field_path)
  which = config_util.require_oneof(config, "learning_rate", field_path)
  warmup_steps = config.warmup.steps if config.HasField("warmup") else 0
  if warmup_steps < 0:
    raise ValueError(f"{field_path}.warmup.steps must be >= 0, got {warmup_steps}")
  remaining = max(num_steps - warmup_steps, 1)
  c = getattr(config, which)
  path = f"{field_path}.{which}"
  if which == "constant_learning_rate":
    schedule = learning_schedules.Constant(
        _positive(c.learning_rate, f"{path}.learning_rate"))
  elif which == "polynomial_decay_learning_rate":
    initial = _positive(c.initial_learning_rate, f"{path}.initial_learning_rate")
    schedule = learning_schedules.PolynomialDecay(
        initial, _decay_steps(c.decay_steps, f"{path}.decay_steps") or remaining,
        _in_range(c.end_learning_rate, 0.0, initial, f"{path}.end_learning_rate"),
        _positive(c.power, f"{path}.power"))
  elif which == "exponential_decay_learning_rate":
    initial = _positive(c.initial_learning_rate, f"{path}.initial_learning_rate")
    schedule = learning_schedules.ExponentialDecay(
        initial, _positive(c.decay_steps, f"{path}.decay_steps"),
        _in_range(_positive(c.decay_factor, f"{path}.decay_factor"), 0.0, 1.0,
                  f"{path}.decay_factor"), c.staircase,
        _in_range(c.min_learning_rate, 0.0, initial, f"{path}.min_learning_rate"))
  else:
    schedule = learning_schedules.CosineDecay(
        _positive(c.initial_learning_rate, f"{path}.initial_learning_rate"),
        _decay_steps(c.decay_steps, f"{path}.decay_steps") or remaining,
        _in_range(c.alpha, 0.0, 1.0, f"{path}.alpha"))
  if warmup_steps:
    start = config.warmup.start_learning_rate
    if start < 0:
      raise ValueError(f"{field_path}.warmup.start_learning_rate must be >= 0, "
                       f"got {start:g}")
    schedule = learning_schedules.Warmup(schedule, warmup_steps, start)
  return schedule
