"""When a training loss means the run has failed: NaN / Inf, or divergence.

A loss that becomes NaN or Inf is the obvious failure. A loss that explodes
and stays finite (Adam at a learning rate of 1e6: 4 -> 1e12) is the same
failure, but passes every finiteness check and ends in "Training done". The
rule for it: the smoothed loss (an exponential moving average, SMOOTHING per
step) exceeds train_config.divergence_factor times its own running minimum.

Smoothed, because single batches vary: one batch with few labelled pixels
can have a hundredth of the usual loss, and a minimum of raw values would
then make the next ordinary batch look like an explosion. Steps whose loss
is exactly 0 (no labelled pixel and no regularization) are left out: they
say nothing about divergence. The minimum counts from the run's first step,
so a loss that explodes at step 2 is measured against step 1's. The real
runs' losses stay within a few times their minimum (ICNet on CamVid, 46800
steps: 11.06 at first, 1.79 at least, never over 2.4x the running minimum
logged so far), far below the default factor of 1000.

Both rules are updated in the compiled step with tf ops (no device sync);
the loop reads them only when it logs, saves or validates, stops with
the trainer's TrainingDivergedError and never saves a checkpoint after either tripped, so
the last checkpoint written is the last good one. The state is not in the
checkpoint: a resumed run starts its minimum anew.
"""

import tensorflow as tf

# Weight of the previous smoothed loss at each step.
SMOOTHING = 0.9


def smoothed_update(total, average, minimum):
  """One step of the divergence rule's state, in tf ops.

  Args:
    total: the step's total loss, a float32 scalar.
    average: the smoothed loss so far; 0 before the first counted step.
    minimum: the running minimum of `average`; +inf before it.

  Returns:
    (average, minimum) after the step. A step whose loss is 0 leaves both
    unchanged; the first counted step sets the average to its loss.
  """
  counted = total > 0.0
  smoothed = tf.where(average > 0.0,
                      SMOOTHING * average + (1.0 - SMOOTHING) * total, total)
  average = tf.where(counted, smoothed, average)
  return average, tf.where(counted, tf.minimum(minimum, average), minimum)


def exceeds(average, minimum, factor):
  """Whether `average` is over `factor` times `minimum` (factor 0: never)."""
  return tf.logical_and(factor > 0.0, average > factor * minimum)


class LossGuard:
  """The two stopping rules' state, updated by the step, read by the loop.

  Args:
    divergence_factor: train_config.divergence_factor; 0 turns the
      divergence rule off (NaN / Inf still stops the run).
  """

  def __init__(self, divergence_factor):
    self.factor = float(divergence_factor)
    variable = lambda value, dtype: tf.Variable(value, dtype=dtype,
                                                trainable=False)
    # Steps whose total loss was NaN or Inf.
    self.nonfinite_steps = variable(0, tf.int64)
    self.average = variable(0.0, tf.float32)
    self.minimum = variable(float("inf"), tf.float32)
    # The step at which the divergence rule tripped; 0: it has not. The
    # average and minimum stay as they were then, for the message.
    self.diverged_at = variable(0, tf.int64)

  def update(self, total, step):
    """Counts one step's total loss; call in the compiled step.

    Args:
      total: the step's total loss, reduced over the replicas.
      step: the step number the loss belongs to (int64 scalar).
    """
    total = tf.cast(total, tf.float32)
    finite = tf.math.is_finite(total)
    self.nonfinite_steps.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
    if not self.factor:
      return
    frozen = self.diverged_at > 0
    average, minimum = smoothed_update(total, self.average, self.minimum)
    keep = tf.logical_or(frozen, tf.logical_not(finite))
    self.average.assign(tf.where(keep, self.average, average))
    self.minimum.assign(tf.where(keep, self.minimum, minimum))
    tripped = tf.logical_and(tf.logical_not(keep),
                             exceeds(average, minimum, self.factor))
    self.diverged_at.assign(tf.where(tripped, tf.cast(step, tf.int64),
                                     self.diverged_at))

  def tripped(self):
    """Whether either rule tripped (reads the device: call between calls)."""
    return bool(int(self.nonfinite_steps) or int(self.diverged_at))

  def problem(self, step, last_checkpoint):
    """Why the run must stop, or None while no rule tripped.

    Args:
      step: the step the run reached.
      last_checkpoint: the logdir's latest checkpoint, or None.
    """
    last = last_checkpoint or "none (no checkpoint was written)"
    advice = (f"The last good checkpoint is kept: {last}. Lower the learning "
              "rate, check the labels (train_config / input) or use "
              "gradient-friendlier settings, then restart on the same logdir")
    if int(self.nonfinite_steps):
      return (f"the loss became NaN or Inf by step {step}; training stopped. "
              f"{advice}.")
    if int(self.diverged_at):
      return (f"the loss diverged at step {int(self.diverged_at)}: smoothed, "
              f"{float(self.average):.4g} is over "
              f"train_config.divergence_factor ({self.factor:g}) times its "
              f"running minimum {float(self.minimum):.4g}; training stopped "
              f"at step {step}. {advice} (divergence_factor: 0 turns this "
              "check off).")
    return None
