"""Builds the layer factory every model uses from a `Hyperparams` proto.

This plays the role of slim's arg_scope: feature extractors and heads ask the
factory for convs and batch norms, so initializer, regularizer and batch-norm
settings are set once in the config and reach every layer.
"""

import tf_keras as keras

from fast_seg.protos import hyperparams_pb2
from fast_seg.utils import config_util


class ConvHyperparams:
  """Creates Keras conv / batch-norm layers with the configured hyperparams."""

  def __init__(self, initializer_config, regularizer, bn_decay, bn_epsilon,
               bn_train):
    self._initializer_config = initializer_config
    self.regularizer = regularizer
    self.bn_decay = bn_decay
    self.bn_epsilon = bn_epsilon
    self.bn_train = bn_train

  def initializer(self):
    """A new initializer per layer: tf_keras gives every call of one unseeded
    instance the same values, which would make all same-shaped kernels equal."""
    return _build_initializer(self._initializer_config)

  def conv2d(self, filters, kernel_size, name, strides=1, dilation_rate=1,
             use_bias=False, activation=None, padding="same"):
    """A Conv2D ('same'-padded unless told); bias only where no batch norm
    follows."""
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, dilation_rate=dilation_rate,
        padding=padding, use_bias=use_bias, activation=activation,
        kernel_initializer=self.initializer(),
        kernel_regularizer=self.regularizer, name=name)

  def depthwise_conv2d(self, kernel_size, name, strides=1, dilation_rate=1,
                       padding="same"):
    """A DepthwiseConv2D ('same'-padded unless told) without bias (batch
    norm follows)."""
    return keras.layers.DepthwiseConv2D(
        kernel_size, strides=strides, dilation_rate=dilation_rate,
        padding=padding, use_bias=False,
        depthwise_initializer=self.initializer(),
        depthwise_regularizer=self.regularizer, name=name)

  def batch_norm(self, name):
    """Batch norm; frozen (inference mode, not trainable) when bn_train is False."""
    return keras.layers.BatchNormalization(
        momentum=self.bn_decay, epsilon=self.bn_epsilon,
        trainable=self.bn_train, name=name)


def _build_initializer(config):
  which = config.WhichOneof("initializer_oneof")
  if which is None:
    return keras.initializers.VarianceScaling(
        scale=2.0, mode="fan_in", distribution="truncated_normal")
  if which == "truncated_normal_initializer":
    c = config.truncated_normal_initializer
    return keras.initializers.TruncatedNormal(mean=c.mean, stddev=c.stddev)
  if which == "variance_scaling_initializer":
    c = config.variance_scaling_initializer
    mode = hyperparams_pb2.VarianceScalingInitializer.Mode.Name(c.mode).lower()
    distribution = hyperparams_pb2.VarianceScalingInitializer.Distribution.Name(
        c.distribution).lower()
    return keras.initializers.VarianceScaling(
        scale=c.scale, mode=mode, distribution=distribution)
  return keras.initializers.GlorotUniform()


def _build_regularizer(config, field_path):
  which = config.WhichOneof("regularizer_oneof")
  if which is None:
    return None
  weight = getattr(config, which).weight
  if weight < 0:  # Keras takes it, and the penalty then rewards large weights
    raise ValueError(f"{field_path}.{which}.weight must be >= 0, got {weight}")
  if which == "l2_regularizer":
    # Keras l2 adds weight * sum(w^2); slim's l2 added weight * sum(w^2) / 2.
    return keras.regularizers.L2(weight)
  return keras.regularizers.L1(weight)


def build(config, field_path="hyperparams"):
  """Builds a ConvHyperparams from a Hyperparams proto.

  Args:
    config: hyperparams_pb2.Hyperparams. Unset parts use He initialisation,
      no regularizer and the BatchNorm defaults.
    field_path: where `config` sits in the pipeline, for error messages
      (e.g. 'model.icnet.hyperparams').

  Returns:
    ConvHyperparams.

  Raises:
    ValueError: config is not a Hyperparams proto or a value is out of range.
  """
  config_util.check_type(config, hyperparams_pb2.Hyperparams, field_path)
  bn = config.batch_norm
  if not 0.0 <= bn.decay < 1.0:
    raise ValueError(
        f"{field_path}.batch_norm.decay must be in [0, 1), got {bn.decay}")
  if bn.epsilon <= 0.0:
    raise ValueError(
        f"{field_path}.batch_norm.epsilon must be > 0, got {bn.epsilon}")
  return ConvHyperparams(
      initializer_config=config.initializer,
      regularizer=_build_regularizer(config.regularizer,
                                     f"{field_path}.regularizer"),
      bn_decay=bn.decay, bn_epsilon=bn.epsilon, bn_train=bn.train)
