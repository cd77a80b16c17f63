"""The checks every backbone passes, one parametrized test per check.

Backbone-specific facts (topology, dilation schedules, width rules) are in
test_<backbone>.py; the numbers each backbone must give for the shared checks
are in BACKBONES below.
"""

import collections

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras
from google.protobuf import text_format

from fast_seg import feature_extractors
from fast_seg.builders import hyperparams_builder
from fast_seg.feature_extractors import base
from fast_seg.feature_extractors import mobilenet_v1
from fast_seg.feature_extractors import mobilenet_v2
from fast_seg.feature_extractors import resnet50_keras_icnet
from fast_seg.feature_extractors import resnet_v1
from fast_seg.feature_extractors import pretrained
from fast_seg.protos import hyperparams_pb2

WeightsFormat = base.WeightsFormat
_UNIT_RANGE = ([0.0, 127.5, 255.0], [-1.0, 0.0, 1.0])

Backbone = collections.namedtuple("Backbone", [
    "name", "cls",
    "stage_depths",  # Output depth of each stage at filter_scale 1.0.
    "stage_strides",  # output_stride -> {stage: stride of its output}.
    "params",  # filter_scale -> parameters of the whole trunk.
    "formats",  # The ImageNet weight formats it registers a name map for.
    "preprocess",  # (RGB pixel in, pixel out) pairs.
    # (filter_scale, last early stage, halve between the parts, late output
    # shape) of a two-part build of a 64x64 input.
    "two_part",
    # {stage: side} of a 64x64 input where it is not 64 // stride (an
    # unpadded pool); None: none.
    "sides",
], defaults=(None,))

# Trunk parameters (output stride 32, batch norms included) were counted
# before the width rules moved into FeatureExtractor.width; checkpoints
# depend on them. ResNet-50: Keras-applications' 23,587,712 without the
# 26,560 conv biases ours do not have. MobileNetV2: Keras' 2,257,984 without
# the final 1x1 conv to 1280 and its batch norm (414,720). MobileNetV1:
# slim's trunk, see test_mobilenet_v1.
BACKBONES = [
    Backbone(
        "mobilenet_v1", mobilenet_v1.MobileNetV1,
        {"stem": 64, "stage2": 128, "stage3": 256, "stage4": 512,
         "stage5": 1024},
        {8: {"stem": 2, "stage2": 4, "stage3": 8, "stage4": 8, "stage5": 8},
         16: {"stem": 2, "stage2": 4, "stage3": 8, "stage4": 16, "stage5": 16},
         32: {"stem": 2, "stage2": 4, "stage3": 8, "stage4": 16,
              "stage5": 32}},
        {1.0: 3_228_864, 0.5: 829_536, 0.35: 414_521, 0.25: 218_544},
        {WeightsFormat.TF_SLIM},
        [_UNIT_RANGE],
        (0.25, "stage3", False, (None, 8, 8, 256))),
    Backbone(
        "mobilenet_v2", mobilenet_v2.MobileNetV2,
        {"stem": 16, "stage2": 24, "stage3": 32, "stage4": 96, "stage5": 320},
        {8: {"stem": 2, "stage2": 4, "stage3": 8, "stage4": 8, "stage5": 8},
         16: {"stem": 2, "stage2": 4, "stage3": 8, "stage4": 16, "stage5": 16},
         32: {"stem": 2, "stage2": 4, "stage3": 8, "stage4": 16,
              "stage5": 32}},
        {1.0: 1_843_264, 0.5: 496_304, 0.35: 261_728, 0.25: 141_248},
        {WeightsFormat.TF_SLIM, WeightsFormat.KERAS_H5},
        [_UNIT_RANGE],
        (1.0, "stage3", True, (None, 4, 4, 320))),
    Backbone(
        "resnet_v1_50", resnet_v1.ResNetV1_50,
        {"stem": 64, "block1": 256, "block2": 512, "block3": 1024,
         "block4": 2048},
        {8: {"stem": 4, "block1": 8, "block2": 8, "block3": 8, "block4": 8},
         16: {"stem": 4, "block1": 8, "block2": 16, "block3": 16,
              "block4": 16},
         32: {"stem": 4, "block1": 8, "block2": 16, "block3": 32,
              "block4": 32}},
        {1.0: 23_561_152, 0.5: 5_919_200, 0.35: 2_914_901, 0.25: 1_494_256},
        {WeightsFormat.TF_SLIM, WeightsFormat.KERAS_H5},
        [([123.68, 116.78, 103.94], [0.0, 0.0, 0.0]),
         ([0.0, 255.0, 10.0], [-123.68, 138.22, -93.94])],
        (1.0, "block1", True, (None, 4, 4, 2048))),
    # The fritz Keras ICNet's trunk: its unpadded 3x3/2 max-pool turns the
    # 32x32 stem output into 15x15.
    Backbone(
        "resnet50_keras_icnet", resnet50_keras_icnet.ResNet50KerasICNet,
        {"stem": 128, "conv2": 256, "conv3_1": 512, "conv3": 512,
         "conv4": 1024, "conv5": 2048},
        {8: {"stem": 4, "conv2": 4, "conv3_1": 8, "conv3": 8, "conv4": 8,
             "conv5": 8},
         16: {"stem": 4, "conv2": 4, "conv3_1": 8, "conv3": 8, "conv4": 16,
              "conv5": 16},
         32: {"stem": 4, "conv2": 4, "conv3_1": 8, "conv3": 8, "conv4": 16,
              "conv5": 32}},
        {1.0: 23_685_312, 0.5: 5_948_512, 0.35: 2_928_371, 0.25: 1_500_720},
        set(),
        [([0.0, 127.5, 255.0], [-0.5, 0.0, 0.5])],
        (0.5, "conv3_1", True, (None, 4, 4, 1024)),
        {"stem": 15, "conv2": 15}),
]


