"""Hyperparams builder: defaults, non-defaults, errors."""

import numpy as np
import pytest
from google.protobuf import text_format
import tf_keras as keras

from fast_seg.builders import hyperparams_builder
from fast_seg.protos import hyperparams_pb2


def _build(text):
  return hyperparams_builder.build(text_format.Parse(text, hyperparams_pb2.Hyperparams()))


def test_defaults():
  hp = _build("")
  init = hp.initializer()
  assert isinstance(init, keras.initializers.VarianceScaling)
  assert init.scale == 2.0 and init.mode == "fan_in"
  # A fresh initializer per layer, so same-shaped kernels differ.
  a = hp.conv2d(4, 3, name="a")
  b = hp.conv2d(4, 3, name="b")
  a.build((None, 8, 8, 4))
  b.build((None, 8, 8, 4))
  assert not np.allclose(a.kernel.numpy(), b.kernel.numpy())
  assert hp.regularizer is None
  bn = hp.batch_norm("bn")
  assert bn.momentum == pytest.approx(0.997) and bn.epsilon == pytest.approx(1e-5)
  assert bn.trainable
  conv = hp.conv2d(8, 3, name="c", strides=2, dilation_rate=1)
  assert conv.padding == "same" and not conv.use_bias and conv.strides == (2, 2)


def test_non_defaults():
  hp = _build("initializer { truncated_normal_initializer { stddev: 0.02 } } "
              "regularizer { l2_regularizer { weight: 0.0004 } } "
              "batch_norm { decay: 0.9 epsilon: 0.001 train: false }")
  assert isinstance(hp.initializer(), keras.initializers.TruncatedNormal)
  assert hp.initializer().stddev == pytest.approx(0.02)
  assert hp.regularizer.l2 == pytest.approx(0.0004)
  bn = hp.batch_norm("bn")
  assert bn.momentum == pytest.approx(0.9) and not bn.trainable
  conv = hp.conv2d(4, 1, name="c")
  assert conv.kernel_regularizer is hp.regularizer


def test_l1_and_variance_scaling_modes():
  hp = _build("initializer { variance_scaling_initializer { scale: 1.0 mode: FAN_AVG distribution: UNIFORM } } "
              "regularizer { l1_regularizer { weight: 0.1 } }")
  init = hp.initializer()
  assert init.mode == "fan_avg" and init.distribution == "uniform"
  assert hp.regularizer.l1 == pytest.approx(0.1)


def test_bad_values_name_the_field():
  with pytest.raises(ValueError, match="batch_norm.decay"):
    _build("batch_norm { decay: 1.5 }")
  with pytest.raises(ValueError, match="hyperparams"):
    hyperparams_builder.build(hyperparams_pb2.BatchNorm())
