"""model_builder: the shared fields, the registries, errors naming the field."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import dilated_fcn
from tests import helpers

LOGITS = fields.PredictionFields.logits


_TOY = "toy_backbone_for_model_builder_test"


class _ToyBackbone(base.FeatureExtractor):
  """One conv per stage; registered by this test file, undone after it."""

  stage_names = ("stem", "stage2", "stage3", "stage4", "stage5")

  def __init__(self, conv_hyperparams, filter_scale=1.0, output_stride=8):
    super().__init__(conv_hyperparams, filter_scale, output_stride)
    tracker = base.StrideTracker(self.output_stride)
    self._schedule, self._stage_strides = {}, {}
    for stage in self.stage_names:
      self._schedule[stage] = tracker.step(2)
      self._stage_strides[stage] = tracker.current_stride

  def preprocess(self, images):
    return tf.cast(images, tf.float32) / 255.0

  def _build_stage(self, stage_name, net):
    stride, rate = self._schedule[stage_name]
    depth = self.width(8 * (self.stage_names.index(stage_name) + 1))
    net = self._track(self.conv_hyperparams.conv2d(
        depth, 3, name=f"{self.name}_{stage_name}", strides=stride,
        dilation_rate=rate))(net)
    relu = keras.layers.ReLU(name=f"{self.name}_{stage_name}_relu")
    return self._track(relu)(net)


@pytest.fixture(scope="module", autouse=True)
def toy_backbone():
  # base.register is the class decorator, applied here so it can be undone.
  base.register(_TOY)(_ToyBackbone)
  yield _ToyBackbone
  base.unregister(_TOY)


def _config(text):
  return helpers.pipeline_config(f"model {{ {text} }}").model


@pytest.mark.parametrize("arch, output_stride", [
    ("dilated_fcn", 8), ("deeplab_v3_plus", 16), ("mobile_unet", 32),
    ("icnet", 8), ("pspnet", 8), ("fpn", 32)])
def test_a_backbone_registered_in_a_test_builds_every_architecture(
    arch, output_stride):
  model = model_builder.build(helpers.model_config(
      arch=arch, extractor=_TOY, num_classes=3, output_stride=output_stride))
  assert isinstance(model.feature_extractor, _ToyBackbone)
  logits = model.predict(model.preprocess(tf.zeros((1, 64, 64, 3))))[LOGITS]
  assert logits.shape[-1] == 3


def test_a_toy_backbone_trains():
  model = model_builder.build(helpers.model_config(
      arch="dilated_fcn", extractor=_TOY, num_classes=3))
  optimizer = keras.optimizers.SGD(0.1)
  images = tf.random.stateless_uniform((2, 32, 32, 3), (1, 2), 0, 255)
  labels = tf.random.stateless_uniform((2, 32, 32, 1), (3, 4), 0, 3,
                                       dtype=tf.int32)
  variables = model.keras_model.trainable_variables
  before = [v.numpy() for v in variables]
  for _ in range(2):
    with tf.GradientTape() as tape:
      predictions = model.predict(model.preprocess(images), training=True)
      total = tf.add_n(list(model.loss(predictions, labels).values()))
    optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
  assert np.isfinite(float(total))
  assert any(not np.array_equal(b, v.numpy())
             for b, v in zip(before, variables))


def test_toy_backbone_has_no_imagenet_name_maps():
  assert _ToyBackbone.name == _TOY
  assert _ToyBackbone.imagenet_name_maps == {}


def test_unregister_undoes_register():
  base.register("toy_backbone_undone")(type(
      "_Undone", (_ToyBackbone,), {}))
  assert "toy_backbone_undone" in base.registered_names()
  base.unregister("toy_backbone_undone")
  with pytest.raises(ValueError, match="unknown 'toy_backbone_undone'"):
    base.get("toy_backbone_undone")


def test_shared_fields_reach_the_model():
  model = model_builder.build(_config(
      'dilated_fcn { num_classes: 2 ignore_label: 7 '
      'feature_extractor { type: "mobilenet_v1" filter_scale: 0.25 } '
      'hyperparams { batch_norm { epsilon: 0.01 } } '
      'loss { binary_cross_entropy {} } binary_output { threshold: 0.25 } }'))
  assert isinstance(model, dilated_fcn.DilatedFCN)
  assert (model.num_classes, model.ignore_label) == (2, 7)
  assert model.feature_extractor.filter_scale == 0.25
  assert model.conv_hyperparams.bn_epsilon == pytest.approx(0.01)
  assert model.loss_fn.ignore_label == 7 and model.loss_fn.binary
  assert model.binary_output.threshold == 0.25


def test_own_fields_come_from_the_architecture():
  model = model_builder.build(_config(
      'dilated_fcn { num_classes: 3 dilation_rates: [1, 3] context_depth: 64 '
      'feature_extractor { type: "mobilenet_v1" filter_scale: 0.25 } '
      'loss { softmax_cross_entropy {} } }'))
  assert model.dilation_rates == (1, 3) and model.context_depth == 64


_LOSS = "loss { softmax_cross_entropy {} }"


@pytest.mark.parametrize("text, message", [
    ('icnet { feature_extractor { type: "mobilenet_v2" } ' + _LOSS + " }",
     "model.icnet.num_classes must be set to a value >= 2"),
    ('icnet { num_classes: 1 feature_extractor { type: "mobilenet_v2" } '
     + _LOSS + " }",
     "model.icnet.num_classes is 1, but a model needs >= 2 classes"),
    ('mobile_unet { num_classes: 1 feature_extractor { type: "mobilenet_v1" '
     "} " + _LOSS + " binary_output {} }",
     "model.mobile_unet.num_classes is 1, but a model needs >= 2 classes"),
    ("icnet { num_classes: 3 " + _LOSS + " }",
     "model.icnet.feature_extractor is not set"),
    ('pspnet { num_classes: 3 ignore_label: 0 feature_extractor { type: '
     '"resnet_v1_50" } ' + _LOSS + " }",
     "model.pspnet.ignore_label (0) is a class id (num_classes is 3); use a "
     "value outside 0..2"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" '
     "filter_scale: 1.5 } " + _LOSS + " }",
     "model.icnet.feature_extractor.filter_scale must be in (0, 1], got 1.5"),
    ('icnet { num_classes: 3 feature_extractor { type: "mobilenet_v2" '
     "filter_scale: 0 } " + _LOSS + " }",
     "model.icnet.feature_extractor.filter_scale must be in (0, 1], got 0.0"),
    ('pspnet { num_classes: 3 feature_extractor { type: "resnet_v1_50" '
     "output_stride: 4 } " + _LOSS + " }",
     "model.pspnet.feature_extractor.output_stride: 4 is not supported by "
     "resnet_v1_50; allowed: 8, 16, 32"),
    ("icnet { num_classes: 3 feature_extractor { } " + _LOSS + " }",
     "model.icnet.feature_extractor.type is not set; allowed: cgnet, mobilenet_v1, "),
    ('dilated_fcn { num_classes: 3 dilation_rates: [1, 0] feature_extractor '
     '{ type: "mobilenet_v1" } ' + _LOSS + " }",
     "model.dilated_fcn.dilation_rates must all be >= 1, got [1, 0]"),
    ('mobile_unet { num_classes: 3 decoder_width_multiplier: 0 '
     'feature_extractor { type: "mobilenet_v1" output_stride: 32 } '
     + _LOSS + " }",
     "model.mobile_unet.decoder_width_multiplier must be > 0, got 0.0"),
])
def test_errors_name_the_field(text, message):
  with pytest.raises(ValueError) as e:
    model_builder.build(_config(text))
  assert str(e.value).startswith(message)


def test_unknown_type_names_the_field_and_the_registered_types():
  with pytest.raises(ValueError) as e:
    model_builder.build(_config(
        'icnet { num_classes: 3 feature_extractor { type: "vgg16" } '
        + _LOSS + " }"))
  assert str(e.value).startswith(
      "model.icnet.feature_extractor.type: unknown 'vgg16'; allowed: "
      "cgnet, mobilenet_v1, mobilenet_v2, resnet50_keras_icnet, resnet_v1_50, "
      f"{_TOY}")  # this file's toy backbone is registered while it runs
