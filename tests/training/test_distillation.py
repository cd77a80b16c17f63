"""Knowledge distillation in the training step (train_config.distillation)."""

import os

import numpy as np
import pytest

from fast_seg.training import distillation
from fast_seg.training import run_settings
from fast_seg.training import train_lib
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import checkpoint_util
from tests import helpers


def _distillation_text(teacher_logdir, pixel_weight=1.0, pair_weight=1.0,
                       teacher_config=None):
  config = teacher_config or os.path.join(teacher_logdir, "pipeline.config")
  return (f'distillation {{ teacher_config: "{config}" teacher_checkpoint: '
          f'"{teacher_logdir}" temperature: 2.0 pixel_weight: {pixel_weight} '
          f'pair_weight: {pair_weight} pair_grid_size: 4 }}')


def _trainer(text, logdir):
  return trainer_lib.Trainer(helpers.pipeline_config(text), str(logdir),
                             run_settings.build_strategy("one_device"))


def test_zero_weights_train_exactly_like_no_distillation(
    tiny_dataset, trained_run, tmp_path):
  _, teacher_dir = trained_run
  plain = _trainer(helpers.deterministic_train_pipeline_text(tiny_dataset,
                                                            num_steps=3),
                   tmp_path / "plain")
  distilled = _trainer(helpers.deterministic_train_pipeline_text(
      tiny_dataset, num_steps=3, extra_train=_distillation_text(
          teacher_dir, pixel_weight=0, pair_weight=0)), tmp_path / "distilled")
  distilled.model.keras_model.set_weights(plain.model.keras_model.get_weights())
  plain_result, distilled_result = plain.train(3), distilled.train(3)
  assert distillation.PIXEL_LOSS not in distilled_result
  assert distilled_result == plain_result
  for a, b in zip(plain.model.keras_model.weights,
                  distilled.model.keras_model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_distillation_trains_the_student_only(tiny_dataset, trained_run,
                                              tmp_path):
  _, teacher_dir = trained_run
  trainer = _trainer(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2, extra_train=_distillation_text(teacher_dir)),
                     tmp_path / "run")
  teacher = trainer.distillation.teacher
  before = [w.numpy() for w in trainer.distillation.teacher_variables]
  # The teacher holds its checkpoint's weights, and keeps them.
  reader = checkpoint_util.open_reader(
      checkpoint_util.resolve_checkpoint(teacher_dir))
  layer = teacher.inference_model.get_layer("icnet_classifier")
  np.testing.assert_array_equal(
      layer.kernel.numpy(),
      reader.get_tensor(checkpoint_util.weight_key(layer, layer.kernel)))
  teacher_ids = {id(w) for w in trainer.distillation.teacher_variables}
  assert not teacher_ids & {id(v) for v in trainer.trainable_variables}
  result = trainer.train(2)
  for name in (distillation.PIXEL_LOSS, distillation.PAIR_LOSS):
    assert np.isfinite(result[name]) and result[name] > 0, name
  for a, b in zip(before, trainer.distillation.teacher_variables):
    np.testing.assert_array_equal(a, b.numpy())
  # The checkpoint holds the student alone: eval / export / resume as usual.
  keys = checkpoint_util.open_reader(
      trainer.manager.latest_checkpoint).get_variable_to_shape_map()
  student_keys = {checkpoint_util.weight_key(l, w)
                  for l in trainer.model.keras_model.layers for w in l.weights}
  assert {k for k in keys if k.startswith("model/")} == student_keys


@pytest.mark.slow
def test_distillation_losses_are_logged(tiny_dataset, trained_run, tmp_path,
                                        capsys):
  _, teacher_dir = trained_run
  result = train_lib.train(helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2, extra_train=_distillation_text(
          teacher_dir, pair_weight=0))), str(tmp_path / "run"))
  out = capsys.readouterr().out
  assert "distillation_pixel=" in out and result["distillation_pixel"] > 0
  assert distillation.PAIR_LOSS not in result  # weight 0: not computed


def test_teacher_of_other_classes_is_refused(tiny_dataset, trained_run,
                                             tmp_path):
  _, teacher_dir = trained_run
  other = tmp_path / "teacher.config"
  other.write_text(helpers.model_text(num_classes=5, filter_scale=0.25))
  text = helpers.train_pipeline_text(tiny_dataset, extra_train=_distillation_text(
      teacher_dir, teacher_config=str(other)))
  with pytest.raises(ValueError, match=r"train_config\.distillation\."
                     r"teacher_config: .*num_classes 5, the student 6"):
    _trainer(text, tmp_path / "run")


@pytest.mark.parametrize("field, value, message", [
    ("temperature", 0.0, r"distillation\.temperature must be > 0"),
    ("pair_weight", -1.0, r"distillation\.pair_weight must be >= 0"),
    ("teacher_checkpoint", "/nonexistent/ckpt",
     r"distillation\.teacher_checkpoint: checkpoint not found"),
])
def test_bad_values_are_refused_naming_the_field(tiny_dataset, trained_run,
                                                 tmp_path, field, value,
                                                 message):
  _, teacher_dir = trained_run
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, extra_train=_distillation_text(teacher_dir)))
  setattr(config.train_config.distillation, field, value)
  with pytest.raises(ValueError, match=message):
    trainer_lib.Trainer(config, str(tmp_path / "run"),
                        run_settings.build_strategy("one_device"))
