"""Training: resume with the step counter, NaN stop, fine-tuning, real data."""

import json
import math
import shutil

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.core import standard_fields as fields
from fast_seg.data import dataset_info
from fast_seg.data import synthetic
from fast_seg.training import time_profile
from fast_seg.training import run_settings
from fast_seg.training import train_lib
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers


def _trainer(config, logdir):
  return trainer_lib.Trainer(config, str(logdir), run_settings.build_strategy("one_device"))


def _weights(model):
  return [w.numpy() for w in model.keras_model.weights]


def test_resume_continues_step_and_weights(tiny_dataset, tmp_path):
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, num_steps=4))
  logdir = tmp_path / "run"
  result = train_lib.train(config, str(logdir))
  assert result["step"] == 4
  assert tf.train.latest_checkpoint(str(logdir)).endswith("ckpt-4")
  assert (logdir / config_util.PIPELINE_CONFIG_NAME).exists()
  assert list((logdir / "train").glob("events.out.tfevents.*"))

  # A new process on the same logdir: restores step 4 and the same weights.
  trainer = _trainer(config, logdir)
  before = _weights(trainer.model)
  assert trainer.restore_or_initialize() == 4
  restored = _weights(trainer.model)
  assert any(not np.array_equal(a, b) for a, b in zip(before, restored))
  reference = _trainer(config, logdir)
  reference.checkpoint.restore(str(logdir / "ckpt-4")).expect_partial()
  for a, b in zip(restored, _weights(reference.model)):
    np.testing.assert_array_equal(a, b)

  # Continue to step 6: the counter goes on from 4, ckpt-6 is written.
  result = train_lib.train(config, str(logdir), num_steps=6)
  assert result["step"] == 6
  assert checkpoint_util.checkpoint_step(tf.train.latest_checkpoint(str(logdir))) == 6
  # Asking for fewer steps than done trains nothing.
  assert train_lib.train(config, str(logdir), num_steps=5)["step"] == 6


def _diverging(config):
  """`config` with infinite class weights: every step's loss is Inf. Set
  here, as a config file cannot say inf (config_util refuses it)."""
  config.model.icnet.loss.class_weights[:] = [math.inf] * 6
  return config


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(tiny_dataset, tmp_path):
  logdir = tmp_path / "run"
  good = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, num_steps=2))
  train_lib.train(good, str(logdir))
  before = _trainer(good, logdir)
  before.restore_or_initialize()
  good_weights = _weights(before.model)

  # An infinite class weight makes the loss Inf from the next step on.
  bad = _diverging(helpers.pipeline_config(
      helpers.train_pipeline_text(tiny_dataset, num_steps=6)))
  with pytest.raises(trainer_lib.TrainingDivergedError, match=r"NaN or Inf.*ckpt-2"):
    train_lib.train(bad, str(logdir))
  assert tf.train.latest_checkpoint(str(logdir)).endswith("ckpt-2")
  trainer = _trainer(good, logdir)
  trainer.restore_or_initialize()
  for weight, good_weight in zip(_weights(trainer.model), good_weights):
    assert np.all(np.isfinite(weight))
    np.testing.assert_array_equal(weight, good_weight)


def test_fine_tune_segmentation_restores_all_but_classifiers(tiny_dataset, tmp_path):
  source = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, num_steps=2))
  train_lib.train(source, str(tmp_path / "source"))
  source_model = _trainer(source, tmp_path / "source").model
  checkpoint_util.restore_layers(source_model.keras_model.layers, str(tmp_path / "source"))

  # Same trunk, 4 classes instead of 6, on a dataset that has 4.
  target_data = tmp_path / "four_classes"
  target_data.mkdir()
  for path in tiny_dataset.glob("train-*.tfrecord"):
    shutil.copy(path, target_data)
  info = dataset_info.load(str(tiny_dataset))
  info.update(num_classes=4, class_names=info["class_names"][:4],
              palette=info["palette"][:4])
  dataset_info.write(str(target_data), info)
  target_model = helpers.model_text(arch="icnet", extractor="mobilenet_v2",
                                    num_classes=4, filter_scale=0.25)
  target = helpers.pipeline_config(helpers.train_pipeline_text(
      target_data, num_steps=2, model=target_model,
      extra_train=f'fine_tune_checkpoint: "{tmp_path}/source/ckpt-2" '
                  "fine_tune_checkpoint_type: SEGMENTATION"))
  trainer = _trainer(target, tmp_path / "target")
  assert trainer.restore_or_initialize() == 0
  layer = "icnet_cff2_low_conv"
  np.testing.assert_array_equal(
      trainer.model.keras_model.get_layer(layer).kernel.numpy(),
      source_model.keras_model.get_layer(layer).kernel.numpy())
  assert trainer.model.keras_model.get_layer("icnet_classifier").kernel.shape[-1] == 4


