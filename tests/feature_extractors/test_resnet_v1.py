"""Tests for the ResNet-50 v1 feature extractor."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from google.protobuf import text_format

from fast_seg import feature_extractors
from fast_seg.builders import hyperparams_builder
from fast_seg.feature_extractors import resnet_v1
from fast_seg.protos import hyperparams_pb2

_DEPTHS = {"stem": 64, "block1": 256, "block2": 512, "block3": 1024,
           "block4": 2048}
_UNITS = {"block1": 3, "block2": 4, "block3": 6, "block4": 3}


def _hyperparams(text=""):
  config = hyperparams_pb2.Hyperparams()
  text_format.Merge(text, config)
  return hyperparams_builder.build(config)


def _build(filter_scale=1.0, output_stride=8, size=64, hyperparams=None):
  extractor = resnet_v1.ResNetV1_50(hyperparams or _hyperparams(),
                                    filter_scale=filter_scale,
                                    output_stride=output_stride)
  inputs = keras.Input((size, size, 3))
  endpoints = extractor.build(inputs)
  return extractor, inputs, endpoints


def _layer(extractor, name):
  matches = [l for l in extractor.layers if l.name == name]
  assert len(matches) == 1, name
  return matches[0]


def test_registered():
  assert feature_extractors.get("resnet_v1_50") is resnet_v1.ResNetV1_50
  assert resnet_v1.ResNetV1_50.name == "resnet_v1_50"


def test_unknown_type_lists_allowed():
  with pytest.raises(ValueError) as e:
    feature_extractors.get("xyz")
  assert str(e.value) == ("feature_extractor.type: unknown 'xyz'; allowed: "
                          "mobilenet_v1, mobilenet_v2, resnet_v1_50")


@pytest.mark.parametrize("output_stride", [4, 7, 64])
def test_bad_output_stride(output_stride):
  with pytest.raises(ValueError, match=r"feature_extractor\.output_stride.*"
                     r"allowed: 8, 16, 32"):
    resnet_v1.ResNetV1_50(_hyperparams(), output_stride=output_stride)


def test_bad_filter_scale():
  with pytest.raises(ValueError, match=r"feature_extractor\.filter_scale"):
    resnet_v1.ResNetV1_50(_hyperparams(), filter_scale=0.0)


@pytest.mark.parametrize("output_stride,strides", [
    (8, {"stem": 4, "block1": 8, "block2": 8, "block3": 8, "block4": 8}),
    (16, {"stem": 4, "block1": 8, "block2": 16, "block3": 16, "block4": 16}),
    (32, {"stem": 4, "block1": 8, "block2": 16, "block3": 32, "block4": 32}),
])
def test_endpoint_shapes(output_stride, strides):
  extractor, _, endpoints = _build(output_stride=output_stride)
  assert list(endpoints) == list(extractor.stage_names)
  assert extractor.stage_strides == strides
  for stage, tensor in endpoints.items():
    size = 64 // strides[stage]
    assert tuple(tensor.shape) == (None, size, size, _DEPTHS[stage]), stage


def _conv2(extractor, block, unit):
  return _layer(extractor, f"resnet_v1_50_{block}_unit_{unit}_conv2")


def test_dilations_output_stride_8():
  extractor, _, _ = _build(output_stride=8)
  expected_rate = {"block1": 1, "block2": 1, "block3": 2, "block4": 4}
  for block, units in _UNITS.items():
    for unit in range(1, units + 1):
      conv = _conv2(extractor, block, unit)
      assert conv.dilation_rate == (expected_rate[block],) * 2, conv.name
      # Only block1's last unit keeps its stride; the later ones became rates.
      stride = 2 if (block, unit) == ("block1", 3) else 1
      assert conv.strides == (stride, stride), conv.name
  # Every conv of block3/block4 that is not 1x1 is dilated.
  for layer in extractor.layers:
    if isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (3, 3):
      if "_block3_" in layer.name:
        assert layer.dilation_rate == (2, 2)
      if "_block4_" in layer.name:
        assert layer.dilation_rate == (4, 4)


def test_dilations_output_stride_16():
  extractor, _, _ = _build(output_stride=16)
  assert _conv2(extractor, "block2", 4).strides == (2, 2)
  assert _conv2(extractor, "block3", 6).strides == (1, 1)
  assert _conv2(extractor, "block3", 6).dilation_rate == (1, 1)
  for unit in range(1, 4):
    assert _conv2(extractor, "block4", unit).dilation_rate == (2, 2)
  assert extractor.unit_schedule("block3") == ((1, 1),) * 6


def test_stride_on_last_unit_and_shortcuts():
  extractor, _, _ = _build(output_stride=32)
  names = {l.name for l in extractor.layers}
  for block, units in _UNITS.items():
    # The first unit changes depth: projection shortcut; the others: identity.
    assert f"resnet_v1_50_{block}_unit_1_shortcut" in names
    assert f"resnet_v1_50_{block}_unit_1_shortcut_bn" in names
    for unit in range(2, units + 1):
      assert f"resnet_v1_50_{block}_unit_{unit}_shortcut" not in names
    strides = [_conv2(extractor, block, u).strides[0]
               for u in range(1, units + 1)]
    assert strides == ([1] * (units - 1) + [2 if block != "block4" else 1])
  # Identity shortcut of a strided unit is subsampled by a 1x1 max-pool.
  pool = _layer(extractor, "resnet_v1_50_block1_unit_3_shortcut_pool")
  assert pool.pool_size == (1, 1) and pool.strides == (2, 2)
  stem = _layer(extractor, "resnet_v1_50_conv1")
  assert stem.kernel_size == (7, 7) and stem.strides == (2, 2)
  assert stem.filters == 64


def test_layer_names_unique_and_prefixed():
  extractor, _, _ = _build()
  names = [l.name for l in extractor.layers]
  assert len(names) == len(set(names))
  assert all(n.startswith("resnet_v1_50_") for n in names)
  for name in ("resnet_v1_50_conv1", "resnet_v1_50_conv1_bn",
               "resnet_v1_50_block1_unit_1_conv1",
               "resnet_v1_50_block1_unit_1_conv1_bn",
               "resnet_v1_50_block3_unit_6_conv3_bn",
               "resnet_v1_50_block4_unit_1_shortcut"):
    assert name in names
  convs = [l for l in extractor.layers if isinstance(l, keras.layers.Conv2D)]
  bns = [l for l in extractor.layers
         if isinstance(l, keras.layers.BatchNormalization)]
  assert len(convs) == 53 and len(bns) == 53
  assert {b.name for b in bns} == {c.name + "_bn" for c in convs}
  assert not any(c.use_bias for c in convs)


def test_filter_scale_halves_every_width():
  full, _, _ = _build(filter_scale=1.0)
  half, _, endpoints = _build(filter_scale=0.5)
  full_convs = {l.name: l for l in full.layers
                if isinstance(l, keras.layers.Conv2D)}
  half_convs = {l.name: l for l in half.layers
                if isinstance(l, keras.layers.Conv2D)}
  assert set(full_convs) == set(half_convs)
  for name, conv in full_convs.items():
    assert half_convs[name].filters * 2 == conv.filters, name
    in_full = conv.kernel.shape[2]
    in_half = half_convs[name].kernel.shape[2]
    assert in_half * 2 == in_full or in_full == 3, name
  assert endpoints["block1"].shape[-1] == 128
  assert endpoints["block4"].shape[-1] == 1024
  assert half.scaled_depth(256) == 128
  assert resnet_v1.ResNetV1_50(_hyperparams(), filter_scale=0.3).scaled_depth(
      64) == 19


def test_hyperparams_reach_every_layer():
  hyperparams = _hyperparams(
      "regularizer { l2_regularizer { weight: 0.001 } } "
      "batch_norm { train: false epsilon: 0.001 }")
  extractor, _, _ = _build(hyperparams=hyperparams)
  for layer in extractor.layers:
    if isinstance(layer, keras.layers.Conv2D):
      assert layer.kernel_regularizer is hyperparams.regularizer
    if isinstance(layer, keras.layers.BatchNormalization):
      assert not layer.trainable
      assert layer.epsilon == pytest.approx(0.001)


def test_build_in_two_parts_with_external_downsampling():
  """ICNet's use: early stages on one input, late stages on a resized one."""
  extractor = resnet_v1.ResNetV1_50(_hyperparams(), output_stride=8)
  inputs = keras.Input((64, 64, 3))
  early = extractor.build(inputs, last_stage="block1")
  assert list(early) == ["stem", "block1"]
  half = keras.layers.AveragePooling2D(2)(early["block1"])
  late = extractor.build(half, first_stage="block2")
  assert list(late) == ["block2", "block3", "block4"]
  # Same nominal schedule as a full build: no stride left after block1.
  assert tuple(late["block4"].shape) == (None, 4, 4, 2048)
  assert _conv2(extractor, "block3", 1).dilation_rate == (2, 2)
  assert _conv2(extractor, "block4", 1).dilation_rate == (4, 4)
  model = keras.Model(inputs, late["block4"])
  out = model(np.random.RandomState(0).uniform(
      -1, 1, (1, 64, 64, 3)).astype(np.float32))
  assert out.shape == (1, 4, 4, 2048)
  assert np.all(np.isfinite(out.numpy()))


