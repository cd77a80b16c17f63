"""FPN: pyramid taps, top-down sums, per-level convs, merge, final resize."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import layers
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import fpn
from tests import helpers

LOGITS = fields.PredictionFields.logits


def _build(extractor="mobilenet_v2", extra="", num_classes=3,
           filter_scale=0.35, output_stride=32,
           loss="softmax_cross_entropy {}"):
  widths = "" if "depth" in extra else "lateral_depth: 24 head_depth: 8"
  return model_builder.build(helpers.model_config(
      arch="fpn", extractor=extractor, num_classes=num_classes,
      filter_scale=filter_scale, output_stride=output_stride,
      extra=f"{widths} {extra}", loss=loss))


def _head_width(model, nominal):
  """The head's width for `nominal` (the head group scales it)."""
  return model.feature_extractor.width(nominal, base.Rounding.PLAIN,
                                       group=base.HEAD_GROUP)


@pytest.fixture(scope="module", name="small")
def small_fixture():
  return _build()


def test_mobilenet_v2_taps_expansions_and_conv_1(small):
  keras_model = small.inference_model
  for stride, tap in ((4, "expanded_conv_3_expand_relu"),
                      (8, "expanded_conv_6_expand_relu"),
                      (16, "expanded_conv_13_expand_relu"),
                      (32, "Conv_1_relu")):
    lateral = keras_model.get_layer(f"fpn_lateral_s{stride}")
    assert lateral.input is keras_model.get_layer(f"mobilenet_v2_{tap}").output
  # Conv_1 keeps Keras' 1280 at every filter_scale <= 1, then batch norm.
  assert keras_model.get_layer("mobilenet_v2_Conv_1").filters == 1280
  assert "mobilenet_v2_Conv_1_bn" in {l.name for l in keras_model.layers}


def test_other_architectures_on_mobilenet_v2_do_not_get_conv_1():
  other = model_builder.build(helpers.model_config(
      arch="mobile_unet", extractor="mobilenet_v2", num_classes=3,
      filter_scale=0.35, output_stride=32))
  assert not [l for l in other.keras_model.layers if "Conv_1" in l.name]


def test_head_layers_and_shapes(small):
  keras_model = small.inference_model
  names = [l.name for l in keras_model.layers if l.weights
           and l.name.startswith("fpn_")]
  assert sorted(names) == sorted(fpn.layer_names())
  for name in fpn.layer_names():
    layer = keras_model.get_layer(name)
    assert layer.use_bias
    assert layer.kernel_size == ((1, 1) if "lateral" in name else (3, 3))
  assert keras_model.get_layer("fpn_s8_conv2").activation is keras.activations.relu
  assert keras_model.get_layer("fpn_merge").output.shape[-1] == (
      4 * _head_width(small, 8))
  assert keras_model.get_layer("fpn_lateral_s16").filters == (
      _head_width(small, 24))
  assert small.classifier_layer_names == {"fpn_classifier"}
  logits = small.predict(small.preprocess(tf.zeros((1, 64, 96, 3))))[LOGITS]
  assert logits.shape == (1, 64, 96, 3)
  # Nearest top-down and merge upsampling; no batch norm in the head.
  assert keras_model.get_layer("fpn_topdown_s4_upsample").mode == layers.NEAREST
  assert not [l for l in keras_model.layers if l.name.startswith("fpn_")
              and isinstance(l, keras.layers.BatchNormalization)]


def test_concatenation_order_is_coarse_to_fine(small):
  merge = small.inference_model.get_layer("fpn_merge")
  assert [t.node.layer.name for t in merge.input] == [
      "fpn_s32_upsample", "fpn_s16_upsample", "fpn_s8_upsample",
      "fpn_s4_conv2"]


def test_sum_merge_head_convs_and_dropout():
  model = _build(extra="merge: SUM head_convs: 3 dropout_rate: 0.2")
  keras_model = model.keras_model
  assert isinstance(keras_model.get_layer("fpn_merge"), keras.layers.Add)
  width = _head_width(model, 8)
  assert keras_model.get_layer("fpn_merge").output.shape[-1] == width
  assert keras_model.get_layer("fpn_s32_conv3").filters == width
  assert keras_model.get_layer("fpn_dropout").rate == pytest.approx(0.2)


def test_binary_output_is_one_channel():
  model = _build(extra="binary_output {}", num_classes=2,
                 loss="binary_cross_entropy {}").inference_model
  assert model.get_layer("fpn_classifier").filters == 1


def test_head_widths_follow_the_head_group():
  # filter_scale narrows the head with the trunk ...
  narrow = _build(filter_scale=0.5).inference_model
  assert narrow.get_layer("fpn_lateral_s4").filters == 12
  # ... unless the head group has its own scale (the road import's 1.0).
  config = helpers.model_config(
      arch="fpn", extractor="mobilenet_v2", num_classes=3, filter_scale=0.5,
      output_stride=32, extra="lateral_depth: 24 head_depth: 8")
  config.fpn.feature_extractor.group_widths.add(group="head", scale=1.0)
  kept = model_builder.build(config).inference_model
  assert kept.get_layer("fpn_lateral_s4").filters == 24
  assert kept.get_layer("fpn_s4_conv1").filters == 8


@pytest.mark.parametrize("upsampling, mode", [
    ("HALF_PIXEL", layers.HALF_PIXEL), ("ASYMMETRIC", layers.ASYMMETRIC)])
def test_final_resize_convention(upsampling, mode):
  model = _build(extra=f"upsampling: {upsampling}")
  assert model.inference_model.get_layer("fpn_upsample").mode == mode


def test_nearest_resize_like_repeats_pixels():
  x = tf.reshape(tf.range(6, dtype=tf.float32), (1, 2, 3, 1))
  got = layers.ResizeLike(layers.NEAREST)([x, tf.zeros((1, 4, 6, 1))])
  np.testing.assert_array_equal(got.numpy()[0, ..., 0],
                                np.repeat(np.repeat(x.numpy()[0, ..., 0], 2, 0),
                                          2, 1))


def test_other_trunks_use_their_stage_outputs():
  model = _build(extractor="mobilenet_v1", filter_scale=0.25)
  logits = model.predict(model.preprocess(tf.zeros((1, 64, 64, 3))))[LOGITS]
  assert logits.shape == (1, 64, 64, 3)


@pytest.mark.parametrize("extra, output_stride, message", [
    ("", 16, "model.fpn.feature_extractor.output_stride must be 32"),
    ("head_convs: 0", 32, "model.fpn.head_convs must be > 0, got 0"),
    ("lateral_depth: 0", 32, "model.fpn.lateral_depth must be > 0"),
    ("dropout_rate: 1.0", 32, r"model.fpn.dropout_rate must be in \[0, 1\)"),
])
def test_field_checks(extra, output_stride, message):
  with pytest.raises(ValueError, match=message):
    _build(extra=extra, output_stride=output_stride)
