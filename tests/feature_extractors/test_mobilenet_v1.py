"""MobileNetV1: slim's topology, dilations and width rule.

The checks every backbone passes are in test_backbones.py.
"""

import numpy as np
import pytest
import tf_keras as keras

from fast_seg.builders import hyperparams_builder
from fast_seg.feature_extractors import base
from fast_seg.feature_extractors import mobilenet_v1
from fast_seg.protos import hyperparams_pb2

# Pointwise depth and nominal depthwise stride of Conv2d_1..Conv2d_13 (the
# paper's table 1), written out independently of the module's table.
_DEPTHS = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


def _hyperparams():
  return hyperparams_builder.build(hyperparams_pb2.Hyperparams())


def _build(filter_scale=1.0, output_stride=8, size=64):
  extractor = mobilenet_v1.MobileNetV1(
      _hyperparams(), filter_scale=filter_scale, output_stride=output_stride)
  inputs = keras.Input((size, size, 3))
  return extractor, inputs, extractor.build(inputs)


def _layers(extractor):
  return {l.name: l for l in extractor.layers}


def _depthwise(layers, i):
  layer = layers[f"mobilenet_v1_Conv2d_{i}_depthwise"]
  return layer.strides[0], layer.dilation_rate[0]


def test_topology_at_full_width():
  extractor, _, _ = _build(output_stride=32)
  layers = _layers(extractor)
  conv = layers["mobilenet_v1_Conv2d_0"]
  assert (conv.filters, conv.kernel_size, conv.strides) == (32, (3, 3), (2, 2))
  assert "mobilenet_v1_Conv2d_0_bn" in layers
  for i in range(1, 14):
    prefix = f"mobilenet_v1_Conv2d_{i}"
    depthwise = layers[prefix + "_depthwise"]
    assert isinstance(depthwise, keras.layers.DepthwiseConv2D)
    assert depthwise.kernel_size == (3, 3)
    assert _depthwise(layers, i) == (_STRIDES[i - 1], 1), i
    pointwise = layers[prefix + "_pointwise"]
    assert (pointwise.filters, pointwise.kernel_size) == (_DEPTHS[i - 1],
                                                          (1, 1))
    for op in ("_depthwise", "_pointwise"):
      assert prefix + op + "_bn" in layers
      assert prefix + op + "_relu" in layers
  assert "mobilenet_v1_Conv2d_14_depthwise" not in layers
  relus = [l for l in extractor.layers if isinstance(l, keras.layers.ReLU)]
  assert len(relus) == 27 and all(float(r.max_value) == 6.0 for r in relus)
  names = [l.name for l in extractor.layers]
  assert len(names) == len(set(names))
  assert all(n.startswith("mobilenet_v1_") for n in names)


def test_parameter_count_is_slims_trunk():
  """slim's MobilenetV1 1.0 without the logits, batch norms included.

  Convs: 3*3*3*32 for Conv2d_0, then per unit 3*3*in (depthwise) + in*out
  (pointwise), which is slim's own table total of 3,185,088. Each batch norm
  holds 4 values per channel (gamma, beta, moving mean and variance; 2 of
  them trainable) over 32 + sum(in) + sum(out) = 32 + 4960 + 5952 = 10,944
  channels: 3,185,088 + 4 * 10,944 = 3,228,864 in all (Keras' MobileNet
  without top has the same), 3,185,088 + 2 * 10,944 = 3,206,976 trainable.
  """
  _, inputs, endpoints = _build(output_stride=32)
  model = keras.Model(inputs, endpoints["stage5"])
  in_depths = [32] + _DEPTHS[:-1]
  convs = 3 * 3 * 3 * 32 + sum(9 * c_in + c_in * c_out
                               for c_in, c_out in zip(in_depths, _DEPTHS))
  channels = 32 + sum(in_depths) + sum(_DEPTHS)
  assert convs == 3_185_088 and channels == 10_944
  assert model.count_params() == convs + 4 * channels == 3_228_864
  trainable = sum(int(np.prod(v.shape)) for v in model.trainable_weights)
  assert trainable == convs + 2 * channels == 3_206_976


def test_dilations_output_stride_8():
  extractor, _, _ = _build(output_stride=8)
  layers = _layers(extractor)
  assert layers["mobilenet_v1_Conv2d_0"].strides == (2, 2)
  assert [_depthwise(layers, i) for i in range(1, 5)] == [
      (1, 1), (2, 1), (1, 1), (2, 1)]
  assert _depthwise(layers, 5) == (1, 1)
  assert _depthwise(layers, 6) == (1, 1)  # Stride dropped, rate grows after.
  for i in range(7, 13):
    assert _depthwise(layers, i) == (1, 2), i
  assert _depthwise(layers, 13) == (1, 4)


def test_dilations_output_stride_16():
  extractor, _, _ = _build(output_stride=16)
  layers = _layers(extractor)
  assert _depthwise(layers, 6) == (2, 1)
  for i in range(7, 13):
    assert _depthwise(layers, i) == (1, 1), i
  assert _depthwise(layers, 13) == (1, 2)


@pytest.mark.parametrize("filter_scale,conv0,depths", [
    (0.5, 16, [32, 64, 64, 128, 128, 256, 256, 256, 256, 256, 256, 512, 512]),
    (0.25, 8, [16, 32, 32, 64, 64, 128, 128, 128, 128, 128, 128, 256, 256]),
])
def test_filter_scale_widths(filter_scale, conv0, depths):
  extractor, _, endpoints = _build(filter_scale=filter_scale, output_stride=32)
  layers = _layers(extractor)
  assert layers["mobilenet_v1_Conv2d_0"].filters == conv0
  assert [layers[f"mobilenet_v1_Conv2d_{i}_pointwise"].filters
          for i in range(1, 14)] == depths
  assert endpoints["stage5"].shape[-1] == depths[-1]


def test_min_depth_is_eight():
  """slim's V1 rule: max(int(d * multiplier), 8), truncating."""
  extractor = mobilenet_v1.MobileNetV1(_hyperparams(), filter_scale=0.1)
  assert extractor.width(32) == 8  # int(3.2) = 3 -> 8
  assert extractor.width(64) == 8
  assert extractor.width(128) == 12  # int(12.8): no rounding up
  assert extractor.width(1024) == 102
  # Heads that ask for plain rounding get it on this backbone too.
  assert extractor.width(32, base.Rounding.PLAIN) == 3
  assert extractor.width(128, base.Rounding.PLAIN) == 13