def test_building_a_stage_twice_raises():
  extractor = resnet_v1.ResNetV1_50(_hyperparams())
  inputs = keras.Input((64, 64, 3))
  extractor.build(inputs, last_stage="block1")
  count = len(extractor.layers)
  with pytest.raises(ValueError, match="'block1' is already built"):
    extractor.build(inputs, first_stage="block1", last_stage="block2")
  assert len(extractor.layers) == count


def test_bad_stage_arguments():
  extractor = resnet_v1.ResNetV1_50(_hyperparams())
  inputs = keras.Input((64, 64, 3))
  with pytest.raises(ValueError, match="unknown stage 'block5'"):
    extractor.build(inputs, last_stage="block5")
  with pytest.raises(ValueError, match="comes after"):
    extractor.build(inputs, first_stage="block3", last_stage="block1")


def test_preprocess_subtracts_rgb_means():
  extractor = resnet_v1.ResNetV1_50(_hyperparams())
  images = tf.constant([[[[123.68, 116.78, 103.94], [0.0, 255.0, 10.0]]]])
  out = extractor.preprocess(images).numpy()
  np.testing.assert_allclose(out[0, 0, 0], [0.0, 0.0, 0.0], atol=1e-4)
  np.testing.assert_allclose(out[0, 0, 1], [-123.68, 138.22, -93.94],
                             atol=1e-4)
  assert extractor.preprocess(tf.zeros([1, 2, 2, 3], tf.uint8)).dtype == \
      tf.float32