@pytest.fixture(params=BACKBONES, ids=lambda b: b.name)
def backbone(request):
  return request.param


def _hyperparams(text=""):
  config = hyperparams_pb2.Hyperparams()
  text_format.Merge(text, config)
  return hyperparams_builder.build(config)


def _build(backbone, filter_scale=1.0, output_stride=8, size=64,
           hyperparams=None):
  extractor = backbone.cls(hyperparams or _hyperparams(),
                           filter_scale=filter_scale,
                           output_stride=output_stride)
  inputs = keras.Input((size, size, 3))
  return extractor, inputs, extractor.build(inputs)


def test_registered(backbone):
  assert feature_extractors.get(backbone.name) is backbone.cls
  assert backbone.cls.name == backbone.name
  assert backbone.name in feature_extractors.registered_names()


def test_the_project_registers_exactly_five_backbones():
  # A test may register a toy backbone of its own; only ours are counted.
  ours = [name for name in feature_extractors.registered_names()
          if feature_extractors.get(name).__module__.startswith("fast_seg.")]
  assert ours == ["cgnet", "mobilenet_v1", "mobilenet_v2",
                  "resnet50_keras_icnet", "resnet_v1_50"]


def test_unknown_type_lists_allowed():
  with pytest.raises(ValueError) as e:
    feature_extractors.get("xyz")
  allowed = feature_extractors.registered_names()
  assert str(e.value) == ("feature_extractor.type: unknown 'xyz'; allowed: "
                          + ", ".join(allowed))
  assert {"mobilenet_v1", "mobilenet_v2", "resnet_v1_50"} <= set(allowed)


@pytest.mark.parametrize("output_stride", [2, 4, 7, 12, 64])
def test_bad_output_stride(backbone, output_stride):
  with pytest.raises(ValueError, match=r"feature_extractor\.output_stride.*"
                     r"allowed: 8, 16, 32"):
    backbone.cls(_hyperparams(), output_stride=output_stride)


