"""Does this pipeline config load? One answer, asked before any work.

train.py, eval.py, export.py and compress.py ask it when they start,
migrate_config asks it before writing a converted config, and the config
tests ask it of every shipped config ("all"), so a config that passes here
fails in none of them for a reason the config alone shows.

It builds what the config describes and reads no data: the model, the
optimizer and its schedule, the augmentations, and the checks each owner
makes of its own fields (train_config's by run_settings, a reader's
batching by input_reader_builder, eval_config's by eval_lib, the
compression fields by tfmot_lib). The rules live with their owners; this
module only decides which parts a command needs. Data-dependent checks
(num_classes against dataset_info.json, num_epochs -> num_steps, the
records themselves) stay with the run, which makes them before its first
step.
"""

import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import input_reader_builder
from fast_seg.builders import model_builder
from fast_seg.builders import optimizer_builder
from fast_seg.builders import preprocessor_builder
from fast_seg.evaluation import eval_lib
from fast_seg.model_optimization import tfmot_lib
from fast_seg.training import run_settings
from fast_seg.utils import config_util

MODEL, TRAINING, EVALUATION, COMPRESSION_FIELDS = (
    "model", "training", "evaluation", "compression fields")

# The parts of the pipeline each command reads. Training evaluates only
# with validation (train_config.eval_every_n_steps > 0). The commands build
# the model themselves as their first step after this check, before any
# record is read, so only "all" (migrate_config, the config tests) builds it
# here: building it twice would cost every command seconds.
PARTS = {
    "train": (TRAINING,),
    "compress": (TRAINING,),
    "eval": (EVALUATION,),
    "export": (COMPRESSION_FIELDS,),
    "all": (MODEL, TRAINING, EVALUATION),
}


def check(pipeline_config, command="all", strategy=None):
  """Raises ValueError naming the field at fault if `command` cannot run.

  Args:
    pipeline_config: pipeline_pb2.PipelineConfig, as loaded.
    command: a key of PARTS: the command about to run, or "all".
    strategy: the tf.distribute strategy training will use (its device
      count divides the batch); the default strategy when None.
  """
  parts = PARTS[command]
  # "all" also checks configs for evaluation or export only (no train_config).
  trains = command != "all" or pipeline_config.HasField("train_config")
  if TRAINING in parts and trains:
    _check_training(pipeline_config,
                    strategy or tf.distribute.get_strategy())
  validates = pipeline_config.train_config.eval_every_n_steps > 0
  if EVALUATION in parts or (TRAINING in parts and validates):
    eval_lib.check_eval_settings(pipeline_config)
  if COMPRESSION_FIELDS in parts:
    tfmot_lib.validate(pipeline_config.train_config)
  if MODEL in parts:  # last: the slowest part
    _check_model(pipeline_config.model)


def _check_model(model_config):
  """Builds the model, then lets Keras forget it (the run builds its own
  with the same layer names)."""
  model_builder.build(model_config)
  keras.backend.clear_session()


def _check_training(pipeline_config, strategy):
  """train_config, its optimizer and augmentations, the training reader."""
  run_settings.check_train_config(pipeline_config, strategy)
  train_config = pipeline_config.train_config
  arch = config_util.get_model_config(pipeline_config.model)
  # num_steps may still come from num_epochs (known once the data is read);
  # the schedule's fields are checked the same with any length.
  optimizer_builder.build(train_config.optimizer,
                          max(train_config.num_steps, 1))
  augmentations = train_config.data_augmentation_options
  preprocessor_builder.build_sequence(
      augmentations, arch.ignore_label,
      "train_config.data_augmentation_options")
  input_reader_builder.check_settings(
      pipeline_config.train_input_reader, is_training=True,
      batch_size=train_config.batch_size, num_classes=arch.num_classes,
      augmentations=augmentations, field_name="train_input_reader")