def test_fine_tune_mismatch_is_reported_by_name(tiny_dataset, tmp_path):
  source = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, num_steps=2))
  train_lib.train(source, str(tmp_path / "source"))
  wider = helpers.model_text(arch="icnet", extractor="mobilenet_v2", num_classes=6,
                             filter_scale=0.5)
  target = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, model=wider,
      extra_train=f'fine_tune_checkpoint: "{tmp_path}/source"'))
  with pytest.raises(ValueError, match=r"shape mismatch: mobilenet_v2_Conv/kernel"):
    _trainer(target, tmp_path / "target").restore_or_initialize()


def test_bad_train_settings_name_the_field(tiny_dataset, tmp_path):
  text = helpers.train_pipeline_text(tiny_dataset)
  config = helpers.pipeline_config(text)
  config.train_input_reader.batch_size = 2
  with pytest.raises(ValueError, match="train_input_reader.batch_size"):
    _trainer(config, tmp_path)
  config = helpers.pipeline_config(text)
  config.train_config.ClearField("optimizer")
  with pytest.raises(ValueError, match="train_config.optimizer"):
    _trainer(config, tmp_path)
  config = helpers.pipeline_config(text.replace(str(tiny_dataset), str(tmp_path / "nothing")))
  with pytest.raises(ValueError, match=r"train_input_reader.tf_record_input_path"):
    train_lib.train(config, str(tmp_path / "run"))


def test_num_classes_disagreeing_with_dataset_info_fails_first(tiny_dataset, tmp_path):
  model = helpers.model_text(arch="icnet", extractor="mobilenet_v2", num_classes=5,
                             filter_scale=0.25)
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, model=model))
  with pytest.raises(ValueError, match=r"model\.icnet\.num_classes is 5") as error:
    train_lib.train(config, str(tmp_path / "run"))
  assert str(tiny_dataset / "dataset_info.json") in str(error.value)
  assert tf.train.latest_checkpoint(str(tmp_path / "run")) is None


def _camvid_records(tmp_path, count=8):
  """A TFRecord of a few real CamVid frames, halved to 240x180 for speed."""
  from PIL import Image
  from fast_seg.data import tf_example
  camvid = helpers.SHARED_DATA / "camvid"
  if not (camvid / "train.txt").exists():
    pytest.skip(f"CamVid sample not found at {camvid} (../shared/data)")
  names = (camvid / "train.txt").read_text().split()[:count]
  examples = []
  for name in names:
    image = Image.open(camvid / "images" / f"{name}.jpg").resize((240, 180), Image.BILINEAR)
    label = Image.open(camvid / "labels" / f"{name}.png").resize((240, 180), Image.NEAREST)
    examples.append(tf_example.make_example(
        tf_example.encode_png(np.asarray(image)), tf_example.encode_png(np.asarray(label)),
        f"{name}.png", 180, 240, "png"))
  tf_example.write_sharded(examples, str(tmp_path), "train", 1)
  return tmp_path


def test_loss_falls_on_real_camvid_images(tmp_path):
  data_dir = _camvid_records(tmp_path)
  model = helpers.model_text(arch="icnet", extractor="mobilenet_v2", num_classes=11,
                             filter_scale=0.5).replace("num_classes: 11",
                                                       "num_classes: 11 ignore_label: 11")
  text = helpers.train_pipeline_text(data_dir, num_steps=40, model=model, image_size=128)
  config = helpers.pipeline_config(text)
  trainer = _trainer(config, tmp_path / "run")
  from fast_seg.builders import input_reader_builder
  batch = next(iter(input_reader_builder.build(
      config.train_input_reader, is_training=True, batch_size=4, num_classes=11,
      ignore_label=11, augmentations=config.train_config.data_augmentation_options)))

  def main_loss():
    model = trainer.model
    predictions = model.predict(model.preprocess(batch[fields.InputFields.image]),
                                training=True)
    return float(model.loss(predictions, batch[fields.InputFields.label])["logits_loss"])

  before = main_loss()
  trainer.train(40)
  after = main_loss()
  assert after < 0.7 * before, (before, after)


