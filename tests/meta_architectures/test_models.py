"""Output shapes, heads, widths and restore maps of ICNet and PSPNet."""

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import losses as core_losses
from fast_seg.core import standard_fields as fields
from fast_seg.protos import train_pb2
from tests import helpers

LOGITS = fields.PredictionFields.logits


def _build(**kwargs):
  return model_builder.build(helpers.model_config(**kwargs))


@pytest.mark.parametrize("extractor", ["mobilenet_v2", "resnet_v1_50"])
def test_icnet_heads_and_shapes(extractor):
  model = _build(arch="icnet", extractor=extractor, num_classes=7)
  images = tf.random.uniform((2, 64, 96, 3), 0, 255)
  train = model.predict(model.preprocess(images), training=True)
  # main head at 1/4, cascade label guidance at 1/8 and 1/16.
  assert train[LOGITS].shape == (2, 16, 24, 7)
  assert train["aux_1_8"].shape == (2, 8, 12, 7)
  assert train["aux_1_16"].shape == (2, 4, 6, 7)
  inference = model.predict(model.preprocess(images))
  assert set(inference) == {LOGITS}
  out = model.postprocess(inference[LOGITS], (64, 96))[fields.PredictionFields.labels]
  assert out.shape == (2, 64, 96) and out.dtype == tf.int32
  assert int(tf.reduce_max(out)) < 7


def test_icnet_inference_model_has_no_aux_layers():
  model = _build(arch="icnet", num_classes=4)
  names = {layer.name for layer in model.inference_model.layers}
  assert "icnet_classifier" in names
  assert not any("aux" in name for name in names)
  train_names = {layer.name for layer in model.keras_model.layers}
  assert {"icnet_aux_1_8_classifier", "icnet_aux_1_16_classifier"} <= train_names


def test_icnet_odd_input_size():
  model = _build(arch="icnet", num_classes=3)
  images = tf.zeros((1, 75, 101, 3))
  logits = model.predict(model.preprocess(images))[LOGITS]
  labels = model.postprocess(logits, (75, 101))[fields.PredictionFields.labels]
  assert labels.shape == (1, 75, 101)


@pytest.mark.parametrize("extractor, output_stride, stride", [
    ("resnet_v1_50", 8, 8), ("resnet_v1_50", 16, 16), ("mobilenet_v2", 8, 8)])
