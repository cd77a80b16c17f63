"""Optimizer and learning-rate builders: defaults, non-defaults, errors."""

import math

import pytest
from google.protobuf import text_format
import tf_keras as keras

from fast_seg.builders import learning_rate_builder
from fast_seg.builders import optimizer_builder
from fast_seg.protos import optimizer_pb2


def _lr(text, num_steps=100):
  config = text_format.Parse(text, optimizer_pb2.LearningRate())
  return learning_rate_builder.build(config, num_steps)


def test_constant_default():
  schedule = _lr("constant_learning_rate {}")
  assert float(schedule(0)) == pytest.approx(0.01)
  assert float(schedule(1000)) == pytest.approx(0.01)


def test_polynomial_defaults_to_num_steps():
  schedule = _lr("polynomial_decay_learning_rate { initial_learning_rate: 0.1 power: 0.9 }", 100)
  assert float(schedule(0)) == pytest.approx(0.1)
  assert float(schedule(50)) == pytest.approx(0.1 * 0.5 ** 0.9, rel=1e-5)
  assert float(schedule(100)) == pytest.approx(0.0, abs=1e-7)
  assert float(schedule(500)) == pytest.approx(0.0, abs=1e-7)


def test_exponential_staircase_and_floor():
  schedule = _lr("exponential_decay_learning_rate { initial_learning_rate: 1.0 "
                 "decay_steps: 10 decay_factor: 0.5 min_learning_rate: 0.2 }")
  assert float(schedule(9)) == pytest.approx(1.0)
  assert float(schedule(10)) == pytest.approx(0.5)
  assert float(schedule(25)) == pytest.approx(0.25)
  assert float(schedule(100)) == pytest.approx(0.2)


def test_cosine_with_alpha():
  schedule = _lr("cosine_decay_learning_rate { initial_learning_rate: 1.0 alpha: 0.1 }", 100)
  assert float(schedule(50)) == pytest.approx(0.1 + 0.9 * 0.5, rel=1e-5)
  assert float(schedule(100)) == pytest.approx(0.1, rel=1e-5)


def test_warmup_then_schedule_from_zero():
  schedule = _lr("polynomial_decay_learning_rate { initial_learning_rate: 0.1 power: 1.0 } "
                 "warmup { steps: 10 start_learning_rate: 0.0 }", 110)
  assert float(schedule(0)) == pytest.approx(0.0)
  assert float(schedule(5)) == pytest.approx(0.05)
  assert float(schedule(10)) == pytest.approx(0.1)
  # decay_steps 0 = the 100 steps after warmup.
  assert float(schedule(60)) == pytest.approx(0.05, rel=1e-5)


def test_warmup_poly_is_the_anchors_schedule():
  # The from-scratch CamVid anchors' WarmupPolyLR (per iteration): linear
  # from base / 3 to base over 500 steps, then base * (1 - (t - 500) /
  # (T - 500)) ^ 0.9; the trainval config's 46800 steps.
  schedule = _lr("polynomial_decay_learning_rate { initial_learning_rate: 0.001 power: 0.9 } "
                 "warmup { steps: 500 start_learning_rate: 0.000333333 }", 46800)
  base, total = 0.001, 46800

  def anchor(t):
    if t <= 500:
      alpha = t / 500
      return base * (1 / 3 * (1 - alpha) + alpha)
    return base * (1 - (t - 500) / (total - 500)) ** 0.9

  for step in (0, 1, 250, 499, 500, 501, 10000, 23650, 46000, 46799, 46800):
    assert float(schedule(step)) == pytest.approx(anchor(step), rel=1e-5, abs=1e-9)
  assert float(schedule(23650)) == pytest.approx(0.001 * 0.5 ** 0.9, rel=1e-5)


def test_empty_learning_rate_names_field():
  with pytest.raises(ValueError, match=r"learning_rate.*constant_learning_rate"):
    _lr("")


def test_bad_value_names_field():
  with pytest.raises(ValueError, match="initial_learning_rate"):
    _lr("cosine_decay_learning_rate { initial_learning_rate: -1 }")


@pytest.mark.parametrize("text, match", [
    ("polynomial_decay_learning_rate { decay_steps: -5 }",
     r"learning_rate.polynomial_decay_learning_rate.decay_steps must be >= 0 \(0: the rest"),
    ("cosine_decay_learning_rate { decay_steps: -1 }",
     r"cosine_decay_learning_rate.decay_steps must be >= 0"),
    ("polynomial_decay_learning_rate { initial_learning_rate: 0.1 end_learning_rate: -0.01 }",
     r"end_learning_rate must be in \[0, 0.1\], got -0.01"),
    ("polynomial_decay_learning_rate { initial_learning_rate: 0.1 end_learning_rate: 0.5 }",
     r"end_learning_rate must be in \[0, 0.1\]"),
    ("cosine_decay_learning_rate { alpha: 1.5 }", r"cosine_decay_learning_rate.alpha must be in \[0, 1\]"),
    ("cosine_decay_learning_rate { alpha: -0.1 }", r"alpha must be in \[0, 1\]"),
    ("exponential_decay_learning_rate { decay_factor: 1.5 }", r"decay_factor must be in \[0, 1\]"),
    ("exponential_decay_learning_rate { min_learning_rate: -1 }", r"min_learning_rate must be in"),
    ("constant_learning_rate {} warmup { steps: 10 start_learning_rate: -0.5 }",
     r"learning_rate.warmup.start_learning_rate must be >= 0, got -0.5"),
])
def test_schedules_refuse_values_that_make_no_sense(text, match):
  with pytest.raises(ValueError, match=match):
    _lr(text)


@pytest.mark.parametrize("text, cls, attrs", [
    ("momentum_optimizer { learning_rate { constant_learning_rate {} } momentum: 0.8 use_nesterov: true }",
     keras.optimizers.SGD, {"momentum": 0.8, "nesterov": True}),
    ("adam_optimizer { learning_rate { constant_learning_rate {} } beta_1: 0.5 }",
     keras.optimizers.Adam, {"beta_1": 0.5}),
    ("adamw_optimizer { learning_rate { constant_learning_rate {} } weight_decay: 0.05 }",
     keras.optimizers.AdamW, {"weight_decay": 0.05}),
    ("sgd_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.3 } } }",
     keras.optimizers.SGD, {"momentum": 0.0}),
])
def test_optimizers(text, cls, attrs):
  config = text_format.Parse(text, optimizer_pb2.Optimizer())
  optimizer, schedule = optimizer_builder.build(config, 100)
  assert type(optimizer) is cls  # pylint: disable=unidiomatic-typecheck
  for name, value in attrs.items():
    got = getattr(optimizer, name)
    assert (got == value) if isinstance(value, bool) else math.isclose(float(got), value, rel_tol=1e-6)
  assert schedule is not None


def test_empty_optimizer_names_field():
  with pytest.raises(ValueError, match=r"train_config.optimizer.*momentum_optimizer"):
    optimizer_builder.build(optimizer_pb2.Optimizer(), 100)


def test_missing_learning_rate_names_nested_field():
  config = text_format.Parse("adam_optimizer {}", optimizer_pb2.Optimizer())
  with pytest.raises(ValueError, match=r"adam_optimizer\.learning_rate"):
    optimizer_builder.build(config, 100)
