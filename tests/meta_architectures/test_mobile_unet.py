"""MobileUNet: shapes at any size, decoder widths, binary head, pruning."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import hyperparams_builder
from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import mobilenet_v1
from fast_seg.meta_architectures import mobile_unet
from fast_seg.protos import hyperparams_pb2
from tests import helpers

LOGITS = fields.PredictionFields.logits
_L = keras.layers
# Decoder steps by the stride of their skip; 1 is the last, full-size step.
_STEPS = (16, 8, 4, 2, 1)
_NOMINAL = {16: 512, 8: 256, 4: 128, 2: 64, 1: 32}


def _build(extractor="mobilenet_v1", filter_scale=0.25, extra="",
           num_classes=5, loss="softmax_cross_entropy {}"):
  return model_builder.build(helpers.model_config(
      arch="mobile_unet", extractor=extractor, num_classes=num_classes,
      filter_scale=filter_scale, output_stride=32, extra=extra, loss=loss))




def _widths(model, prefix):
  """{layer name: output channels} of the convs whose name has `prefix`."""
  widths = {}
  for layer in model.keras_model.layers:
    if (layer.name.startswith(prefix) and isinstance(layer, _L.Conv2D)
        and not isinstance(layer, _L.DepthwiseConv2D)
        and layer.name not in model.classifier_layer_names):
      widths[layer.name] = layer.filters
  return widths


@pytest.fixture(scope="module", params=[
    ("mobilenet_v1", "TRANSPOSED_CONV"), ("mobilenet_v1", "BILINEAR"),
    ("mobilenet_v2", "TRANSPOSED_CONV"), ("mobilenet_v2", "BILINEAR")],
                ids=lambda p: f"{p[0]}-{p[1].lower()}")
def small_model(request):
  extractor, upsampling = request.param
  return _build(extractor=extractor, extra=f"upsampling: {upsampling}",
                num_classes=4)


@pytest.mark.parametrize("height, width", [(128, 128), (224, 224), (75, 100),
                                           (33, 61)])
def test_logits_at_input_resolution(small_model, height, width):
  images = tf.random.uniform((1, height, width, 3), 0, 255)
  train = small_model.predict(small_model.preprocess(images), training=True)
  assert set(train) == {LOGITS}  # no auxiliary heads by default
  assert train[LOGITS].shape == (1, height, width, 4)
  logits = small_model.predict(small_model.preprocess(images))[LOGITS]
  assert logits.shape == (1, height, width, 4)
  assert np.all(np.isfinite(logits.numpy()))


def test_upsampling_layers(small_model):
  layers = {layer.name: layer for layer in small_model.keras_model.layers}
  for stride in _STEPS:
    up = layers[f"mobile_unet_up{stride}_upsample"]
    if small_model.upsampling == "transposed_conv":
      assert isinstance(up, _L.Conv2DTranspose)
      assert up.kernel_size == (2, 2) and up.strides == (2, 2)
      assert not up.use_bias
    else:
      assert not isinstance(up, _L.Conv2DTranspose)
      assert isinstance(up, _L.Conv2D) and up.kernel_size == (1, 1)
    assert f"mobile_unet_up{stride}_upsample_bn" in layers
    assert f"mobile_unet_up{stride}_resize" in layers
    assert isinstance(layers[f"mobile_unet_up{stride}_depthwise"],
                      _L.DepthwiseConv2D)
    assert f"mobile_unet_up{stride}_pointwise_bn" in layers
    assert (f"mobile_unet_up{stride}_concat" in layers) == (stride > 1)


def test_skips_come_from_every_stride(small_model):
  """Each concat joins the decoder with the encoder's stage of that stride."""
  extractor = small_model.feature_extractor
  stages = mobile_unet.skip_stages(extractor)
  assert stages == {2: "stem", 4: "stage2", 8: "stage3", 16: "stage4",
                    32: "stage5"}
  images = tf.zeros((1, 64, 96, 3))
  for stride in (16, 8, 4, 2):
    concat = small_model.keras_model.get_layer(f"mobile_unet_up{stride}_concat")
    shape = concat.output.shape
    skip_width = concat.input[1].shape[-1]
    width = small_model.decoder_width(_NOMINAL[stride])
    assert shape[-1] == width + skip_width
    probe = keras.Model(small_model.keras_model.input, concat.output)
    assert probe(images).shape[1:3] == (64 // stride, 96 // stride)


def _encoder(filter_scale):
  return mobilenet_v1.MobileNetV1(
      hyperparams_builder.build(hyperparams_pb2.Hyperparams()),
      filter_scale=filter_scale, output_stride=32)


def test_decoder_width_helper():
  assert mobile_unet.decoder_width(_encoder(1.0), 512, 1.0) == 512
  assert mobile_unet.decoder_width(_encoder(0.5), 512, 0.5) == 128
  assert mobile_unet.decoder_width(_encoder(0.25), 64, 0.5) == 8
  assert mobile_unet.decoder_width(_encoder(0.25), 32, 0.1) == 1  # 0.8 -> 1
  assert mobile_unet.decoder_width(_encoder(0.25), 32, 0.01) == 1  # never 0
  # Plain rounding, not the encoder's rule (which keeps >= 8 filters).
  assert mobile_unet.decoder_width(_encoder(0.25), 64, 0.3) == 5


def test_decoder_multiplier_halves_only_the_decoder():
  full = _build(filter_scale=0.5)
  half = _build(filter_scale=0.5, extra="decoder_width_multiplier: 0.5")
  full_decoder = _widths(full, "mobile_unet_")
  half_decoder = _widths(half, "mobile_unet_")
  assert len(full_decoder) == 10 and full_decoder.keys() == half_decoder.keys()
  for name, width in full_decoder.items():
    assert half_decoder[name] == width // 2, name
  assert full_decoder["mobile_unet_up16_pointwise"] == 256
  assert half_decoder["mobile_unet_up1_upsample"] == 8
  assert _widths(full, "mobilenet_v1_") == _widths(half, "mobilenet_v1_")


def test_filter_scale_narrows_encoder_and_decoder():
  full = _build(filter_scale=1.0, extra="decoder_width_multiplier: 0.5")
  half = _build(filter_scale=0.5, extra="decoder_width_multiplier: 0.5")
  encoder = _widths(half, "mobilenet_v1_")
  assert encoder["mobilenet_v1_Conv2d_13_pointwise"] == 512
  full_encoder = _widths(full, "mobilenet_v1_")
  assert encoder == {n: w // 2 for n, w in full_encoder.items()}
  decoder = _widths(half, "mobile_unet_")
  full_decoder = _widths(full, "mobile_unet_")
  assert decoder == {n: w // 2 for n, w in full_decoder.items()}
  assert decoder["mobile_unet_up16_pointwise"] == 128  # 512 * 0.5 * 0.5


def test_binary_output_has_one_channel():
  model = _build(extra="binary_output {}", loss="dice_loss {}")
  images = tf.random.uniform((2, 48, 40, 3), 0, 255)
  logits = model.predict(model.preprocess(images))[LOGITS]
  assert logits.shape == (2, 48, 40, 1)
  labels = model.postprocess(logits, (48, 40))[fields.PredictionFields.labels]
  assert labels.shape == (2, 48, 40)


def test_encoder_must_reach_stride_32():
  extractor = mobilenet_v1.MobileNetV1(
      hyperparams_builder.build(hyperparams_pb2.Hyperparams()),
      output_stride=16)
  with pytest.raises(ValueError, match=r"output_stride 32.*\[32\]"):
    mobile_unet.skip_stages(extractor)
  with pytest.raises(ValueError, match="output_stride must be 32"):
    model_builder.build(helpers.model_config(
        arch="mobile_unet", extractor="mobilenet_v1", output_stride=16))


def test_unknown_upsampling():
  with pytest.raises(ValueError, match="upsampling: unknown 'nearest'"):
    mobile_unet.MobileUNet(2, 255, None, None, None, upsampling="nearest")


@pytest.mark.parametrize("extractor, upsampling", [
    ("mobilenet_v1", "TRANSPOSED_CONV"), ("mobilenet_v2", "BILINEAR")])
def test_pruning_to_half_keeps_the_function(extractor, upsampling):
  """Soft-pruned full model == hard-pruned filter_scale 0.5 model."""
  extra = f"upsampling: {upsampling}"
  full = _build(extractor=extractor, filter_scale=1.0, extra=extra)
  half = _build(extractor=extractor, filter_scale=0.5, extra=extra)
  helpers.check_pruning_keeps_outputs(full, half, (1, 75, 90, 3), 0.35)
