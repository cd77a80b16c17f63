"""Evaluation behind eval.py: one checkpoint, or every new one in a train dir.

Metrics come from one confusion matrix accumulated over the eval set (mIoU,
per-class IoU, dice, precision, recall, pixel and mean accuracy); binary
models also get one 2 x 2 matrix per extra threshold. Results go to the
console (a table with class names), TensorBoard, `metrics.json` and,
optionally, overlay PNGs.
"""

import json
import os
import re
import time

from absl import logging
import numpy as np
from PIL import Image
import tensorflow as tf

from fast_seg.builders import input_reader_builder
from fast_seg.builders import model_builder
from fast_seg.builders import preprocessor_builder
from fast_seg.builders import inference_options_builder
from fast_seg.core import inference
from fast_seg.core import metrics
from fast_seg.core import standard_fields as fields
from fast_seg.data import dataset_info
from fast_seg.data import tf_example
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from fast_seg.utils import output_files
from fast_seg.utils import progress
from fast_seg.utils import visualization

METRICS_FILE = "metrics.json"
VISUALIZATIONS_DIR = "visualizations"
HISTORY_FILE = "metrics_history.jsonl"


def check_eval_settings(pipeline_config):
  """Every check of eval_config and eval_input_reader that needs no data.

  The Evaluator runs it before building the model; the pipeline check
  (training/pipeline_check.py) runs it when train.py (with validation),
  eval.py or compress.py start, so a wrong eval setting fails before the
  first step rather than at the first validation.

  Returns:
    The padded eval size (height, width), or None for whole-image eval.

  Raises:
    ValueError: naming the field and the allowed values.
  """
  eval_config = pipeline_config.eval_config
  arch = config_util.get_model_config(pipeline_config.model)
  if eval_config.num_examples < 0:
    raise ValueError(
        f"eval_config.num_examples must be >= 0 (0: the whole eval input), "
        f"got {eval_config.num_examples}")
  names = list(eval_config.class_names)
  if names and len(names) != arch.num_classes:
    raise ValueError(
        f"eval_config.class_names has {len(names)} names; num_classes is "
        f"{arch.num_classes}")
  _check_binary_thresholds(eval_config, arch.HasField("binary_output"))
  inference_options_builder.build(eval_config)
  # A random step is refused here, before any waiting.
  preprocessor_builder.build_deterministic_sequence(
      eval_config.preprocessing, arch.ignore_label, "eval_config.preprocessing")
  height, width = eval_config.padded_height, eval_config.padded_width
  if (height > 0) != (width > 0):
    raise ValueError(
        "eval_config.padded_height and padded_width must both be set (padded "
        "eval) or both be 0 (whole-image eval)")
  reader = pipeline_config.eval_input_reader
  return input_reader_builder.check_settings(
      reader, is_training=False, batch_size=reader.batch_size,
      num_classes=arch.num_classes,
      augmentations=eval_config.preprocessing,
      padded_size=(height, width) if height > 0 else None,
      field_name="eval_input_reader")


def _check_binary_thresholds(eval_config, is_binary):
  # Proto floats are float32: 0.3 reads back as 0.30000001.
  thresholds = [round(t, 6) for t in eval_config.binary_thresholds]
  if thresholds and not is_binary:
    raise ValueError("eval_config.binary_thresholds is for binary models "
                     "(binary_output set in the model)")
  if any(not 0.0 < t < 1.0 for t in thresholds):
    raise ValueError(f"eval_config.binary_thresholds must be in (0, 1), got "
                     f"{thresholds}")


def visualizations_dir(eval_dir, step):
  """Where the overlay PNGs of checkpoint `step` go."""
  return os.path.join(eval_dir, VISUALIZATIONS_DIR, f"step_{step}")


def _check_padded_size_fits(pipeline_config, info, info_path):
  """An eval image larger than the padded size fails now, not at the first
  validation after many training steps.

  The sizes are the converter's count in dataset_info.json; with
  eval_config.preprocessing (which may resize) the pipeline's own check,
  naming the image, stays the only one.
  """
  eval_config = pipeline_config.eval_config
  padded = (eval_config.padded_height, eval_config.padded_width)
  if info is None or not padded[0] or eval_config.preprocessing:
    return
  largest = dataset_info.largest_image_size(
      info, list(pipeline_config.eval_input_reader.tf_record_input_path))
  if largest is None or (largest[0] <= padded[0] and largest[1] <= padded[1]):
    return
  needed = (max(largest[0], padded[0]), max(largest[1], padded[1]))
  raise ValueError(
      f"eval_config.padded_height/padded_width {padded[0]}x{padded[1]} is "
      f"smaller than the eval images: up to {largest[0]}x{largest[1]} (HxW) "
      f"per {info_path}; set them to at least {needed[0]}x{needed[1]}, or "
      "resize with eval_config.preprocessing")


