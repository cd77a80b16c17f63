"""Dilated MobileNet FCN: 1/4 logits, dilations, widths, binary, pruning."""

import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.meta_architectures import dilated_fcn
from tests import helpers

LOGITS = fields.PredictionFields.logits
_L = keras.layers


def _build(extractor="mobilenet_v1", filter_scale=0.25, extra="",
           num_classes=5, loss="softmax_cross_entropy {}"):
  return model_builder.build(helpers.model_config(
      arch="dilated_fcn", extractor=extractor, num_classes=num_classes,
      filter_scale=filter_scale, output_stride=8, extra=extra, loss=loss))




def _context_rates(model):
  """Dilation rates of the context blocks' depthwise convs, in order."""
  rates, i = [], 1
  names = {layer.name for layer in model.keras_model.layers}
  while f"dilated_fcn_context_{i}_depthwise" in names:
    layer = model.keras_model.get_layer(f"dilated_fcn_context_{i}_depthwise")
    assert isinstance(layer, _L.DepthwiseConv2D)
    assert layer.strides == (1, 1) and layer.kernel_size == (3, 3)
    assert layer.dilation_rate[0] == layer.dilation_rate[1]
    rates.append(layer.dilation_rate[0])
    i += 1
  return rates


@pytest.fixture(scope="module", params=["mobilenet_v1", "mobilenet_v2"])
def small_model(request):
  return _build(extractor=request.param, num_classes=3)


@pytest.mark.parametrize("height, width, out_height, out_width", [
    (64, 96, 16, 24), (75, 101, 19, 26), (33, 47, 9, 12)])
def test_logits_at_a_quarter(small_model, height, width, out_height,
                             out_width):
  images = tf.random.uniform((2, height, width, 3), 0, 255)
  train = small_model.predict(small_model.preprocess(images), training=True)
  assert set(train) == {LOGITS}
  assert train[LOGITS].shape == (2, out_height, out_width, 3)
  logits = small_model.predict(small_model.preprocess(images))[LOGITS]
  assert logits.shape == (2, out_height, out_width, 3)
  labels = small_model.postprocess(logits, (height, width))[
      fields.PredictionFields.labels]
  assert labels.shape == (2, height, width)


def test_trunk_stops_at_stride_8(small_model):
  extractor = small_model.feature_extractor
  assert dilated_fcn.trunk_stages(extractor) == ("stage2", "stage3")
  names = {layer.name for layer in small_model.keras_model.layers}
  last_unit = {"mobilenet_v1": "mobilenet_v1_Conv2d_5_pointwise",
               "mobilenet_v2": "mobilenet_v2_expanded_conv_5_project"}
  first_cut = {"mobilenet_v1": "mobilenet_v1_Conv2d_6_depthwise",
               "mobilenet_v2": "mobilenet_v2_expanded_conv_6_depthwise"}
  assert last_unit[extractor.name] in names
  assert first_cut[extractor.name] not in names
  assert {layer.name for layer in extractor.layers} <= names


def test_default_dilation_rates(small_model):
  assert _context_rates(small_model) == [1, 1, 2, 4, 4]
  assert tuple(dilated_fcn.DEFAULT_DILATION_RATES) == (1, 1, 2, 4, 4)


def test_custom_dilation_rates():
  model = _build(extra="dilation_rates: [2, 3, 6]")
  assert _context_rates(model) == [2, 3, 6]
  logits = model.predict(tf.zeros((1, 40, 56, 3)))[LOGITS]
  assert logits.shape == (1, 10, 14, 5)


def test_widths_follow_the_config_and_filter_scale():
  model = _build(extractor="mobilenet_v1", filter_scale=0.5,
                 extra="context_depth: 256 decoder_depth: 64")
  get = model.keras_model.get_layer
  assert get("dilated_fcn_context_1_pointwise").filters == 128
  assert get("dilated_fcn_context_5_pointwise").filters == 128
  for name in ("dilated_fcn_context_proj", "dilated_fcn_skip8_proj",
               "dilated_fcn_skip4_proj", "dilated_fcn_decoder_pointwise"):
    assert get(name).filters == 32, name
    assert get(name).kernel_size == (1, 1), name
  # The stride-8 sum is projected without ReLU first, then activated.
  names = {layer.name for layer in model.keras_model.layers}
  assert "dilated_fcn_skip8_proj_relu" not in names
  assert {"dilated_fcn_fuse8_add", "dilated_fcn_fuse4_add",
          "dilated_fcn_fuse8_relu", "dilated_fcn_fuse4_relu"} <= names


def test_binary_output_has_one_channel():
  model = _build(extra="binary_output {}", loss="dice_loss {}")
  logits = model.predict(model.preprocess(tf.zeros((1, 64, 64, 3))))[LOGITS]
  assert logits.shape == (1, 16, 16, 1)


def test_needs_output_stride_8():
  with pytest.raises(ValueError, match="output_stride must be 8"):
    model_builder.build(helpers.model_config(
        arch="dilated_fcn", extractor="mobilenet_v1", output_stride=16))


@pytest.mark.parametrize("extractor", ["mobilenet_v1", "mobilenet_v2"])
def test_pruning_to_half_keeps_the_function(extractor):
  """Soft-pruned full model == hard-pruned filter_scale 0.5 model."""
  full = _build(extractor=extractor, filter_scale=1.0)
  half = _build(extractor=extractor, filter_scale=0.5)
  helpers.check_pruning_keeps_outputs(full, half, (1, 75, 90, 3), 0.35)
