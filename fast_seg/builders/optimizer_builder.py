"""Builds a tf_keras optimizer from an `Optimizer` proto."""

import tf_keras as keras

from fast_seg.builders import learning_rate_builder
from fast_seg.protos import optimizer_pb2
from fast_seg.utils import config_util


def build(config, num_steps, field_path="train_config.optimizer"):
  """Builds the optimizer and its learning-rate schedule.

  Args:
    config: optimizer_pb2.Optimizer.
    num_steps: total training steps (for decay_steps 0).
    field_path: where `config` sits in the pipeline, for error messages.

  Returns:
    (optimizer, learning_rate_schedule).

  Raises:
    ValueError: empty oneof (names the field and the choices) or bad values.
  """
  config_util.check_type(config, optimizer_pb2.Optimizer, field_path)
  which = config_util.require_oneof(config, "optimizer", field_path)
  c = getattr(config, which)
  schedule = learning_rate_builder.build(
      c.learning_rate, num_steps, f"{field_path}.{which}.learning_rate")
  _check_values(c, f"{field_path}.{which}")
  if which == "momentum_optimizer":
    optimizer = keras.optimizers.SGD(
        learning_rate=schedule, momentum=c.momentum, nesterov=c.use_nesterov)
  elif which == "adam_optimizer":
    optimizer = keras.optimizers.Adam(
        learning_rate=schedule, beta_1=c.beta_1, beta_2=c.beta_2,
        epsilon=c.epsilon)
  elif which == "adamw_optimizer":
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=c.weight_decay, beta_1=c.beta_1,
        beta_2=c.beta_2, epsilon=c.epsilon)
  else:
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
  return optimizer, schedule



# The allowed values of the optimizers' own fields. Keras checks only SGD's
# momentum, without naming the field; Adam's bias correction divides by
# 1 - beta**t, so a beta of 1 trains to NaN.
_ALLOWED = {
    "momentum": ("in [0, 1]", lambda v: 0.0 <= v <= 1.0),
    "beta_1": ("in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "beta_2": ("in [0, 1)", lambda v: 0.0 <= v < 1.0),
    "epsilon": ("> 0", lambda v: v > 0.0),
    "weight_decay": (">= 0", lambda v: v >= 0.0),
}


def _check_values(config, field_path):
  """Raises a ValueError naming the first optimizer field out of range."""
  for field in config.DESCRIPTOR.fields:
    if field.name in _ALLOWED:
      allowed, is_allowed = _ALLOWED[field.name]
      value = getattr(config, field.name)
      if not is_allowed(value):
        raise ValueError(
            f"{field_path}.{field.name} must be {allowed}, got {value:g}")
