"""DeepLabV3+: output strides, ASPP and dense-prediction-cell wiring, decoder,
dropout, builder errors and filter pruning."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import layers as core_layers
from fast_seg.core import standard_fields as fields
from fast_seg.meta_architectures import deeplab_v3_plus
from tests import helpers

LOGITS = fields.PredictionFields.logits
LABELS = fields.PredictionFields.labels
_L = keras.layers


def _build(filter_scale=0.25, **kwargs):
  kwargs.setdefault("arch", "deeplab_v3_plus")
  kwargs.setdefault("num_classes", 5)
  return model_builder.build(helpers.model_config(filter_scale=filter_scale,
                                                  **kwargs))


def _layer(model, name):
  return model.keras_model.get_layer(name)


def _names(model):
  return {layer.name for layer in model.keras_model.layers}


def _inbound(model, name):
  """Name of the layer that feeds layer `name` (its first input's)."""
  inbound = _layer(model, name).inbound_nodes[0].inbound_layers
  if isinstance(inbound, (list, tuple)):
    inbound = inbound[0]
  return inbound.name


def _depthwise_rates(model, prefix):
  return [layer.dilation_rate for layer in model.keras_model.layers
          if isinstance(layer, _L.DepthwiseConv2D)
          and layer.name.startswith(prefix)]


@pytest.fixture(scope="module")
def os16():
  return _build(output_stride=16)


@pytest.fixture(scope="module")
def os8():
  return _build(output_stride=8)


def _logits(model, height, width):
  images = tf.random.uniform((1, height, width, 3), 0, 255, seed=1)
  return model.predict(model.preprocess(images))[LOGITS]


@pytest.mark.parametrize("fixture", ["os16", "os8"])
def test_decoder_logits_are_at_stride_4(fixture, request):
  model = request.getfixturevalue(fixture)
  assert model.low_level_stage == "stage2"
  assert _logits(model, 64, 96).shape == (1, 16, 24, 5)
  train = model.predict(tf.zeros((2, 64, 96, 3)), training=True)
  assert set(train) == {LOGITS} and train[LOGITS].shape == (2, 16, 24, 5)


@pytest.mark.parametrize("output_stride", [8, 16])
def test_without_decoder_logits_are_at_the_output_stride(output_stride):
  model = _build(output_stride=output_stride,
                 extra="decoder_depth: 0 dropout_rate: 0")
  assert _logits(model, 64, 96).shape == (
      1, 64 // output_stride, 96 // output_stride, 5)
  assert not any(n.startswith("deeplab_decoder") for n in _names(model))
  assert not any(isinstance(layer, _L.Dropout)
                 for layer in model.keras_model.layers)
  assert _inbound(model, "deeplab_v3_plus_classifier") == (
      "deeplab_aspp_projection_relu")


def test_odd_input_size_postprocesses_to_full_size(os16):
  logits = _logits(os16, 75, 101)
  assert logits.shape == (1, 19, 26, 5)
  labels = os16.postprocess(logits, (75, 101))[LABELS]
  assert labels.shape == (1, 75, 101) and labels.dtype == tf.int32


def test_decoder_wiring_and_widths(os16):
  # Nominal widths times filter_scale 0.25: 48 -> 12, 256 -> 64.
  assert _layer(os16, "deeplab_decoder_low_level").filters == 12
  assert _inbound(os16, "deeplab_decoder_low_level") == (
      "mobilenet_v2_expanded_conv_2_add")
  assert _layer(os16, "deeplab_decoder_concat").output_shape[-1] == 64 + 12
  for i in (0, 1):
    assert _layer(os16, f"deeplab_decoder_conv{i}_pointwise").filters == 64
    assert _layer(os16, f"deeplab_decoder_conv{i}_depthwise").dilation_rate == (
        1, 1)
  assert _inbound(os16, "deeplab_decoder_upsample") == "deeplab_encoder_dropout"
  assert _inbound(os16, "deeplab_v3_plus_classifier") == (
      "deeplab_decoder_conv1_pointwise_relu")


@pytest.mark.parametrize("fixture, rates", [
    ("os16", [6, 12, 18]), ("os8", [12, 24, 36])])
def test_default_atrous_rates(fixture, rates, request):
  model = request.getfixturevalue(fixture)
  assert _depthwise_rates(model, "deeplab_aspp") == [(r, r) for r in rates]
  assert deeplab_v3_plus.default_atrous_rates(
      model.feature_extractor.output_stride) == rates
  # 1x1, three atrous branches and image pooling.
  assert _layer(model, "deeplab_aspp_concat").output_shape[-1] == 5 * 64
  assert _inbound(model, "deeplab_aspp_pool_upsample") == (
      "deeplab_aspp_pool_conv_relu")
  assert _layer(model, "deeplab_encoder_dropout").rate == pytest.approx(0.1)


def test_custom_rates_without_image_pooling():
  model = _build(output_stride=16, extra="aspp { atrous_rates: 2 "
                 "atrous_rates: 3 atrous_rates: 5 atrous_rates: 7 depth: 32 "
                 "image_pooling: false }")
  assert _depthwise_rates(model, "deeplab_aspp") == [(2, 2), (3, 3), (5, 5),
                                                     (7, 7)]
  assert not any(n.startswith("deeplab_aspp_pool") for n in _names(model))
  assert not any(isinstance(layer, core_layers.AdaptiveAveragePool)
                 for layer in model.keras_model.layers)
  # depth 32 at filter_scale 0.25: 8 channels per branch, 1x1 + 4 atrous.
  assert _layer(model, "deeplab_aspp_concat").output_shape[-1] == 5 * 8
  assert _layer(model, "deeplab_aspp_projection").filters == 8


def test_plain_atrous_convs():
  model = _build(output_stride=8, extra="aspp { separable_conv: false }")
  assert not _depthwise_rates(model, "deeplab_aspp")
  for i, rate in enumerate([12, 24, 36]):
    conv = _layer(model, f"deeplab_aspp_atrous{i}")
    assert isinstance(conv, _L.Conv2D)
    assert conv.kernel_size == (3, 3) and conv.dilation_rate == (rate, rate)
  assert _logits(model, 64, 64).shape == (1, 16, 16, 5)


def test_default_dense_prediction_cell():
  model = _build(output_stride=16, extra="dense_prediction_cell {}")
  assert not any(n.startswith("deeplab_aspp") for n in _names(model))
  assert _depthwise_rates(model, "deeplab_dpc") == [
      (1, 6), (18, 15), (6, 3), (1, 1), (6, 21)]
  assert [op[2] for op in deeplab_v3_plus.DEFAULT_CELL_OPS] == [-1, 0, 1, 0, 0]
  trunk_output = model.feature_extractor.layers[-1].name
  assert _inbound(model, "deeplab_dpc_op0_depthwise") == trunk_output
  for op, source in [(1, 0), (2, 1), (3, 0), (4, 0)]:
    assert _inbound(model, f"deeplab_dpc_op{op}_depthwise") == (
        f"deeplab_dpc_op{source}_pointwise_relu")
  assert _layer(model, "deeplab_dpc_concat").output_shape[-1] == 5 * 64
  assert _inbound(model, "deeplab_encoder_dropout") == (
      "deeplab_dpc_projection_relu")
  assert _logits(model, 64, 96).shape == (1, 16, 24, 5)


def test_default_cell_rates_double_at_output_stride_8():
  model = _build(output_stride=8, extra="dense_prediction_cell { depth: 16 }")
  assert _depthwise_rates(model, "deeplab_dpc") == [
      (2, 12), (36, 30), (12, 6), (2, 2), (12, 42)]


def test_custom_dense_prediction_cell_from_text():
  model = _build(output_stride=8, extra=(
      "dense_prediction_cell { ops { kernel_size: 3 rate: 2 rate: 4 "
      "input_index: -1 } ops { kernel_size: 1 input_index: 0 } }"))
  assert model.cell_ops == ((3, (2, 4), -1), (1, (1, 1), 0))
  assert _depthwise_rates(model, "deeplab_dpc") == [(2, 4)]
  one_by_one = _layer(model, "deeplab_dpc_op1")
  assert one_by_one.kernel_size == (1, 1)
  assert _inbound(model, "deeplab_dpc_op1") == "deeplab_dpc_op0_pointwise_relu"
  assert _layer(model, "deeplab_dpc_concat").output_shape[-1] == 2 * 64
  assert _logits(model, 64, 64).shape == (1, 16, 16, 5)


@pytest.mark.parametrize("extra, output_stride, match", [
    ("dense_prediction_cell { ops { kernel_size: 5 } }", 16,
     r"model\.deeplab_v3_plus\.dense_prediction_cell\.ops\[0\]\.kernel_size "
     r"must be 1 or 3, got 5"),
    ("dense_prediction_cell { ops { } ops { input_index: 1 } }", 16,
     r"dense_prediction_cell\.ops\[1\]\.input_index must be -1 .* got 1"),
    ("dense_prediction_cell { ops { rate: 1 rate: 2 rate: 3 } }", 16,
     r"dense_prediction_cell\.ops\[0\]\.rate must be one or two values"),
    ("", 32, r"model\.deeplab_v3_plus\.feature_extractor\.output_stride must "
     r"be 8 or 16 for DeepLabV3\+, got 32"),
    ("dropout_rate: 1.0", 16,
     r"model\.deeplab_v3_plus\.dropout_rate must be in \[0, 1\), got 1\.0"),
    ("decoder_depth: -1", 16, r"model\.deeplab_v3_plus\.decoder_depth"),
    ("low_level_depth: 0", 16, r"model\.deeplab_v3_plus\.low_level_depth"),
    ("aspp { atrous_rates: 0 }", 16,
     r"model\.deeplab_v3_plus\.aspp\.atrous_rates must all be >= 1"),
])
def test_builder_errors_name_the_field(extra, output_stride, match):
  with pytest.raises(ValueError, match=match):
    _build(output_stride=output_stride, extra=extra)


def test_binary_output_has_one_channel():
  model = _build(output_stride=16, extra="binary_output {}",
                 loss="binary_cross_entropy {}")
  logits = _logits(model, 64, 64)
  assert logits.shape == (1, 16, 16, 1)
  labels = model.postprocess(logits, (64, 64))[LABELS]
  assert labels.shape == (1, 64, 64)


def test_dropout_only_in_training():
  model = _build(output_stride=16, extra="dropout_rate: 0.5")
  assert _layer(model, "deeplab_encoder_dropout").rate == pytest.approx(0.5)
  images = tf.random.uniform((2, 64, 64, 3), -1.0, 1.0, seed=2)
  first = model.predict(images)[LOGITS].numpy()
  second = model.predict(images)[LOGITS].numpy()
  np.testing.assert_array_equal(first, second)
  train_a = model.predict(images, training=True)[LOGITS].numpy()
  train_b = model.predict(images, training=True)[LOGITS].numpy()
  assert np.abs(train_a - train_b).max() > 1e-4


def test_resnet_low_level_feature_is_its_stride_4_stage():
  model = _build(extractor="resnet_v1_50", output_stride=16)
  assert model.low_level_stage == "stem"
  assert _logits(model, 64, 96).shape == (1, 16, 24, 5)




def _head_widths(model):
  return {layer.name: layer.filters for layer in model.keras_model.layers
          if layer.name.startswith("deeplab_") and getattr(layer, "filters", None)
          and layer.name not in model.classifier_layer_names}


@pytest.mark.parametrize("extra", ["", "dense_prediction_cell {}"])
def test_pruning_full_to_half_keeps_the_outputs(extra):
  full = _build(filter_scale=1.0, output_stride=16, extra=extra)
  half = _build(filter_scale=0.5, output_stride=16, extra=extra)
  full_widths, half_widths = _head_widths(full), _head_widths(half)
  assert full_widths.keys() == half_widths.keys()
  assert all(half_widths[n] == w // 2 for n, w in full_widths.items())
  graph = helpers.check_pruning_keeps_outputs(full, half, (1, 96, 96, 3), 0.35)
  # Dropout passes the projection's channels through.
  projection = "deeplab_dpc_projection" if extra else "deeplab_aspp_projection"
  assert graph.layer_outputs["deeplab_encoder_dropout"] == (
      graph.layer_outputs[projection])


def test_keras_project_layout_fields():
  """encoder_stage, the 3x3 classifier without bias and the
  SEPARABLE_THEN_1X1 cell (tools/import_weights sets them)."""
  model = _build(
      filter_scale=1.0,
      extra="encoder_stage: 'stage3' decoder_depth: 0 "
            "classifier_kernel_size: 3 classifier_bias: false "
            "dense_prediction_cell { depth: 16 projection_depth: 24 "
            "op_form: SEPARABLE_THEN_1X1 "
            "ops { kernel_size: 3 rate: [1, 2] } ops { kernel_size: 1 } }")
  names = _names(model)
  assert not any(n.startswith("mobilenet_v2_expanded_conv_6") for n in names)
  assert _inbound(model, "deeplab_dpc_op0_depthwise").startswith(
      "mobilenet_v2_expanded_conv_5")
  # Nothing between the depthwise and the pointwise conv.
  assert _inbound(model, "deeplab_dpc_op0_pointwise") == \
      "deeplab_dpc_op0_depthwise"
  assert _inbound(model, "deeplab_dpc_op0_conv1x1") == \
      "deeplab_dpc_op0_pointwise_relu"
  assert _layer(model, "deeplab_dpc_projection").filters == 24
  classifier = _layer(model, "deeplab_v3_plus_classifier")
  assert classifier.kernel_size == (3, 3) and not classifier.use_bias
  logits = model.predict(tf.zeros([1, 64, 64, 3]))[LOGITS]
  assert logits.shape == (1, 8, 8, 5)


@pytest.mark.parametrize("extra, message", [
    ("encoder_stage: 'block9'", "encoder_stage: unknown stage 'block9'"),
    ("encoder_stage: 'stem'", "the decoder reads 'stage2', after 'stem'"),
    ("classifier_kernel_size: 5", "classifier_kernel_size must be 1 or 3"),
])
def test_keras_project_layout_errors(extra, message):
  with pytest.raises(ValueError, match=message):
    _build(extra=extra)


def test_keras_padding_is_mobilenet_v2_only():
  config = helpers.model_config(arch="deeplab_v3_plus",
                                extractor="resnet_v1_50")
  config.deeplab_v3_plus.feature_extractor.keras_padding = 1
  with pytest.raises(ValueError, match="feature_extractor.keras_padding is "
                     "not supported by resnet_v1_50"):
    model_builder.build(config)
