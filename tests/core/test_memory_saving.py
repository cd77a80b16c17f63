"""SegmentationModel.enable_memory_saving: same step, fewer kept activations.

Recomputing the trunk stages in the backward pass must not change what a
training step computes (outputs, gradients, batch-norm moving statistics) nor
what a checkpoint holds (layer names and weights).
"""

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import recompute
from fast_seg.model_optimization import tfmot_lib
from fast_seg.protos import train_pb2
from fast_seg.utils import checkpoint_util
from tests import helpers

CASES = [
    ("icnet", "mobilenet_v2", 8),
    ("pspnet", "resnet_v1_50", 8),
    ("mobile_unet", "mobilenet_v2", 32),
]


def _twins(arch, extractor, output_stride):
  """Two models with equal weights; the second saves memory."""
  config = helpers.model_config(arch=arch, extractor=extractor, num_classes=5,
                                filter_scale=0.25, output_stride=output_stride)
  plain = model_builder.build(config)
  saving = model_builder.build(config)
  saving.keras_model.set_weights(plain.keras_model.get_weights())
  saving.enable_memory_saving()
  return plain, saving


def _step(model, images, labels):
  """Trainer's forward and backward: predictions, total loss, gradients."""
  with tf.GradientTape() as tape:
    predictions = model.predict(model.preprocess(images), training=True)
    total = tf.add_n(list(model.loss(predictions, labels).values()))
  return predictions, total, tape.gradient(
      total, model.keras_model.trainable_variables)


def _batch():
  images = tf.random.stateless_uniform((2, 64, 64, 3), (1, 2), 0, 255)
  labels = tf.random.stateless_uniform((2, 64, 64, 1), (3, 4), 0, 5,
                                       dtype=tf.int32)
  return images, labels


def _count_recompute_grad(monkeypatch):
  """Functions passed to tf.recompute_grad from now on."""
  wrapped, original = [], tf.recompute_grad
  monkeypatch.setattr(tf, "recompute_grad",
                      lambda f: wrapped.append(f) or original(f))
  return wrapped


def _assert_same_step(plain, saving, step):
  images, labels = _batch()
  predictions, total, gradients = step(plain, images, labels)
  saved_predictions, saved_total, saved_gradients = step(saving, images,
                                                         labels)
  assert set(predictions) == set(saved_predictions)
  for head, logits in predictions.items():
    np.testing.assert_allclose(saved_predictions[head], logits, rtol=1e-5,
                               atol=1e-5, err_msg=head)
  np.testing.assert_allclose(saved_total, total, rtol=1e-6)
  variables = plain.keras_model.trainable_variables
  assert len(saved_gradients) == len(gradients) == len(variables)
  for variable, gradient, saved in zip(variables, gradients, saved_gradients):
    assert saved is not None, variable.name
    # The recomputed stage's gradients are summed in another order: through
    # a ResNet-50 that moves the stem's by up to ~2e-5 of their largest.
    scale = float(np.abs(gradient).max())
    np.testing.assert_allclose(saved, gradient, rtol=1e-4,
                               atol=1e-4 * scale + 1e-9, err_msg=variable.name)
  # Moving statistics were updated once, not again by the recomputation.
  for weight, saved in zip(plain.keras_model.weights,
                           saving.keras_model.weights):
    np.testing.assert_allclose(saved, weight, rtol=1e-6, atol=1e-6,
                               err_msg=weight.name)


@pytest.mark.parametrize("arch, extractor, output_stride", CASES)
def test_same_outputs_gradients_and_moving_stats_eager(arch, extractor,
                                                       output_stride):
  _assert_same_step(*_twins(arch, extractor, output_stride), _step)


def test_same_step_in_tf_function():
  """The trainer's step is a tf.function: recomputation in a graph."""
  plain, saving = _twins("icnet", "mobilenet_v2", 8)
  _assert_same_step(plain, saving, tf.function(_step))


def test_every_stage_is_recomputed(monkeypatch):
  _, saving = _twins("pspnet", "resnet_v1_50", 8)
  plan = saving._recompute_plan  # pylint: disable=protected-access
  assert isinstance(plan, recompute.RecomputePlan)
  segments = plan.segments
  assert [s.name for s in segments] == list(
      saving.feature_extractor.stage_names)
  # The trunk's layers all belong to a recomputed stage, nothing else does.
  recomputed = {layer.name for s in segments for layer in s.layers}
  assert recomputed == {l.name for l in saving.feature_extractor.layers}
  wrapped = _count_recompute_grad(monkeypatch)
  _step(saving, *_batch())
  assert len(wrapped) == len(segments)


def test_layers_and_checkpoints_unchanged(tmp_path):
  plain, saving = _twins("icnet", "mobilenet_v2", 8)
  before = [(l.name, [w.name for w in l.weights])
            for l in saving.keras_model.layers]
  _step(saving, *_batch())
  assert [(l.name, [w.name for w in l.weights])
          for l in saving.keras_model.layers] == before
  assert before == [(l.name, [w.name for w in l.weights])
                    for l in plain.keras_model.layers]
  # A checkpoint of the memory-saving model restores into a plain one.
  path = checkpoint_util.make_checkpoint(saving.keras_model).save(
      str(tmp_path / "ckpt"))
  checkpoint_util.restore_layers(plain.keras_model.layers, path)
  for weight, saved in zip(plain.keras_model.weights,
                           saving.keras_model.weights):
    np.testing.assert_array_equal(weight, saved)


def test_inference_unchanged():
  plain, saving = _twins("icnet", "mobilenet_v2", 8)
  images, _ = _batch()
  np.testing.assert_array_equal(
      saving.predict(saving.preprocess(images))["logits"],
      plain.predict(plain.preprocess(images))["logits"])


def test_frozen_trunk_is_not_recomputed(monkeypatch):
  """freeze_backbone: no gradient flows into the trunk, nothing to save."""
  plain, saving = _twins("icnet", "mobilenet_v2", 8)
  for model in (plain, saving):
    for layer in model.backbone_layers:
      layer.trainable = False
  wrapped = _count_recompute_grad(monkeypatch)
  _assert_same_step(plain, saving, _step)
  assert not wrapped


def test_rejects_pruning_wrappers():
  config = helpers.model_config(arch="icnet", extractor="mobilenet_v2",
                                num_classes=3, filter_scale=0.25)
  model = model_builder.build(config)
  train_config = train_pb2.TrainConfig(num_steps=10)
  train_config.magnitude_pruning.frequency = 1
  compression = tfmot_lib.apply(model, train_config)
  with pytest.raises(ValueError, match="magnitude_pruning"):
    compression.model.enable_memory_saving()
