"""ResNet-50 v1: slim's topology, dilations and width rule.

The checks every backbone passes are in test_backbones.py.
"""

import pytest
import tf_keras as keras

from fast_seg.builders import hyperparams_builder
from fast_seg.feature_extractors import base
from fast_seg.feature_extractors import resnet_v1
from fast_seg.protos import hyperparams_pb2

_UNITS = {"block1": 3, "block2": 4, "block3": 6, "block4": 3}


def _hyperparams():
  return hyperparams_builder.build(hyperparams_pb2.Hyperparams())


def _build(filter_scale=1.0, output_stride=8, size=64):
  extractor = resnet_v1.ResNetV1_50(_hyperparams(), filter_scale=filter_scale,
                                    output_stride=output_stride)
  inputs = keras.Input((size, size, 3))
  endpoints = extractor.build(inputs)
  return extractor, inputs, endpoints


def _layer(extractor, name):
  matches = [l for l in extractor.layers if l.name == name]
  assert len(matches) == 1, name
  return matches[0]


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
  for unit in range(1, 7):
    conv = _conv2(extractor, "block3", unit)
    assert (conv.strides, conv.dilation_rate) == ((1, 1), (1, 1)), unit


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


def test_layer_names():
  extractor, _, _ = _build()
  names = [l.name for l in extractor.layers]
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
  assert half.width(256) == 128
  thin = resnet_v1.ResNetV1_50(_hyperparams(), filter_scale=0.3)
  assert thin.width(64) == 19
  # ResNet's own rule is plain rounding.
  assert thin.width(64, base.Rounding.PLAIN) == 19


def test_build_in_two_parts_keeps_the_dilations():
  """ICNet's use: early stages on one input, late stages on a resized one."""
  extractor = resnet_v1.ResNetV1_50(_hyperparams(), output_stride=8)
  inputs = keras.Input((64, 64, 3))
  early = extractor.build(inputs, last_stage="block1")
  half = keras.layers.AveragePooling2D(2)(early["block1"])
  late = extractor.build(half, first_stage="block2")
  # Same nominal schedule as a full build: no stride left after block1.
  assert tuple(late["block4"].shape) == (None, 4, 4, 2048)
  assert _conv2(extractor, "block3", 1).dilation_rate == (2, 2)
  assert _conv2(extractor, "block4", 1).dilation_rate == (4, 4)


def test_tf1_layout_multiplies_rates_and_pads_like_slim():
  extractor = resnet_v1.ResNetV1_50(
      _hyperparams(), slim_explicit_padding=True,
      dilation_multipliers={"block3": 2, "block4": 4})
  inputs = keras.Input((64, 64, 3))
  endpoints = extractor.build(inputs)
  assert _conv2(extractor, "block3", 1).dilation_rate == (4, 4)
  assert _conv2(extractor, "block4", 3).dilation_rate == (16, 16)
  assert _conv2(extractor, "block2", 4).dilation_rate == (1, 1)
  # Strided kxk convs: (k-1)//2 before and k//2 after, then unpadded.
  assert _layer(extractor, "resnet_v1_50_conv1_pad").padding == ((3, 3), (3, 3))
  pad = _layer(extractor, "resnet_v1_50_block1_unit_3_conv2_pad")
  assert pad.padding == ((1, 1), (1, 1))
  assert _conv2(extractor, "block1", 3).padding == "valid"
  assert endpoints["block4"].shape[1:3] == (8, 8)


def test_tf1_layout_fields_are_refused_where_not_honoured():
  from fast_seg.builders import feature_extractor_builder  # pylint: disable=import-outside-toplevel
  from fast_seg.protos import feature_extractor_pb2  # pylint: disable=import-outside-toplevel
  config = feature_extractor_pb2.FeatureExtractor(
      type="mobilenet_v2", slim_explicit_padding=True)
  with pytest.raises(ValueError, match="model.icnet.feature_extractor."
                     "slim_explicit_padding is not supported by mobilenet_v2"):
    feature_extractor_builder.build(config, _hyperparams(),
                                    "model.icnet.feature_extractor")
  config = feature_extractor_pb2.FeatureExtractor(type="resnet_v1_50")
  config.stage_dilation_multipliers.add(stage="stem", multiplier=2)
  with pytest.raises(ValueError, match="not a block of resnet_v1_50"):
    feature_extractor_builder.build(config, _hyperparams())
