"""The compiled training step under a tf.distribute strategy.

What slim's learning.train compiled in TF1, as a custom tf.function:
gradients of the losses (plus distillation and regularization) with float16
loss scaling, applied by the optimizer on every replica; the losses reduced
over the replicas; the step counter, the loss guard (loss_guard.py: NaN /
Inf and divergence) and a binary model's foreground counts updated in the
graph, so the Python loop syncs with the device only when it logs.

train_config.steps_per_call > 1 runs that many steps inside one compiled
call (a tf.range loop), so the per-step Python round trip is paid once per
call.
"""

import tensorflow as tf

from fast_seg.core import metrics
from fast_seg.core import standard_fields as fields


def binary_batch_counts(model, logits, labels):
  """Foreground (TP, FP, FN) of a binary model's batch: int64 [3], in-graph.

  Scored as evaluation scores it, so the training log's precision, recall
  and IoU mean what validation's do: the logits upsampled to the labels'
  size and thresholded by model.postprocess, the labels mapped to 0 / 1 by
  model.metric_labels (the binary loss's foreground rule), ignored pixels
  left out.

  Args:
    model: a binary core_model.SegmentationModel.
    logits: float [N, h, w, 1] of the main head (aux heads are not scored).
    labels: int [N, H, W, 1] dataset class ids.
  """
  predicted = model.postprocess(logits, tf.shape(labels)[1:3])[
      fields.PredictionFields.labels]
  targets = model.metric_labels(tf.squeeze(labels, -1))
  return metrics.binary_counts(targets, predicted, model.ignore_label)


def gradient_function(model, optimizer, variables, replicas, loss_scaling,
                      distillation=None, count_foreground=False, use_xla=False):
  """(images, labels) -> (losses by name, gradients, foreground counts).

  Gradients of `variables`, scaled for the replicas (and for float16 loss
  scaling, when `loss_scaling`: the optimizer is a LossScaleOptimizer);
  compiled with XLA when `use_xla`. The counts: {'foreground':
  binary_batch_counts of the main head} when `count_foreground`, from the
  logits the loss used; {} otherwise. `distillation`: the run's
  distillation_lib teacher, or None.
  """

  def compute_gradients(images, labels):
    with tf.GradientTape() as tape:
      if distillation:
        predictions, features = distillation.student_predict(
            model.preprocess(images))
      else:
        predictions = model.predict(model.preprocess(images), training=True)
      losses = model.loss(predictions, labels)
      if distillation:
        losses.update(distillation.losses(images, predictions, features))
      regularization = model.keras_model.losses
      losses[fields.LossFields.regularization] = (
          tf.add_n(regularization) if regularization else tf.constant(0.0))
      total = tf.add_n(list(losses.values()))
      scaled = total / replicas
      if loss_scaling:
        scaled = optimizer.get_scaled_loss(scaled)
    gradients = tape.gradient(scaled, variables)
    if loss_scaling:
      gradients = optimizer.get_unscaled_gradients(gradients)
    losses[fields.LossFields.total] = total
    counts = {}
    if count_foreground:
      counts["foreground"] = binary_batch_counts(
          model, predictions[fields.PredictionFields.logits], labels)
    return losses, gradients, counts

  if use_xla:
    # XLA's unit. Outside XLA no nested tf.function: under a multi-device
    # strategy the pruning wrappers' merge_call cannot run inside one.
    return tf.function(compute_gradients, jit_compile=True)
  return compute_gradients


def step_functions(strategy, compute_gradients, optimizer, variables, step,
                   loss_guard, foreground_counts, steps_per_call):
  """The compiled step functions.

  Args:
    strategy: the run's tf.distribute strategy.
    compute_gradients: from gradient_function.
    optimizer: applies the gradients to `variables`.
    variables: the trainable variables, in the gradients' order.
    step: the int64 step variable (checkpointed), +1 per step.
    loss_guard: the run's loss_guard.LossGuard, given every step's total
      loss (the loop stops on it without saving).
    foreground_counts: a binary model's int64 [3] variable that every step
      adds its (TP, FP, FN) to; None when compute_gradients counts nothing.
    steps_per_call: train_config.steps_per_call.

  Returns:
    (train_function, train_steps): train_function(iterator) runs
    steps_per_call steps; train_steps(iterator, count) runs `count` (an
    int32 scalar tensor, >= 1; one trace for every count), for the shorter
    last call of a run. Both return the last step's losses (floats reduced
    over replicas); the loss guard and the step count every step.
  """
  one_step = _one_step_function(strategy, compute_gradients, optimizer,
                                variables, step, loss_guard,
                                foreground_counts)

  @tf.function
  def train_steps(iterator, count):
    # The first step outside the loop defines the losses' structure, which
    # the loop variables need; the loop carries the latest ones out.
    losses = one_step(iterator)
    for _ in tf.range(count - 1):
      losses = one_step(iterator)
    return losses

  if steps_per_call == 1:
    # No loop in the graph (half the tracing); train_steps is never needed.
    return tf.function(one_step), train_steps

  def train_function(iterator):
    """Runs steps_per_call steps in one compiled call; the last losses."""
    return train_steps(iterator, tf.constant(steps_per_call, tf.int32))

  return train_function, train_steps


def _one_step_function(strategy, compute_gradients, optimizer, variables,
                       step, loss_guard, foreground_counts):
  """iterator -> the losses of one global batch, reduced over replicas.

  The arguments are step_functions'; the counters are updated in the graph.
  """

  def replica_step(batch):
    losses, gradients, counts = compute_gradients(
        batch[fields.InputFields.image], batch[fields.InputFields.label])
    optimizer.apply_gradients(zip(gradients, variables))
    return losses, counts

  def one_step(iterator):
    per_replica, counts = strategy.run(replica_step, args=(next(iterator),))
    losses = {name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value,
                                    axis=None)
              for name, value in per_replica.items()}
    if counts:
      # Pixels of the global batch: a sum over the replicas, not a mean.
      foreground_counts.assign_add(strategy.reduce(
          tf.distribute.ReduceOp.SUM, counts["foreground"], axis=None))
    step.assign_add(1)
    loss_guard.update(losses[fields.LossFields.total], step.read_value())
    return losses

  return one_step
