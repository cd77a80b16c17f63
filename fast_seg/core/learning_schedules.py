"""Learning-rate schedules as Keras LearningRateSchedules (pure TF math).

Each takes the global step, so a resumed run continues the schedule where it
stopped.
"""

import math

import tensorflow as tf
import tf_keras as keras


class Constant(keras.optimizers.schedules.LearningRateSchedule):

  def __init__(self, learning_rate):
    self.learning_rate = learning_rate

  def __call__(self, step):
    return tf.constant(self.learning_rate, tf.float32)

  def get_config(self):
    return {"learning_rate": self.learning_rate}


class PolynomialDecay(keras.optimizers.schedules.LearningRateSchedule):
  """(initial - end) * (1 - step / decay_steps) ^ power + end, then end."""

  def __init__(self, initial_learning_rate, decay_steps, end_learning_rate,
               power):
    self.initial_learning_rate = initial_learning_rate
    self.decay_steps = decay_steps
    self.end_learning_rate = end_learning_rate
    self.power = power

  def __call__(self, step):
    progress = tf.minimum(tf.cast(step, tf.float32) / self.decay_steps, 1.0)
    return ((self.initial_learning_rate - self.end_learning_rate)
            * tf.pow(1.0 - progress, self.power) + self.end_learning_rate)

  def get_config(self):
    return dict(vars(self))


class ExponentialDecay(keras.optimizers.schedules.LearningRateSchedule):
  """initial * factor ^ (step / decay_steps), floored at min_learning_rate."""

  def __init__(self, initial_learning_rate, decay_steps, decay_factor,
               staircase, min_learning_rate):
    self.initial_learning_rate = initial_learning_rate
    self.decay_steps = decay_steps
    self.decay_factor = decay_factor
    self.staircase = staircase
    self.min_learning_rate = min_learning_rate

  def __call__(self, step):
    exponent = tf.cast(step, tf.float32) / self.decay_steps
    if self.staircase:
      exponent = tf.floor(exponent)
    lr = self.initial_learning_rate * tf.pow(self.decay_factor, exponent)
    return tf.maximum(lr, self.min_learning_rate)

  def get_config(self):
    return dict(vars(self))


class CosineDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Half-cosine from initial to alpha * initial over decay_steps."""

  def __init__(self, initial_learning_rate, decay_steps, alpha):
    self.initial_learning_rate = initial_learning_rate
    self.decay_steps = decay_steps
    self.alpha = alpha

  def __call__(self, step):
    progress = tf.minimum(tf.cast(step, tf.float32) / self.decay_steps, 1.0)
    cosine = 0.5 * (1.0 + tf.cos(math.pi * progress))
    return self.initial_learning_rate * ((1.0 - self.alpha) * cosine + self.alpha)

  def get_config(self):
    return dict(vars(self))


class Warmup(keras.optimizers.schedules.LearningRateSchedule):
  """Linear ramp from start_learning_rate to the schedule's first value.

  After `warmup_steps` the wrapped schedule runs as if it started at step 0.
  """

  def __init__(self, schedule, warmup_steps, start_learning_rate):
    self.schedule = schedule
    self.warmup_steps = warmup_steps
    self.start_learning_rate = start_learning_rate

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    target = self.schedule(0)
    fraction = step / float(self.warmup_steps)
    warm = self.start_learning_rate + (target - self.start_learning_rate) * fraction
    after = self.schedule(tf.maximum(step - self.warmup_steps, 0.0))
    return tf.where(step < self.warmup_steps, warm, after)

  def get_config(self):
    return {"schedule": self.schedule.get_config(),
            "warmup_steps": self.warmup_steps,
            "start_learning_rate": self.start_learning_rate}