class Evaluator:
  """Builds the model and the eval input once; evaluates checkpoints.

  Given a `model`, it evaluates that model's current weights instead of
  building its own (validation during training, see train_lib).
  """

  def __init__(self, pipeline_config, model=None):
    self.config = pipeline_config
    self.eval_config = pipeline_config.eval_config
    self.arch = config_util.get_model_config(pipeline_config.model)
    # Checked before building the model, so a wrong num_classes fails at once.
    self.dataset_info_path, info = dataset_info.load_for_reader(
        pipeline_config.eval_input_reader, pipeline_config.model,
        "eval_input_reader")
    self.padded_size = check_eval_settings(pipeline_config)
    _check_padded_size_fits(pipeline_config, info, self.dataset_info_path)
    self.model = model or model_builder.build(pipeline_config.model)
    self.test_time = inference_options_builder.build(self.eval_config)
    self._read_class_table(info)
    self.thresholds = [round(t, 6) for t in self.eval_config.binary_thresholds]
    self.preprocessing = list(self.eval_config.preprocessing)
    self.num_classes = self.model.output_num_classes
    self.ignore_label = self.arch.ignore_label
    # Build the input now so a bad glob fails before any waiting.
    self.dataset = self._dataset()
    self._eval_step = self._make_eval_step()
    self._writers = {}

  def _read_class_table(self, info):
    """Class names, palette and the eval set's size (for the progress bar)."""
    names = list(self.eval_config.class_names)
    self.expected_examples = None
    if info is not None:
      dataset_names = names or list(info[fields.DatasetInfoFields.class_names])
      self.palette = dataset_info.palette(info)
      self.expected_examples = dataset_info.num_examples_for(
          info, self.config.eval_input_reader.tf_record_input_path)
    else:
      dataset_names = names or [
          f"class_{i}" for i in range(self.arch.num_classes)]
      self.palette = visualization.default_palette(self.arch.num_classes)
    # The dataset's names colour the pictures' legends; the metrics count the
    # output classes (2 if binary).
    self.dataset_class_names = dataset_names
    self.class_names = self.model.output_class_names(dataset_names)

  def _make_eval_step(self):
    """The compiled step: (confusion matrix, labels, per-threshold matrices)."""
    model, thresholds, test_time = self.model, self.thresholds, self.test_time
    num_classes, ignore_label = self.num_classes, self.ignore_label

    @tf.function
    def eval_step(images, labels):
      output = inference.predict(model, images, test_time,
                                 with_probabilities=bool(thresholds))
      predicted = output[fields.PredictionFields.labels]
      labels = model.metric_labels(labels[..., 0])
      matrix = metrics.confusion_matrix(
          labels, predicted, num_classes, ignore_label)
      extra = [metrics.confusion_matrix(
          labels, tf.cast(output[fields.PredictionFields.probabilities][..., 0]
                          > threshold, tf.int32), 2, ignore_label)
               for threshold in thresholds]
      return matrix, predicted, extra

    return eval_step

  def _dataset(self):
    reader = self.config.eval_input_reader
    return input_reader_builder.build(
        reader, is_training=False, batch_size=reader.batch_size,
        num_classes=self.arch.num_classes, ignore_label=self.ignore_label,
        augmentations=self.preprocessing, padded_size=self.padded_size,
        field_name="eval_input_reader")

  def evaluate(self, checkpoint_path, eval_dir):
    """Evaluates one checkpoint; returns the metrics dict (also written to disk)."""
    checkpoint_util.restore_layers(
        [layer for layer in self.model.inference_model.layers if layer.weights],
        checkpoint_path)
    step = checkpoint_util.checkpoint_step(checkpoint_path)
    return self.evaluate_weights(eval_dir, step, checkpoint_path)

  def evaluate_weights(self, eval_dir, step, checkpoint_path=None, quiet=False):
    """Evaluates the model's current weights as those of training step `step`.

    Returns the metrics dict, also written to eval_dir; `quiet` leaves out
    the console table and progress bar.
    """
    try:
      return self._evaluate_weights(eval_dir, step, checkpoint_path, quiet)
    except (tf.errors.DataLossError, tf.errors.InvalidArgumentError,
            UnicodeDecodeError):
      # TensorFlow names neither the shard nor the image: find them.
      problem = tf_example.find_input_problem(
          self.config.eval_input_reader.tf_record_input_path,
          "eval_input_reader")
      if problem is None:
        raise
      raise ValueError(problem) from None

  def _evaluate_weights(self, eval_dir, step, checkpoint_path, quiet):
    limit = self.eval_config.num_examples or None
    num_visualizations = self.eval_config.num_visualizations
    matrix = np.zeros((self.num_classes, self.num_classes), np.int64)
    threshold_matrices = [np.zeros((2, 2), np.int64) for _ in self.thresholds]
    seen = 0
    target = (min(limit, self.expected_examples) if limit and self.expected_examples
              else limit or self.expected_examples)
    bar = progress.bar(target, unit_name="image", verbose=not quiet)
    start = time.time()
    for batch in self.dataset:
      if limit is not None and seen >= limit:
        break
      take = batch[fields.InputFields.image].shape[0]
      if limit is not None and seen + take > limit:
        take = limit - seen
        batch = {k: v[:take] for k, v in batch.items()}
      batch_matrix, predicted, extra = self._eval_step(
          batch[fields.InputFields.image], batch[fields.InputFields.label])
      matrix += batch_matrix.numpy()
      for total, batch_extra in zip(threshold_matrices, extra):
        total += batch_extra.numpy()
      if seen < num_visualizations:
        self._write_visualizations(batch, predicted, eval_dir, step, seen,
                                   num_visualizations - seen)
      seen += take
      bar.update(seen)
    if seen == 0:
      raise ValueError("eval_input_reader produced no examples")
    result = metrics.compute_metrics(matrix)
    window = self.test_time.window
    result.update(checkpoint=checkpoint_path, step=step, num_examples=seen,
                  seconds=round(time.time() - start, 2),
                  test_time={"scales": list(self.test_time.scales),
                             "flip": self.test_time.flip,
                             "sliding_window": window._asdict() if window else None},
                  class_names=self.class_names,
                  confusion_matrix=matrix.tolist())
    if self.model.is_binary:
      result["threshold"] = self.model.binary_output.threshold
      result["thresholds"] = metrics.binary_threshold_metrics(
          threshold_matrices, self.thresholds)
    self._write_results(result, eval_dir)
    if quiet:
      return result
    print(f"\nEvaluation of {checkpoint_path or 'the current weights'} "
          f"(step {step}, {seen} images{self._test_time_note()})")
    print(metrics.format_table(result, self.class_names), flush=True)
    if result.get("thresholds"):
      print(f"\n{self.class_names[1]} at other thresholds:")
      print(metrics.format_threshold_table(result["thresholds"]), flush=True)
    return result

  def _test_time_note(self):
    options = self.test_time
    if options.is_plain:
      return ""
    parts = [f"scales {', '.join(f'{s:g}' for s in options.scales)}"]
    if options.flip:
      parts.append("flip")
    if options.window:
      parts.append(f"sliding window {options.window.height}x"
                   f"{options.window.width} stride {options.window.stride}")
    return "; " + ", ".join(parts)

  def _write_visualizations(self, batch, predicted, eval_dir, step, offset, count):
    out_dir = visualizations_dir(eval_dir, step)
    if self.model.is_binary:
      # Foreground drawn in the colour of the (first) foreground class.
      ids = self.model.binary_output.foreground_ids(self.model.num_classes)
      predicted = predicted * ids[0]
    tf.io.gfile.makedirs(out_dir)
    for i in range(min(count, predicted.shape[0])):
      height, width = batch[fields.InputFields.original_size][i].numpy()
      image = batch[fields.InputFields.image][i, :height, :width].numpy()
      truth = batch[fields.InputFields.label][i, :height, :width, 0].numpy()
      panel = visualization.side_by_side(
          image, truth, predicted[i, :height, :width].numpy(), self.palette,
          self.dataset_class_names)
      name = os.path.basename(
          batch[fields.InputFields.filename][i].numpy().decode("utf-8"))
      name = re.sub(r"[^\w.-]", "_", os.path.splitext(name)[0]) or "image"
      # Atomic: a full disk leaves no truncated PNG behind.
      with output_files.write_atomically(
          os.path.join(out_dir, f"{offset + i:04d}_{name}.png"), "wb") as f:
        Image.fromarray(panel).save(f, format="PNG")
      if self.eval_config.image_summaries:
        self._image_summary(eval_dir, f"{offset + i:04d}_{name}", panel, step)

  def _image_summary(self, eval_dir, name, panel, step):
    writer = self._summary_writer(eval_dir)
    with writer.as_default():
      tf.summary.image(f"visualizations/{name}", panel[None], step=step)
    writer.flush()

  def _summary_writer(self, eval_dir):
    """One TensorBoard writer per eval_dir, for scalars and images alike."""
    if eval_dir not in self._writers:
      self._writers[eval_dir] = tf.summary.create_file_writer(eval_dir)
    return self._writers[eval_dir]

  def _write_results(self, result, eval_dir):
    tf.io.gfile.makedirs(eval_dir)
    with output_files.write_atomically(
        os.path.join(eval_dir, METRICS_FILE)) as f:
      json.dump(result, f, indent=2)
    history = {k: v for k, v in result.items() if k != "confusion_matrix"}
    with open(os.path.join(eval_dir, HISTORY_FILE), "a", encoding="utf-8") as f:
      f.write(json.dumps(history) + "\n")
    writer = self._summary_writer(eval_dir)
    with writer.as_default():
      step = result["step"]
      tf.summary.scalar("metrics/miou", result["miou"], step=step)
      tf.summary.scalar("metrics/pixel_accuracy", result["pixel_accuracy"], step=step)
      tf.summary.scalar("metrics/mean_accuracy", result["mean_accuracy"], step=step)
      tf.summary.scalar("metrics/mean_dice", result["mean_dice"], step=step)
      for row in result.get("thresholds", []):
        tf.summary.scalar(f"threshold_{row['threshold']:g}/iou", row["iou"],
                          step=step)
      for name, iou in zip(self.class_names, result["per_class_iou"]):
        if not np.isnan(iou):
          tf.summary.scalar(f"iou/{name}", iou, step=step)
    writer.flush()