def _event_tags(directory):
  tags = set()
  for path in directory.glob("events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      tags.update(value.tag for value in event.summary.value)
  return tags


def test_summaries_and_frozen_backbone(tiny_dataset, tmp_path):
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2,
      extra_train="image_summary_every_n_steps: 2 freeze_backbone: true"))
  trainer = _trainer(config, tmp_path)
  # Summaries colour classes with the dataset's palette.
  assert trainer.dataset_info_path == str(tiny_dataset / "dataset_info.json")
  np.testing.assert_array_equal(trainer.palette, synthetic.PALETTE)
  backbone = {w.name: w.numpy() for layer in trainer.model.backbone_layers
              for w in layer.weights}
  head_before = trainer.model.keras_model.get_layer("icnet_classifier").kernel.numpy()
  trainer.train(2)
  for layer in trainer.model.backbone_layers:
    for w in layer.weights:  # kernels and BN statistics alike
      np.testing.assert_array_equal(w.numpy(), backbone[w.name])
  head_after = trainer.model.keras_model.get_layer("icnet_classifier").kernel.numpy()
  assert not np.array_equal(head_before, head_after)
  tags = _event_tags(tmp_path / "train")
  assert {"losses/total_loss", "losses/logits_loss", "losses/aux_1_8_loss",
          "losses/regularization_loss", "learning_rate", "images_per_second",
          "input", "ground_truth", "prediction"} <= tags
  _check_time_profile(tmp_path)


def _check_time_profile(logdir):
  """train_time.json: every phase of the 2-step run, adding up to its wall."""
  with open(logdir / time_profile.FILE_NAME, encoding="utf-8") as f:
    summary = json.load(f)
  phases = summary["phases"]
  assert set(phases) == set(time_profile.PHASES)
  # 2 steps, one per call: the first call, then one more; a checkpoint and
  # an image summary at step 2, a log line for the last step.
  assert summary["steps"] == 2
  for name in ("steps", "first_call", "checkpoints", "image_summaries",
               "logging"):
    assert phases[name] > 0, name
  assert phases["validation"] == 0  # no eval_every_n_steps
  assert sum(phases.values()) + summary["other_s"] == pytest.approx(
      summary["wall_s"], abs=2e-3)
  assert summary["images_per_second"] == pytest.approx(
      2 * 4 / summary["wall_s"], rel=1e-3)
  assert summary["step_images_per_second"] == pytest.approx(
      4 / phases["steps"], rel=1e-3)


def test_time_line_gives_every_share():
  summary = {"wall_s": 200.0, "steps": 100, "images_per_second": 4.0,
             "step_images_per_second": 5.0, "other_s": 10.0,
             "phases": {"steps": 150.0, "first_call": 20.0, "logging": 0.0,
                        "image_summaries": 0.0, "checkpoints": 4.0,
                        "validation": 16.0}}
  assert time_profile.describe(summary) == (
      "Time: 200 s for 100 steps, 4.0 img/s end to end (5.0 img/s in the steps "
      "after the first call): steps 75.0%, first call 10.0%, checkpoints 2.0%, "
      "validation 8.0%, other 5.0%")


@pytest.mark.slow
def test_mixed_precision_and_xla_step(tiny_dataset, tmp_path):
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2,
      extra_train="precision: MIXED_FLOAT16 use_xla: true"))
  trainer = trainer_lib.Trainer(config, str(tmp_path),
                                run_settings.build_strategy("mirrored"))
  assert trainer.model.keras_model.get_layer("icnet_cff1_low_conv").compute_dtype == "float16"
  result = trainer.train(2)
  assert result["step"] == 2 and np.isfinite(result[fields.LossFields.total])
  for weight in trainer.model.keras_model.weights:
    assert weight.dtype == tf.float32


def test_imagenet_weights_from_config(tiny_dataset, tmp_path):
  import tf_keras as keras
  # A Keras-applications MobileNetV2 weight file (random values, no download).
  reference = keras.applications.MobileNetV2(
      input_shape=(64, 64, 3), alpha=0.35, include_top=False, weights=None)
  h5 = tmp_path / "mobilenet_v2_0.35_no_top.h5"
  reference.save_weights(str(h5))
  model = helpers.model_text(arch="icnet", extractor="mobilenet_v2", num_classes=6,
                             filter_scale=0.35)
  model = model.replace('filter_scale: 0.35', f'filter_scale: 0.35 weights_path: "{h5}"')
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, model=model))
  trainer = _trainer(config, tmp_path / "run")
  assert trainer.restore_or_initialize() == 0
  np.testing.assert_array_equal(
      trainer.model.keras_model.get_layer("mobilenet_v2_expanded_conv_3_expand").kernel.numpy(),
      reference.get_layer("block_3_expand").kernel.numpy())