@pytest.mark.parametrize("filter_scale", [0.0, -0.5, 1.5])
def test_bad_filter_scale(backbone, filter_scale):
  with pytest.raises(ValueError, match=r"feature_extractor\.filter_scale must "
                     r"be in \(0, 1\]"):
    backbone.cls(_hyperparams(), filter_scale=filter_scale)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_endpoint_shapes(backbone, output_stride):
  extractor, _, endpoints = _build(backbone, output_stride=output_stride)
  strides = backbone.stage_strides[output_stride]
  assert list(endpoints) == list(extractor.stage_names)
  assert extractor.stage_strides == strides
  for stage, tensor in endpoints.items():
    size = (backbone.sides or {}).get(stage, 64 // strides[stage])
    assert tuple(tensor.shape) == (None, size, size,
                                   backbone.stage_depths[stage]), stage


@pytest.mark.parametrize("filter_scale", [1.0, 0.5, 0.35, 0.25])
def test_parameter_count(backbone, filter_scale):
  _, inputs, endpoints = _build(backbone, filter_scale, output_stride=32)
  model = keras.Model(inputs, list(endpoints.values()))
  assert model.count_params() == backbone.params[filter_scale]


def test_layer_names_unique_and_prefixed(backbone):
  extractor, _, _ = _build(backbone)
  names = [l.name for l in extractor.layers]
  assert len(names) == len(set(names))
  assert all(n.startswith(backbone.name + "_") for n in names)


def test_hyperparams_reach_every_layer(backbone):
  hyperparams = _hyperparams(
      "regularizer { l2_regularizer { weight: 0.001 } } "
      "batch_norm { train: false epsilon: 0.001 }")
  extractor, _, _ = _build(backbone, hyperparams=hyperparams)
  for layer in extractor.layers:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
      assert layer.depthwise_regularizer is hyperparams.regularizer
    elif isinstance(layer, keras.layers.Conv2D):
      assert layer.kernel_regularizer is hyperparams.regularizer
    if isinstance(layer, keras.layers.BatchNormalization):
      assert not layer.trainable
      assert layer.epsilon == pytest.approx(0.001)


def test_registers_its_imagenet_name_maps(backbone):
  """Every weight of the full trunk has a name in each registered format."""
  assert set(backbone.cls.imagenet_name_maps) == backbone.formats
  extractor, _, _ = _build(backbone, output_stride=32)
  targets = pretrained._targets(extractor)  # pylint: disable=protected-access
  assert targets
  for name_map in backbone.cls.imagenet_name_maps.values():
    names = [name_map(layer, kind) for layer, kind, _ in targets]
    assert len(set(names)) == len(names)


def _two_part_build(backbone, extractor, inputs):
  """Early stages on `inputs`, late ones on their output (halved: ICNet)."""
  _, split, halve, _ = backbone.two_part
  early = extractor.build(extractor.preprocess(inputs), last_stage=split)
  middle = early[split]
  if halve:
    middle = keras.layers.AveragePooling2D(2)(middle)
  late = extractor.build(middle, first_stage=extractor.stage_names[
      extractor.stage_names.index(split) + 1])
  return early, middle, late


def test_two_part_build_and_forward(backbone):
  filter_scale, split, _, late_shape = backbone.two_part
  extractor = backbone.cls(_hyperparams(), filter_scale=filter_scale,
                           output_stride=8)
  inputs = keras.Input((64, 64, 3))
  early, middle, late = _two_part_build(backbone, extractor, inputs)
  names = list(extractor.stage_names)
  assert list(early) == names[:names.index(split) + 1]
  assert list(late) == names[names.index(split) + 1:]
  last = names[-1]
  assert tuple(late[last].shape) == late_shape
  with pytest.raises(ValueError, match="already built"):
    extractor.build(middle, first_stage=last)
  model = keras.Model(inputs, late[last])
  out = model(np.random.RandomState(0).uniform(
      0, 255, (1, 64, 64, 3)).astype(np.float32))
  assert out.shape == (1,) + late_shape[1:]
  assert np.all(np.isfinite(out.numpy()))


def _schedule(extractor):
  return {l.name: (l.strides, l.dilation_rate) for l in extractor.layers
          if isinstance(l, keras.layers.Conv2D)
          or isinstance(l, keras.layers.DepthwiseConv2D)}


def test_two_part_build_keeps_the_full_schedule(backbone):
  """Strides and dilations follow the nominal schedule, not the input."""
  extractor = backbone.cls(_hyperparams(), output_stride=8)
  _two_part_build(backbone, extractor, keras.Input((64, 64, 3)))
  full, _, _ = _build(backbone, output_stride=8)
  assert _schedule(extractor) == _schedule(full)


def test_building_a_stage_twice_raises(backbone):
  extractor = backbone.cls(_hyperparams())
  inputs = keras.Input((64, 64, 3))
  second = extractor.stage_names[1]
  extractor.build(inputs, last_stage=second)
  count = len(extractor.layers)
  with pytest.raises(ValueError, match=f"'{second}' is already built"):
    extractor.build(inputs, first_stage=second,
                    last_stage=extractor.stage_names[2])
  assert len(extractor.layers) == count


def test_bad_stage_arguments(backbone):
  extractor = backbone.cls(_hyperparams())
  inputs = keras.Input((64, 64, 3))
  with pytest.raises(ValueError, match="unknown stage 'block5'"):
    extractor.build(inputs, last_stage="block5")
  names = extractor.stage_names
  with pytest.raises(ValueError, match="comes after"):
    extractor.build(inputs, first_stage=names[3], last_stage=names[1])
  assert not extractor.layers


def test_preprocess(backbone):
  extractor = backbone.cls(_hyperparams())
  for pixel, expected in backbone.preprocess:
    out = extractor.preprocess(tf.constant([[[pixel]]])).numpy()
    np.testing.assert_allclose(out[0, 0, 0], expected, atol=1e-4)
  assert extractor.preprocess(tf.zeros([1, 2, 2, 3], tf.uint8)).dtype == \
      tf.float32


@pytest.mark.parametrize("filter_scale", [1.0, 0.5, 0.3, 0.1])
def test_plain_rounding_is_the_same_on_every_backbone(backbone, filter_scale):
  extractor = backbone.cls(_hyperparams(), filter_scale=filter_scale)
  for nominal in (1, 32, 48, 96, 256, 512 * 0.7):
    assert extractor.width(nominal, base.Rounding.PLAIN) == max(
        1, int(round(nominal * filter_scale)))
  assert extractor.width(64) == extractor.width(64, base.Rounding.BACKBONE)
