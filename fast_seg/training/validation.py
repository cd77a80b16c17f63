"""Validation during training and the best checkpoint it keeps.

train_config.eval_every_n_steps evaluates the weights being trained, in
this process (eval_lib.Evaluator over eval_input_reader), writes the results
under <logdir>/validation and keeps the best weights by
train_config.best_checkpoint_metric in <logdir>/best (checkpoint_util's
BestCheckpoint). A non-chief worker writes both into its throw-away dir.
"""

import os

import tensorflow as tf

from fast_seg.evaluation import eval_lib
from fast_seg.utils import checkpoint_util

# In-process validation results, under the logdir.
VALIDATION_DIR = "validation"


def build(pipeline_config, model, root):
  """The run's Validation, or None when eval_every_n_steps is 0.

  Built before the first step, so a bad eval_input_reader or eval_config
  fails then rather than at the first validation.

  Args:
    pipeline_config: the as-run pipeline.
    model: the model being trained (the tfmot-wrapped one under
      compression), evaluated with training=False: no copy of the weights.
    root: where validation/ and best/ go (the logdir, or a non-chief
      worker's own directory).
  """
  every = pipeline_config.train_config.eval_every_n_steps
  if every < 0:
    raise ValueError(
        f"train_config.eval_every_n_steps must be >= 0 (0: no validation), "
        f"got {every}")
  if not every:
    return None
  if not pipeline_config.eval_input_reader.tf_record_input_path:
    raise ValueError("train_config.eval_every_n_steps needs "
                     "eval_input_reader.tf_record_input_path")
  evaluator = eval_lib.Evaluator(pipeline_config, model=model)
  best = checkpoint_util.BestCheckpoint(
      os.path.join(root, checkpoint_util.BEST_DIR),
      pipeline_config.train_config.best_checkpoint_metric)
  return Validation(evaluator, best, os.path.join(root, VALIDATION_DIR))


class Validation:
  """Evaluates the current weights; keeps them in best/ if they are the best."""

  def __init__(self, evaluator, best, directory):
    self.evaluator = evaluator
    self.best = best
    self.directory = directory

  def run(self, step, write_checkpoint):
    """One validation at `step`: its line, its scalar, maybe best/.

    Args:
      step: the training step (int).
      write_checkpoint: the run's checkpoint.write, which BestCheckpoint
        calls with a path when the result is the best so far.

    Returns:
      The evaluator's result dict.
    """
    result = self.evaluator.evaluate_weights(self.directory, step, quiet=True)
    metric = self.best.metric
    improved = self.best.offer(result, write_checkpoint)
    print(f"validation at step {step}: {metric} {100 * result[metric]:.2f}"
          f"  (best {100 * self.best.value:.2f} at step "
          f"{self.best.record['step']}"
          f"{', saved to ' + self.best.directory if improved else ''})",
          flush=True)
    tf.summary.scalar(f"validation/{metric}", result[metric], step=step)
    return result
