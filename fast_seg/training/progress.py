"""What a training run tells its user while it runs, and when it ends.

The first line (what is trained, from where to where, on what), one line
per log interval (losses, binary models' foreground scores, learning rate,
throughput, ETA, pruning sparsity) with the same values as TensorBoard
scalars, the image overlays, and the time line with <logdir>/train_time.json
(time_profile.py). The trainer decides when; this module decides what is
said, so the loop reads as a loop.

Binary models' log lines carry the foreground precision, recall and IoU of
the training batches since the previous line (the running metrics Keras
users of binary projects watched): the step adds each batch's TP, FP and FN
to a variable, which the log line reads and restarts.
"""

import time

import tensorflow as tf

from fast_seg.core import metrics
from fast_seg.core import standard_fields as fields
from fast_seg.training import time_profile
from fast_seg.utils import visualization


def crossed(previous, step, every):
  """Whether a call from step `previous` to `step` passed a multiple of `every`.

  With one step per call this is step % every == 0.
  """
  return step // every > previous // every


def format_duration(seconds):
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Throughput:
  """Images per second since the last log line, and the run's ETA."""

  def __init__(self, start_step, num_steps, batch_size):
    self.start_step = self.window_step = start_step
    self.num_steps = num_steps
    self.batch_size = batch_size
    self.run_start = self.window_start = time.time()

  def update(self, step):
    """(images per second since the previous update, seconds left)."""
    now = time.time()
    images_per_sec = ((step - self.window_step) * self.batch_size
                      / max(now - self.window_start, 1e-9))
    self.window_start, self.window_step = now, step
    eta = ((self.num_steps - step) * (now - self.run_start)
           / max(step - self.start_step, 1))
    return images_per_sec, eta


class ProgressLog:
  """The console lines and TensorBoard scalars of one Trainer.

  Args:
    batch_size: the global batch, for throughput and epochs.
    examples_per_epoch: training examples per epoch, or None when unknown
      (then no line speaks of epochs).
    learning_rate: the schedule, step -> learning rate.
    compression: the tfmot_lib compression of the run, or None; a pruning
      run's lines and scalars add the mask sparsity.
    foreground_counts: a binary model's int64 [3] (TP, FP, FN) variable,
      which each log line reads and restarts; None for a multi-class model.
  """

  def __init__(self, batch_size, examples_per_epoch, learning_rate,
               compression=None, foreground_counts=None):
    self.batch_size = batch_size
    self.examples_per_epoch = examples_per_epoch
    self.learning_rate = learning_rate
    self.compression = compression
    self.foreground_counts = foreground_counts
    self.meter = None

  def epochs(self, step):
    """How many passes over the training set `step` steps make; None if unknown."""
    if not self.examples_per_epoch:
      return None
    return step * self.batch_size / self.examples_per_epoch

  def start(self, model_name, start_step, num_steps, replicas, steps_per_call):
    """Prints the run's first line, then starts the throughput clock."""
    epochs = self.epochs(num_steps)
    span = (f" ({epochs:.1f} epochs of {self.examples_per_epoch} examples)"
            if epochs is not None else "")
    print(f"Training {model_name} from step {start_step} to {num_steps}"
          f"{span}, global batch {self.batch_size} on "
          f"{replicas} device(s), "
          f"{steps_per_call} step(s) per call", flush=True)
    self.meter = Throughput(start_step, num_steps, self.batch_size)

  def log(self, losses, step):
    """TensorBoard scalars and one progress line.

    Returns:
      The losses as floats, and a binary model's foreground metrics.
    """
    images_per_sec, eta = self.meter.update(step)
    losses = {k: float(v) for k, v in losses.items()}
    lr = float(self.learning_rate(step))
    for name, value in losses.items():
      tf.summary.scalar(f"losses/{name}", value, step=step)
    tf.summary.scalar("learning_rate", lr, step=step)
    tf.summary.scalar("images_per_second", images_per_sec, step=step)
    sparsity = self.compression.mask_sparsity() if self.compression else None
    if sparsity is not None:
      tf.summary.scalar("pruning/sparsity", sparsity, step=step)
    heads = " ".join(f"{k.replace('_loss', '')}={v:.3f}"
                     for k, v in losses.items() if k != fields.LossFields.total)
    foreground = self._foreground_metrics(step)
    scores = ("  " + " ".join(f"{name} {value:.3f}"
                              for name, value in foreground.items())
              if foreground else "")
    epoch = self.epochs(step)
    epoch = f" (epoch {epoch:.1f})" if epoch is not None else ""
    print(f"step {step}/{self.meter.num_steps}{epoch}  loss "
          f"{losses[fields.LossFields.total]:.4f} ({heads}){scores}  lr {lr:.5f}  "
          f"{images_per_sec:.1f} img/s  ETA {format_duration(eta)}"
          + (f"  sparsity {sparsity:.3f}" if sparsity is not None else ""),
          flush=True)
    return {**losses, **foreground}

  def _foreground_metrics(self, step):
    """Binary models: foreground precision, recall and IoU since the last log.

    Over the steps since the previous line, not since the start (Keras runs
    its metrics over an epoch): each line says how the model does now, at
    any log interval and steps_per_call. Written to TensorBoard; {} for a
    multi-class model.
    """
    if self.foreground_counts is None:
      return {}
    counts = self.foreground_counts.numpy()
    self.foreground_counts.assign(tf.zeros_like(counts))
    result = metrics.precision_recall_iou(counts)
    for name, value in result.items():
      tf.summary.scalar(f"metrics/foreground_{name}", value, step=step)
    return result


def image_summary(model, batch, palette, step):
  """Input, ground truth and prediction overlays of a batch's first 3 images.

  Args:
    model: the SegmentationModel being trained (the tfmot-wrapped one under
      compression), run in inference mode.
    batch: a training batch (dict of fields.InputFields).
    palette: the overlays' class colours.
    step: the step variable the summaries are written at.
  """
  images = batch[fields.InputFields.image][:3]
  labels = tf.squeeze(batch[fields.InputFields.label][:3], -1)
  logits = model.predict(model.preprocess(images))[
      fields.PredictionFields.logits]
  predicted = model.postprocess(logits, tf.shape(images)[1:3])[
      fields.PredictionFields.labels]
  tf.summary.image("input", tf.cast(images, tf.uint8), step=step)
  tf.summary.image("ground_truth",
                   visualization.overlay(images, labels, palette), step=step)
  tf.summary.image("prediction",
                   visualization.overlay(images, predicted, palette),
                   step=step)


def report_time(profile, logdir, is_chief):
  """The time line on the console and, by the chief, <logdir>/train_time.json."""
  summary = profile.summary()
  print(time_profile.describe(summary), flush=True)
  if is_chief:
    time_profile.write(summary, logdir)