@pytest.mark.slow  # overlaps the default suite; make test-all
def test_steps_per_call_matches_one_step_per_call(tiny_dataset, tmp_path):
  looped = _trainer(helpers.pipeline_config(
      helpers.deterministic_train_pipeline_text(
      tiny_dataset, num_steps=7, extra_train="steps_per_call: 3")),
                    tmp_path / "looped")
  single = _trainer(helpers.pipeline_config(
      helpers.deterministic_train_pipeline_text(
      tiny_dataset, num_steps=7)), tmp_path / "single")
  single.model.keras_model.set_weights(looped.model.keras_model.get_weights())
  looped_result = looped.train(7)
  single_result = single.train(7)
  # Calls of 3, 3 and a last one of 1: it stops exactly at 7. Checkpoints
  # (every 2 steps) come after the calls that pass a multiple of 2.
  assert looped_result["step"] == int(looped.step.numpy()) == 7
  assert sorted(checkpoint_util.checkpoint_step(p)
                for p in looped.manager.checkpoints) == [3, 6, 7]
  for name, value in single_result.items():
    np.testing.assert_allclose(looped_result[name], value, rtol=1e-5,
                               atol=1e-6, err_msg=name)
  for a, b in zip(_weights(looped.model), _weights(single.model)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_train_function_counts_every_step_of_a_call(tiny_dataset, tmp_path):
  # The benchmark's API; with an infinite class weight every step is Inf.
  config = _diverging(helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, extra_train="steps_per_call: 2")))
  trainer = _trainer(config, tmp_path)
  dataset = trainer.build_dataset()
  assert dataset.element_spec[fields.InputFields.image].shape.as_list() == [
      4, 64, 64, 3]
  losses = trainer.train_function(trainer.distribute(dataset))
  assert not np.isfinite(float(losses[fields.LossFields.total]))
  assert int(trainer.step.numpy()) == 2
  assert int(trainer.loss_guard.nonfinite_steps.numpy()) == 2


def test_memory_saving_trains(tiny_dataset, tmp_path):
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2, extra_train="memory_saving: true"))
  trainer = _trainer(config, tmp_path)
  assert trainer.model.memory_saving
  result = trainer.train(2)
  assert result["step"] == 2 and np.isfinite(result[fields.LossFields.total])


@pytest.mark.parametrize("extra, match", [
    ("steps_per_call: 0", r"train_config\.steps_per_call must be >= 1"),
    ("memory_saving: true magnitude_pruning { frequency: 1 }",
     r"train_config\.memory_saving .*train_config\.magnitude_pruning"),
    ("memory_saving: true quantization_aware_training {}",
     r"train_config\.memory_saving .*train_config\.quantization_aware_training"),
    # tfmot's fake-quant ops are float32 only, whatever the half type.
    ("quantization_aware_training {} precision: MIXED_FLOAT16",
     r"quantization_aware_training .*precision: MIXED_FLOAT16"),
    ("quantization_aware_training {} precision: MIXED_BFLOAT16",
     r"quantization_aware_training .*precision: MIXED_BFLOAT16"),
])
def test_bad_speed_settings_name_the_fields(tiny_dataset, tmp_path, extra, match):
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, extra_train=extra))
  with pytest.raises(ValueError, match=match):
    _trainer(config, tmp_path)


def test_deprecated_precision_field_set_in_code_is_refused(tiny_dataset,
                                                           tmp_path):
  # Only the loader migrates mixed_precision into precision; a config set up
  # in code must not train in float32 while it says mixed.
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset))
  config.train_config.mixed_precision = True
  with pytest.raises(ValueError, match=r"train_config\.mixed_precision is "
                     r"deprecated.*train_config\.precision"):
    _trainer(config, tmp_path)


def _bfloat16_unavailable():
  """Why bfloat16 convolutions cannot run on this CPU, or None."""
  try:
    x = tf.ones([1, 4, 4, 3], tf.bfloat16)
    tf.nn.conv2d(x, tf.ones([3, 3, 3, 2], tf.bfloat16), 1, "SAME").numpy()
    tf.nn.depthwise_conv2d(x, tf.ones([3, 3, 3, 1], tf.bfloat16), [1] * 4,
                           "SAME").numpy()
  except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError,
          tf.errors.UnimplementedError) as error:
    return f"bfloat16 ops unavailable on this CPU: {error.message[:200]}"
  return None


def test_mixed_bfloat16_step(tiny_dataset, tmp_path):
  import tf_keras as keras
  reason = _bfloat16_unavailable()
  if reason:
    pytest.skip(reason)
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2,
      extra_train="precision: MIXED_BFLOAT16"))
  trainer = _trainer(config, tmp_path)
  layer = trainer.model.keras_model.get_layer("icnet_cff1_low_conv")
  assert layer.compute_dtype == "bfloat16"
  assert not trainer.loss_scaling
  assert not isinstance(trainer.optimizer, keras.mixed_precision.LossScaleOptimizer)
  result = trainer.train(2)
  assert result["step"] == 2 and np.isfinite(result[fields.LossFields.total])
  for weight in trainer.model.keras_model.weights:
    assert weight.dtype == tf.float32
