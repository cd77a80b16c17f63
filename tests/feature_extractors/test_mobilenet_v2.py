"""MobileNetV2: slim's topology, dilations and width rule.

The checks every backbone passes are in test_backbones.py.
"""

import pytest
import tf_keras as keras

from fast_seg.builders import hyperparams_builder
from fast_seg.feature_extractors import base
from fast_seg.feature_extractors import mobilenet_v2
from fast_seg.protos import hyperparams_pb2

# Output depth and nominal stride of expanded_conv (index 0) and
# expanded_conv_1..16, from the (t, c, n, s) table of the paper.
_UNIT_DEPTHS = [16, 24, 24, 32, 32, 32, 64, 64, 64, 64, 96, 96, 96, 160, 160,
                160, 320]
_UNIT_STRIDES = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
_RESIDUAL_UNITS = {2, 4, 5, 7, 8, 9, 11, 12, 14, 15}


def _unit(i):
  return "expanded_conv" if i == 0 else f"expanded_conv_{i}"


def _build(filter_scale=1.0, output_stride=8, size=64):
  extractor = mobilenet_v2.MobileNetV2(
      hyperparams_builder.build(hyperparams_pb2.Hyperparams()),
      filter_scale=filter_scale, output_stride=output_stride)
  inputs = keras.Input((size, size, 3))
  return extractor, inputs, extractor.build(inputs)


def _layers(extractor):
  return {l.name: l for l in extractor.layers}


@pytest.mark.parametrize("value,expected", [
    (32, 32), (16, 16), (12, 16), (3.2, 8), (9, 16), (20, 24), (36, 40),
    (44, 48), (0.5, 8), (80, 80), (1280 * 0.35, 448)])
def test_make_divisible(value, expected):
  assert base.make_divisible(value, 8) == expected


def test_topology_at_full_width():
  extractor, _, _ = _build(output_stride=32)
  layers = _layers(extractor)
  conv = layers["mobilenet_v2_Conv"]
  assert conv.filters == 32 and conv.strides == (2, 2)
  assert conv.kernel_size == (3, 3)
  assert "mobilenet_v2_expanded_conv_expand" not in layers  # t = 1.
  in_depth = 32
  for i in range(17):
    prefix = "mobilenet_v2_" + _unit(i)
    if i > 0:
      assert layers[prefix + "_expand"].filters == 6 * in_depth
      assert prefix + "_expand_bn" in layers
    depthwise = layers[prefix + "_depthwise"]
    assert isinstance(depthwise, keras.layers.DepthwiseConv2D)
    assert depthwise.strides == (_UNIT_STRIDES[i],) * 2
    assert prefix + "_depthwise_bn" in layers
    assert layers[prefix + "_project"].filters == _UNIT_DEPTHS[i]
    assert prefix + "_project_bn" in layers
    # The projection is linear: no activation after its batch norm.
    assert prefix + "_project_relu" not in layers
    assert (prefix + "_add" in layers) == (i in _RESIDUAL_UNITS), i
    in_depth = _UNIT_DEPTHS[i]
  relus = [l for l in extractor.layers if isinstance(l, keras.layers.ReLU)]
  assert relus and all(float(r.max_value) == 6.0 for r in relus)
  names = [l.name for l in extractor.layers]
  assert len(names) == len(set(names))
  assert all(n.startswith("mobilenet_v2_") for n in names)


def _depthwise(extractor, i):
  """(stride, dilation rate) of unit i's depthwise conv, as built."""
  layer = _layers(extractor)[f"mobilenet_v2_{_unit(i)}_depthwise"]
  return layer.strides[0], layer.dilation_rate[0]


def test_dilations_output_stride_8():
  extractor, _, _ = _build(output_stride=8)
  depthwise = lambda i: _depthwise(extractor, i)
  assert [depthwise(i) for i in (1, 3)] == [(2, 1), (2, 1)]
  assert depthwise(6) == (1, 1)  # Stride dropped, rate grows after it.
  for i in range(7, 13):
    assert depthwise(i) == (1, 2), i
  assert depthwise(13) == (1, 2)
  for i in range(14, 17):
    assert depthwise(i) == (1, 4), i