def test_pspnet_shapes(extractor, output_stride, stride):
  model = _build(arch="pspnet", extractor=extractor, output_stride=output_stride,
                 num_classes=6)
  images = tf.zeros((1, 64, 64, 3))
  out = model.predict(model.preprocess(images), training=True)
  assert out[LOGITS].shape == (1, 64 // stride, 64 // stride, 6)
  assert out["aux"].shape[-1] == 6
  assert set(model.predict(model.preprocess(images))) == {LOGITS}


def _conv_widths(model):
  return {layer.name: layer.filters for layer in model.keras_model.layers
          if hasattr(layer, "filters") and layer.name not in model.classifier_layer_names}


@pytest.mark.parametrize("arch, extractor", [("icnet", "resnet_v1_50"),
                                             ("pspnet", "resnet_v1_50")])
def test_filter_scale_halves_prunable_widths(arch, extractor):
  full = _conv_widths(_build(arch=arch, extractor=extractor, filter_scale=1.0))
  half = _conv_widths(_build(arch=arch, extractor=extractor, filter_scale=0.5))
  assert full.keys() == half.keys() and len(full) > 50
  for name, width in full.items():
    assert half[name] == width // 2, name


def test_filter_scale_keeps_classifier_width():
  model = _build(arch="icnet", extractor="resnet_v1_50", filter_scale=0.5, num_classes=19)
  for name in model.classifier_layer_names:
    assert model.keras_model.get_layer(name).filters == 19


def test_aux_weight_zero_removes_head():
  model = _build(arch="icnet", extra="", num_classes=3)
  assert set(model.loss_fn.head_weights) == {LOGITS, "aux_1_8", "aux_1_16"}
  config = helpers.model_config(arch="icnet", num_classes=3)
  config.icnet.loss.aux_weights.extend([0.0, 0.25])
  model = model_builder.build(config)
  assert model.loss_fn.head_weights == {LOGITS: 1.0, "aux_1_16": 0.25}
  out = model.predict(tf.zeros((1, 64, 64, 3)), training=True)
  assert set(out) == {LOGITS, "aux_1_16"}


def test_loss_weighs_branches_as_configured():
  config = helpers.model_config(arch="icnet", num_classes=3)
  config.icnet.loss.main_weight = 2.0
  config.icnet.loss.aux_weights.extend([0.3, 0.5])
  model = model_builder.build(config)
  rng = np.random.default_rng(0)
  predictions = {LOGITS: rng.normal(size=(1, 8, 8, 3)).astype(np.float32),
                 "aux_1_8": rng.normal(size=(1, 4, 4, 3)).astype(np.float32),
                 "aux_1_16": rng.normal(size=(1, 2, 2, 3)).astype(np.float32)}
  labels = rng.integers(0, 3, size=(1, 8, 8, 1)).astype(np.int32)
  labels[0, 0, :4] = 255
  losses = model.loss(predictions, labels)
  for head, weight in [(LOGITS, 2.0), ("aux_1_8", 0.3), ("aux_1_16", 0.5)]:
    unweighted = core_losses.softmax_cross_entropy(predictions[head], labels, 255)
    assert losses[f"{head}_loss"].numpy() == pytest.approx(weight * unweighted.numpy(), rel=1e-6)


def test_restore_layers_by_fine_tune_type():
  model = _build(arch="icnet", num_classes=3)
  backbone = {l.name for l in model.restore_layers(train_pb2.TrainConfig.CLASSIFICATION)}
  everything = {l.name for l in model.restore_layers(train_pb2.TrainConfig.SEGMENTATION)}
  assert backbone == {l.name for l in model.feature_extractor.layers if l.weights}
  assert backbone < everything
  assert not everything & model.classifier_layer_names
  assert "icnet_psp_conv" in everything and "icnet_psp_conv" not in backbone


@pytest.mark.parametrize("text, match", [
    ("", r"model: 'model' is not set; set one of: icnet, pspnet"),
    ('icnet { feature_extractor { type: "mobilenet_v2" } loss { softmax_cross_entropy {} } }',
     r"model.icnet.num_classes"),
    ('icnet { num_classes: 3 feature_extractor { type: "vgg16" } loss { softmax_cross_entropy {} } }',
     r"model.icnet.feature_extractor.type: unknown 'vgg16'; allowed: .*mobilenet_v2.*resnet_v1_50"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" output_stride: 16 } loss { softmax_cross_entropy {} } }',
     r"output_stride must be 8 for ICNet"),
    ('pspnet { num_classes: 3 feature_extractor { type: "resnet_v1_50" output_stride: 4 } loss { softmax_cross_entropy {} } }',
     r"model.pspnet.feature_extractor.*output_stride"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" } }',
     r"model.icnet.loss: 'classification_loss' is not set"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" } loss { softmax_cross_entropy {} class_weights: 1.0 } }',
     r"model.icnet.loss.class_weights has 1 values; num_classes is 3"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" } loss { softmax_cross_entropy {} aux_weights: 0.4 } }',
     r"aux_weights has 1 values; this model has 2 auxiliary heads"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" } loss { softmax_cross_entropy {} class_weighting: ENET enet_weighting_constant: 1.0 } }',
     r"model.icnet.loss.enet_weighting_constant must be > 1 \(weights 1 / ln\(c \+ p_c\)\), got 1"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" } loss { softmax_cross_entropy {} class_weighting: MEDIAN_FREQUENCY enet_weighting_constant: 1.2 } }',
     r"model.icnet.loss.enet_weighting_constant applies to class_weighting ENET only; this loss has class_weighting MEDIAN_FREQUENCY"),
    ('icnet { num_classes: 3 ignore_label: 2 feature_extractor { type: "mobilenet_v2" } loss { softmax_cross_entropy {} } }',
     r"ignore_label \(2\) is a class id"),
    ('pspnet { num_classes: 3 aux_stage: "block4" feature_extractor { '
     'type: "resnet_v1_50" filter_scale: 0.125 } loss { softmax_cross_entropy {} } }',
     r"model.pspnet.aux_stage: 'block4' is not a stage before the last of "
     r"resnet_v1_50; allowed: stem, block1, block2, block3"),
    ('pspnet { num_classes: 3 bin_conv_depth: -1 feature_extractor { '
     'type: "resnet_v1_50" } loss { softmax_cross_entropy {} } }',
     r"model.pspnet.bin_conv_depth must be >= 0, got -1"),
])
def test_model_builder_errors(text, match):
  config = helpers.pipeline_config(f"model {{ {text} }}").model
  with pytest.raises(ValueError, match=match):
    model_builder.build(config)


def test_pspnet_tf1_widths_and_aux_stage():
  """bin_conv_depth keeps the bins' convs at 512; aux_stage moves the aux
  classifier (the TF1 project's PSPNet)."""
  model = _build(arch="pspnet", extractor="resnet_v1_50", filter_scale=0.125,
                 extra='bin_conv_depth: 512 aux_stage: "block2" '
                       "head_activation: RELU6")
  layers = {layer.name: layer for layer in model.keras_model.layers}
  assert layers["pspnet_pool_6_conv"].filters == 512
  assert layers["pspnet_fuse_conv"].filters == 64
  assert layers["pspnet_aux_classifier"].kernel.shape[2] == 64  # block2
  assert layers["pspnet_fuse_conv_relu"].max_value == 6.0
