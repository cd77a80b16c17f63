"""The one pipeline check: what each command needs, with no data read."""

import pytest

from fast_seg.training import pipeline_check
from tests import helpers

# Readers point at files that do not exist: the check must not read them.
_NO_DATA = "/nonexistent/fast_seg_data"


def _config(train_replacements=(), eval_text=""):
  text = helpers.train_pipeline_text(_NO_DATA)
  for old, new in train_replacements:
    assert old in text
    text = text.replace(old, new)
  return helpers.pipeline_config(text.replace("eval_config {",
                                              f"eval_config {{ {eval_text}"))


def test_a_good_config_passes_every_command_without_data():
  config = _config()
  for command in pipeline_check.PARTS:
    pipeline_check.check(config, command)


def test_commands_leave_the_model_to_the_run_and_all_builds_it():
  """The commands build the model right after the check; "all" (the config
  tests, migrate_config) has no run after it, so it builds the model."""
  config = helpers.pipeline_config(helpers.train_pipeline_text(_NO_DATA).replace(
      'type: "mobilenet_v2"', 'type: "mobilenet_v9"', 1))
  for command in ("train", "eval", "export", "compress"):
    pipeline_check.check(config, command)
  with pytest.raises(ValueError, match=r"mobilenet_v9"):
    pipeline_check.check(config, "all")


_RANDOM_CROP = "data_augmentation_options { random_crop { crop_height: 64 crop_width: 64 } }"


@pytest.mark.parametrize("replacements, eval_text, failing, passing, match", [
    # Batches of 4 need one size: without the crop only 1 can batch.
    (((_RANDOM_CROP, ""),), "", ("train", "compress", "all"),
     ("eval", "export"), r"train_config.batch_size is 4 but the examples"),
    # A random step in eval preprocessing: eval's, and training's only when
    # it validates.
    ((), "preprocessing { random_horizontal_flip {} }", ("eval", "all"),
     ("train", "export"), r"eval_config.preprocessing.*random"),
    ((("log_every_n_steps: 2", "log_every_n_steps: 2 eval_every_n_steps: 2"),),
     "padded_height: 64", ("train", "eval", "all"), ("export",),
     r"padded_height and padded_width must both be set"),
    ((("checkpoint_every_n_steps: 2", "checkpoint_every_n_steps: 0"),), "",
     ("train", "compress", "all"), ("eval", "export"),
     r"train_config.checkpoint_every_n_steps must be >= 1"),
    ((("constant_learning_rate { learning_rate: 0.003 }",
       "constant_learning_rate { learning_rate: -0.003 }"),), "",
     ("train", "all"), ("eval",), r"train_config.optimizer.adam_optimizer"),
    ((("log_every_n_steps: 2", "log_every_n_steps: 2 magnitude_pruning { "
       "final_sparsity: 0.5 begin_step: 8 end_step: 6 }"),), "",
     ("train", "export", "all"), ("eval",), r"magnitude_pruning"),
])
def test_each_command_checks_the_parts_it_reads(replacements, eval_text,
                                                failing, passing, match):
  config = _config(replacements, eval_text)
  for command in failing:
    with pytest.raises(ValueError, match=match):
      pipeline_check.check(config, command)
  for command in passing:
    pipeline_check.check(config, command)


def test_class_names_that_do_not_match_num_classes_fail_eval():
  config = _config(eval_text='class_names: "a" class_names: "b"')
  with pytest.raises(ValueError, match=r"class_names has 2 names; num_classes is 6"):
    pipeline_check.check(config, "eval")