def evaluate(pipeline_config, train_dir, eval_dir, checkpoint=None,
             timeout=None):
  """Runs eval.py's modes.

  Args:
    pipeline_config: pipeline_pb2.PipelineConfig.
    train_dir: the training logdir holding checkpoints.
    eval_dir: where metrics, summaries and visualizations go.
    checkpoint: evaluate this checkpoint (prefix or directory) once.
    timeout: None evaluates the latest checkpoint in train_dir once; a number
      of seconds waits for new checkpoints, evaluating each, until none came
      for that long or the final training step was evaluated. The best of
      them by train_config.best_checkpoint_metric is copied to
      <eval_dir>/best/ (they may be deleted from train_dir meanwhile).

  Returns:
    The list of metrics dicts, one per evaluated checkpoint.
  """
  config_util.save_pipeline_config(pipeline_config, eval_dir)
  evaluator = Evaluator(pipeline_config)
  if checkpoint:
    return [evaluator.evaluate(checkpoint_util.resolve_checkpoint(checkpoint),
                               eval_dir)]
  if not train_dir:
    raise ValueError("give --train_dir (or --checkpoint)")
  if timeout is None:
    return [evaluator.evaluate(checkpoint_util.resolve_checkpoint(train_dir),
                               eval_dir)]
  results = []
  final_step = pipeline_config.train_config.num_steps
  best = checkpoint_util.BestCheckpoint(
      os.path.join(eval_dir, checkpoint_util.BEST_DIR),
      pipeline_config.train_config.best_checkpoint_metric)
  logging.info("Waiting for checkpoints in %s (timeout %ss)", train_dir, timeout)
  for path in tf.train.checkpoints_iterator(train_dir, min_interval_secs=1,
                                            timeout=timeout):
    results.append(evaluator.evaluate(path, eval_dir))
    if best.offer(results[-1],
                  lambda prefix: checkpoint_util.copy_checkpoint(path, prefix)):
      print(f"best {best.metric} so far: {100 * best.value:.2f} at step "
            f"{results[-1]['step']}, copied to {best.directory}", flush=True)
    if results[-1]["step"] >= final_step:
      logging.info("Evaluated the final step %d; done.", final_step)
      break
  if not results:
    raise ValueError(f"no checkpoint appeared in {train_dir} within {timeout}s")
  return results