def test_dilations_output_stride_16():
  extractor, _, _ = _build(output_stride=16)
  assert _depthwise(extractor, 6) == (2, 1)
  assert _depthwise(extractor, 12) == (1, 1)
  assert _depthwise(extractor, 13) == (1, 1)
  for i in range(14, 17):
    assert _depthwise(extractor, i) == (1, 2), i


def test_filter_scale_half():
  full, _, _ = _build(filter_scale=1.0)
  half, _, endpoints = _build(filter_scale=0.5)
  full_layers, half_layers = _layers(full), _layers(half)
  assert set(full_layers) == set(half_layers)
  for name, layer in full_layers.items():
    if isinstance(layer, keras.layers.DepthwiseConv2D):
      continue
    if isinstance(layer, keras.layers.Conv2D):
      expected = base.make_divisible(layer.filters * 0.5, 8)
      if name.endswith("_expand"):
        # t times the actual (scaled) input depth, rounded.
        expected = base.make_divisible(
            6 * half_layers[name].kernel.shape[2], 8)
      assert half_layers[name].filters == expected, name
  widths = {n: l.filters for n, l in half_layers.items()
            if isinstance(l, keras.layers.Conv2D) and n.endswith(
                ("_Conv", "_project"))}
  assert widths["mobilenet_v2_Conv"] == 16
  assert widths["mobilenet_v2_expanded_conv_project"] == 8
  assert widths["mobilenet_v2_expanded_conv_1_project"] == 16  # 12 -> 16.
  assert widths["mobilenet_v2_expanded_conv_16_project"] == 160
  assert half_layers["mobilenet_v2_expanded_conv_1_expand"].filters == 48
  assert half.width(96) == 48
  assert half.width(96, base.Rounding.PLAIN) == 48
  assert half.width(24) == 16  # 12 -> 16: a multiple of 8.
  assert half.width(24, base.Rounding.PLAIN) == 12
  assert endpoints["stage5"].shape[-1] == 160


def test_two_part_build_keeps_the_dilations():
  extractor = mobilenet_v2.MobileNetV2(
      hyperparams_builder.build(hyperparams_pb2.Hyperparams()),
      output_stride=8)
  inputs = keras.Input((64, 64, 3))
  early = extractor.build(extractor.preprocess(inputs), last_stage="stage3")
  half = keras.layers.AveragePooling2D(2)(early["stage3"])
  extractor.build(half, first_stage="stage4")
  assert _depthwise(extractor, 14) == (1, 4)


@pytest.mark.parametrize("keras_padding, size, expected", [
    # 'same': ceil(n / 2) at each stride 2; after only: floor(n / 2).
    (0, 65, (33, 17, 9)),
    (1, 65, (33, 16, 8)),     # DEPTHWISE_AFTER: Conv1 'same'
    (2, 65, (32, 16, 8)),     # CONV1_AND_DEPTHWISE_AFTER
    (2, 64, (32, 16, 8)),     # even sizes pad alike
])
def test_keras_padding_of_the_stride_2_convs(keras_padding, size, expected):
  extractor = mobilenet_v2.MobileNetV2(
      hyperparams_builder.build(hyperparams_pb2.Hyperparams()),
      keras_padding=keras_padding)
  endpoints = extractor.build(keras.Input((size, size, 3)),
                              last_stage="stage3")
  sizes = tuple(endpoints[s].shape[1] for s in ("stem", "stage2", "stage3"))
  assert sizes == expected
  padded = {l.name for l in extractor.layers if l.name.endswith("_pad")}
  assert bool(padded) == (keras_padding > 0)
  assert ("mobilenet_v2_Conv_pad" in padded) == (keras_padding == 2)
