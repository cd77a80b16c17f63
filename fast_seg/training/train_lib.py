"""The training behind train.py: wiring only.

A custom tf.function step under a tf.distribute strategy (what slim's
learning.train and model_deploy did in TF1), in modules of one job each:

  run_settings.py  what is settled before the first step: the strategy, the
                   checks of train_config, num_epochs -> num_steps, computed
                   class weights, the as-run config
  trainer.py       the Trainer: model, optimizer, checkpoints, resume, loop
  train_step.py    the compiled step (gradients, replicas, counters)
  progress.py      the log lines, TensorBoard summaries, train_time.json
  validation.py    validation during training and the best/ checkpoint

This module keeps `train`, the one call train.py and compress make.
"""

import contextlib

from fast_seg.training import pipeline_check
from fast_seg.training import run_settings
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import config_util
from fast_seg.utils import run_lock


def train(pipeline_config, logdir, num_steps=None, strategy="one_device"):
  """Trains (or resumes) the model of `pipeline_config` in `logdir`.

  Args:
    pipeline_config: pipeline_pb2.PipelineConfig.
    logdir: checkpoints, TensorBoard events and the as-run pipeline.config.
    num_steps: overrides train_config.num_steps / num_epochs (and is saved
      in the config).
    strategy: one of STRATEGIES.

  Returns:
    dict of the last logged losses and the final step.

  Raises:
    ValueError: another run holds the logdir (utils/run_lock.py), or a
      setting or the data cannot be trained on.
  """
  config = run_settings.as_run_config(pipeline_config, num_steps)
  # First: MultiWorkerMirroredStrategy must be created before other TF work.
  strategy = run_settings.build_strategy(strategy)
  pipeline_check.check(config, "train", strategy)
  chief = strategy.extended.should_checkpoint
  # One run per logdir: the chief writes it (other workers only read it).
  with (run_lock.held(logdir) if chief else contextlib.nullcontext()):
    # Checks the data, and that a resumed logdir's checkpoints fit the
    # model, before anything is written: a run refused here leaves no new
    # logdir behind (the lock removes the folder it made), nor its config
    # over the one the checkpoints were trained with.
    trainer = trainer_lib.Trainer(config, logdir, strategy)
    if chief:
      # The as-run config: with the computed steps and class weights.
      config_util.save_pipeline_config(trainer.config, logdir)
    return trainer.train(trainer.config.train_config.num_steps)
