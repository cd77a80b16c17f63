"""The training loop behind train.py.

A custom tf.function step under a tf.distribute strategy (what slim's
learning.train and model_deploy did in TF1): checkpoints every n steps with a
CheckpointManager, resumes on the same logdir with its step counter, writes
TensorBoard scalars and image overlays, and stops on a non-finite loss
without overwriting the last good checkpoint.

train_config.steps_per_call > 1 runs that many steps inside one compiled call
(a tf.range loop), so the per-step Python round trip is paid once per call.

Binary models also log the foreground precision, recall and IoU of the
training batches since the previous log line (the running metrics that Keras
users of binary projects watched): every step counts its batch's TP, FP and
FN from the logits it already has, sums them over the replicas and adds them
to a variable that the log line reads and restarts.

Multi-worker (MultiWorkerMirroredStrategy): every worker runs this same loop
and every worker must save (the TF multi-worker recipe: a save may read
variables through collective ops), but only the chief writes to the logdir; the others save
into a throw-away local directory, removed when training ends. Every worker
resumes from the logdir's latest checkpoint, so it must be on a filesystem
all workers see. The input is sharded by tf.data's AUTO policy, see
input_reader_builder.build.
"""

import contextlib
import math
import os
import shutil
import tempfile
import time

from absl import logging
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import input_reader_builder
from fast_seg.builders import model_builder
from fast_seg.builders import optimizer_builder
from fast_seg.core import losses as core_losses
from fast_seg.core import metrics
from fast_seg.core import model as core_model
from fast_seg.core import standard_fields as fields
from fast_seg.data import dataset_info
from fast_seg.evaluation import eval_lib
from fast_seg.feature_extractors import pretrained
from fast_seg.model_optimization import tfmot_lib
from fast_seg.protos import losses_pb2
from fast_seg.protos import pipeline_pb2
from fast_seg.protos import train_pb2
from fast_seg.training import distillation as distillation_lib
from fast_seg.training import time_profile
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from fast_seg.utils import visualization

STRATEGIES = ("one_device", "mirrored", "multi_worker")
CHECKPOINT_NAME = "ckpt"
# What a broken input pipeline raises (a damaged shard, an empty input, an
# undecodable image; a record that is not an Example gives TensorFlow an
# error message that is not UTF-8); find_input_problem then says what it is.
INPUT_ERRORS = (tf.errors.DataLossError, tf.errors.OutOfRangeError,
                tf.errors.InvalidArgumentError, UnicodeDecodeError)
# In-process validation results, under the logdir.
VALIDATION_DIR = "validation"
_POLICIES = {train_pb2.TrainConfig.MIXED_FLOAT16: "mixed_float16",
             train_pb2.TrainConfig.MIXED_BFLOAT16: "mixed_bfloat16"}


class TrainingDivergedError(RuntimeError):
  """The loss became NaN or Inf; the last good checkpoint is kept."""


def build_strategy(name):
  """tf.distribute strategy for --strategy.

  one_device: the first GPU, else the CPU. mirrored: all local GPUs.
  multi_worker: MultiWorkerMirroredStrategy configured by TF_CONFIG.
  """
  if name == "one_device":
    device = "/gpu:0" if tf.config.list_logical_devices("GPU") else "/cpu:0"
    return tf.distribute.OneDeviceStrategy(device)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  raise ValueError(f"--strategy: unknown '{name}'; allowed: {', '.join(STRATEGIES)}")


def _crossed(previous, step, every):
  """Whether a call from step `previous` to `step` passed a multiple of `every`.

  With one step per call this is step % every == 0.
  """
  return step // every > previous // every


def _format_duration(seconds):
  seconds = int(max(seconds, 0))
  return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


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


def check_train_config(pipeline_config, strategy):
  """Refuses train_config values the loop cannot honour, naming the field.

  Returns:
    The tfmot technique configured (tfmot_lib.TECHNIQUES) or None.
  """
  train_config = pipeline_config.train_config
  if train_config.batch_size < 1:
    raise ValueError("train_config.batch_size must be >= 1")
  for name in ("steps_per_call", "log_every_n_steps",
               "checkpoint_every_n_steps", "max_checkpoints_to_keep"):
    if getattr(train_config, name) < 1:
      raise ValueError(f"train_config.{name} must be >= 1, got "
                       f"{getattr(train_config, name)}")
  if train_config.image_summary_every_n_steps < 0:
    raise ValueError(
        "train_config.image_summary_every_n_steps must be >= 0 (0: none), "
        f"got {train_config.image_summary_every_n_steps}")
  replicas = strategy.num_replicas_in_sync
  if train_config.batch_size % replicas:
    raise ValueError(
        f"train_config.batch_size ({train_config.batch_size}) must be a "
        f"multiple of the number of devices ({replicas})")
  if pipeline_config.train_input_reader.HasField("batch_size"):
    raise ValueError(
        "train_input_reader.batch_size is for evaluation only; set "
        "train_config.batch_size instead")
  if not train_config.HasField("optimizer"):
    raise ValueError("train_config.optimizer is not set")
  return _check_compression_settings(train_config, strategy)


def _check_compression_settings(train_config, strategy):
  """tfmot techniques exclude recomputation and multi-device XLA."""
  technique = tfmot_lib.validate(train_config)
  if technique and train_config.memory_saving:
    # Recomputation would re-run the tfmot wrappers' stateful updates.
    raise ValueError(
        f"train_config.memory_saving cannot be combined with "
        f"train_config.{technique}; unset one of them")
  if (technique and train_config.use_xla
      and not isinstance(strategy, tf.distribute.OneDeviceStrategy)):
    raise ValueError(
        f"train_config.{technique} with use_xla needs the one_device "
        "strategy (tfmot's cross-replica updates cannot run inside an XLA "
        "function)")
  return technique


@contextlib.contextmanager
def _global_precision_policy(policy):
  """Keras builds layers under the global policy: set it, always restore it."""
  keras.mixed_precision.set_global_policy(policy)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


class Trainer:
  """Owns the model, optimizer, checkpoint and step function of one run.

  Besides `train`, what a benchmark needs to drive the step itself:
  `build_dataset()` (the training tf.data.Dataset), `distribute(dataset)`
  (an iterator over it under the strategy) and `train_function(iterator)`
  (one compiled call of train_config.steps_per_call steps; returns the last
  step's losses). They neither restore nor save anything. Binary models'
  steps also add to `foreground_counts` (TP, FP, FN), which only a log line
  restarts.
  """

  def __init__(self, pipeline_config, logdir, strategy):
    # A copy: computed fields (num_steps from num_epochs, median-frequency
    # class weights) are written into self.config, the as-run config that
    # train() saves, never into the caller's message.
    self.config = pipeline_pb2.PipelineConfig()
    self.config.CopyFrom(pipeline_config)
    self.logdir = logdir
    self.strategy = strategy
    self.train_config = self.config.train_config
    check_train_config(self.config, strategy)
    self._read_dataset_facts()
    self._build_model_and_optimizer()
    self._make_checkpoint_manager()
    self.trainable_variables = self._select_trainable_variables()
    self.train_function, self._train_steps = self._make_train_function()
    self._make_validation()
    self.time_profile = None  # the last train()'s, see time_profile.py

  def _read_dataset_facts(self):
    """Epoch length, palette and class weights from dataset_info.json.

    Before any model building or step: a num_classes that disagrees with
    the data should fail now, not as a label-value error mid-run.
    """
    self.dataset_info_path, info = dataset_info.load_for_reader(
        self.config.train_input_reader, self.config.model,
        "train_input_reader")
    self.examples_per_epoch = resolve_num_steps(
        self.config, info, self.dataset_info_path)
    arch = config_util.get_model_config(self.config.model)
    self.palette = (dataset_info.palette(info) if info is not None
                    else visualization.default_palette(arch.num_classes))
    if (arch.loss.class_weighting != losses_pb2.Loss.UNIFORM
        and not arch.loss.class_weights):
      # Written into the config, so the saved pipeline.config, a resumed run
      # and eval see the weights this run trains with.
      arch.loss.class_weights[:] = computed_class_weights(
          self.config, info, self.dataset_info_path)
      logging.info("%s class weights over %s: %s",
                   losses_pb2.Loss.ClassWeighting.Name(arch.loss.class_weighting),
                   ", ".join(self.config.train_input_reader.tf_record_input_path),
                   ", ".join(f"{w:.3f}" for w in arch.loss.class_weights))

  def _build_model_and_optimizer(self):
    """Model (tfmot-wrapped if asked), optimizer, step and checkpoint."""
    train_config = self.train_config
    policy = (_POLICIES[train_config.mixed_precision_policy]
              if train_config.mixed_precision else "float32")
    # float16 needs loss scaling against underflowing gradients; bfloat16 has
    # float32's exponent range and does not.
    self.loss_scaling = policy == "mixed_float16"
    with _global_precision_policy(policy), self.strategy.scope():
      self.model = model_builder.build(self.config.model)
      if train_config.memory_saving:
        self.model.enable_memory_saving()
      # train_config.magnitude_pruning / quantization_aware_training: the step
      # trains a tfmot-wrapped copy; self.model stays the float model that
      # ImageNet and fine-tune weights load into.
      self.compression = tfmot_lib.apply(self.model, train_config)
      self.train_model = (self.compression.model if self.compression
                          else self.model)
      # train_config.distillation: the frozen teacher, outside the
      # checkpoint and the optimizer; None without one.
      self.distillation = distillation_lib.build(
          train_config, self.config.model, self.model, self.train_model)
      optimizer, self.learning_rate = optimizer_builder.build(
          train_config.optimizer, train_config.num_steps)
      if self.loss_scaling:
        optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
      self.optimizer = optimizer
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
      if self.compression:
        # Same `model/<layer>/<weight>` keys as a dense run, plus the
        # wrappers' state under `compression/`.
        self.checkpoint = self.compression.make_checkpoint(
            optimizer=optimizer, step=self.step)
      else:
        self.checkpoint = checkpoint_util.make_checkpoint(
            self.model.keras_model, optimizer=optimizer, step=self.step)
    self.nonfinite_losses = tf.Variable(0, dtype=tf.int64, trainable=False)
    # Binary models: foreground (TP, FP, FN) of the steps since the last log
    # line, summed over replicas; not checkpointed (a resumed run restarts).
    self.foreground_counts = (
        tf.Variable(tf.zeros([3], tf.int64), trainable=False,
                    name="foreground_counts")
        if self.model.is_binary else None)

  def _make_checkpoint_manager(self):
    """Multi-worker: every worker saves, only the chief into the logdir.

    The TF multi-worker recipe; a non-chief's copies go to a local temp dir.
    """
    self.is_chief = self.strategy.extended.should_checkpoint
    self._worker_dir = (None if self.is_chief else tempfile.mkdtemp(
        prefix=f"fast_seg_worker{self.strategy.cluster_resolver.task_id}_"))
    self.manager = tf.train.CheckpointManager(
        self.checkpoint, self.logdir if self.is_chief else self._worker_dir,
        max_to_keep=self.train_config.max_checkpoints_to_keep,
        checkpoint_name=CHECKPOINT_NAME, step_counter=self.step)

  def _select_trainable_variables(self):
    """The variables the optimizer updates: all but a frozen backbone's."""
    frozen = (self.model.backbone_layers if self.train_config.freeze_backbone
              else [])
    frozen_ids = {id(w) for layer in frozen for w in layer.weights}
    if self.compression:
      # tfmot's quantize wrappers list their layer's weights as trainable
      # even when the layer is frozen: those are filtered out below.
      frozen_ids |= {id(w) for w in self.compression.weights_of(frozen)}
      frozen = self.compression.counterparts(frozen)
    for layer in frozen:
      layer.trainable = False
    variables = self.train_model.keras_model.trainable_variables
    if self.compression:
      # The optimizer keys its slots by position: keep a float run's order.
      variables = self.compression.in_float_order(variables)
    return [v for v in variables if id(v) not in frozen_ids]

  def _make_validation(self):
    """The in-process evaluator and the best-checkpoint keeper, if asked for.

    Built now, so a bad eval_input_reader or eval_config fails before the
    first step rather than at the first validation.
    """
    every = self.train_config.eval_every_n_steps
    if every < 0:
      raise ValueError(
          f"train_config.eval_every_n_steps must be >= 0 (0: no validation), "
          f"got {every}")
    self.evaluator = self.best = None
    if not every:
      return
    if not self.config.eval_input_reader.tf_record_input_path:
      raise ValueError("train_config.eval_every_n_steps needs "
                       "eval_input_reader.tf_record_input_path")
    # The model being trained (the tfmot-wrapped one under compression),
    # evaluated with training=False: no copy of the weights.
    self.evaluator = eval_lib.Evaluator(self.config, model=self.train_model)
    root = self.logdir if self.is_chief else self._worker_dir
    self.validation_dir = os.path.join(root, VALIDATION_DIR)
    self.best = checkpoint_util.BestCheckpoint(
        os.path.join(root, checkpoint_util.BEST_DIR),
        self.train_config.best_checkpoint_metric)

  # -- data -------------------------------------------------------------------

  def build_dataset(self):
    """The training tf.data.Dataset: global batches, repeated forever."""
    arch = config_util.get_model_config(self.config.model)
    return input_reader_builder.build(
        self.config.train_input_reader, is_training=True,
        batch_size=self.train_config.batch_size, num_classes=arch.num_classes,
        ignore_label=arch.ignore_label,
        augmentations=self.train_config.data_augmentation_options)

  def distribute(self, dataset):
    """An iterator of per-replica batches of `dataset` for train_function.

    Multi-worker: the strategy shards `dataset` between the workers (AUTO
    policy) and splits each global batch over the replicas.
    """
    return iter(self.strategy.experimental_distribute_dataset(dataset))

  # -- initialisation -------------------------------------------------------

  def restore_or_initialize(self):
    """Resumes from the logdir, else loads ImageNet / fine-tune weights.

    Returns:
      The step training continues from.
    """
    # The logdir, not self.manager's directory: a non-chief worker saves
    # into its own temp dir but resumes from the chief's checkpoints.
    latest = tf.train.latest_checkpoint(self.logdir)
    if latest:
      checkpoint_util.open_reader(latest)  # a damaged one: a named error
    if latest and self.compression:
      self._restore_compressed(latest)
    elif latest:
      self.checkpoint.restore(latest).assert_existing_objects_matched()
    if latest:
      logging.info("Resumed from %s at step %d", latest, int(self.step.numpy()))
      return int(self.step.numpy())
    arch = config_util.get_model_config(self.config.model)
    extractor_config = arch.feature_extractor
    if not (extractor_config.weights_path or self.train_config.fine_tune_checkpoint):
      which = self.config.model.WhichOneof("model")
      print(f"Training from scratch: no ImageNet weights "
            f"(model.{which}.feature_extractor.weights_path) and no "
            "train_config.fine_tune_checkpoint. Pretrained weights converge "
            "faster and higher; see docs/training_eval.md#imagenet-initialisation",
            flush=True)
    if extractor_config.weights_path:
      count = pretrained.load_imagenet_weights(
          self.model.feature_extractor, extractor_config.weights_path,
          extractor_config.weights_format)
      logging.info("Loaded %d ImageNet weights from %s", count,
                   extractor_config.weights_path)
    if self.train_config.fine_tune_checkpoint:
      kind = self.train_config.fine_tune_checkpoint_type
      count = checkpoint_util.restore_layers(
          self.model.restore_layers(kind), self.train_config.fine_tune_checkpoint)
      logging.info("Fine-tuning from %s (%s): restored %d weights",
                   self.train_config.fine_tune_checkpoint,
                   train_pb2.TrainConfig.FineTuneCheckpointType.Name(kind), count)
      if kind == train_pb2.TrainConfig.SEGMENTATION:
        # Classifiers come along when they fit (same classes: a pruned or
        # a resumed-elsewhere model), else they start from scratch.
        restored, skipped = checkpoint_util.restore_matching_layers(
            [layer for layer in self.model.keras_model.layers
             if layer.name in self.model.classifier_layer_names],
            self.train_config.fine_tune_checkpoint)
        logging.info("Classifiers restored: %s; initialised: %s",
                     restored or "none", skipped or "none")
    if self.compression:
      self.compression.load_float_weights()
    return 0

  def _restore_compressed(self, latest):
    """Weights, optimizer and step; then the tfmot state if it was saved.

    Without it (a float run's logdir, now resumed with compression set) the
    wrappers start fresh at the restored step: pruning's begin_step and
    end_step count global steps, and QAT starts from the float weights.
    """
    checkpoint = self.compression.make_checkpoint(
        with_state=False, optimizer=self.optimizer, step=self.step)
    checkpoint.restore(latest).assert_existing_objects_matched().expect_partial()
    with self.strategy.scope():
      if not self.compression.restore_state(latest):
        logging.info("%s has no %s state; it starts at step %d", latest,
                     self.compression.technique, int(self.step.numpy()))

  # -- the step -------------------------------------------------------------

  def _gradient_function(self):
    """(images, labels) -> (losses by name, gradients, foreground counts).

    Gradients of the trainable variables, scaled for the replicas (and for
    float16 loss scaling); compiled with XLA when train_config.use_xla. The
    counts: {'foreground': binary_batch_counts of the main head} for a binary
    model, from the logits the loss used; {} for a multi-class one.
    """
    model, optimizer = self.train_model, self.optimizer
    replicas = self.strategy.num_replicas_in_sync
    loss_scaling = self.loss_scaling
    variables = self.trainable_variables
    count_foreground = self.foreground_counts is not None
    distillation = self.distillation

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

    if self.train_config.use_xla:
      # XLA's unit. Outside XLA no nested tf.function: under a multi-device
      # strategy the pruning wrappers' merge_call cannot run inside one.
      return tf.function(compute_gradients, jit_compile=True)
    return compute_gradients

  def _make_train_function(self):
    """The compiled step functions.

    Returns:
      (train_function, train_steps): train_function(iterator) runs
      steps_per_call steps; train_steps(iterator, count) runs `count` (an
      int32 scalar tensor, >= 1; one trace for every count), for the shorter
      last call of a run. Both return the last step's losses (floats reduced
      over replicas); the non-finite counter and self.step count every step.
    """
    optimizer, variables = self.optimizer, self.trainable_variables
    compute_gradients = self._gradient_function()

    def replica_step(batch):
      losses, gradients, counts = compute_gradients(
          batch[fields.InputFields.image], batch[fields.InputFields.label])
      optimizer.apply_gradients(zip(gradients, variables))
      return losses, counts

    def one_step(iterator):
      per_replica, counts = self.strategy.run(replica_step,
                                              args=(next(iterator),))
      losses = {name: self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value,
                                           axis=None)
                for name, value in per_replica.items()}
      if counts:
        # Pixels of the global batch: a sum over the replicas, not a mean.
        self.foreground_counts.assign_add(self.strategy.reduce(
            tf.distribute.ReduceOp.SUM, counts["foreground"], axis=None))
      finite = tf.math.is_finite(losses[fields.LossFields.total])
      self.nonfinite_losses.assign_add(tf.cast(tf.logical_not(finite), tf.int64))
      self.step.assign_add(1)
      return losses

    @tf.function
    def train_steps(iterator, count):
      # The first step outside the loop defines the losses' structure, which
      # the loop variables need; the loop carries the latest ones out.
      losses = one_step(iterator)
      for _ in tf.range(count - 1):
        losses = one_step(iterator)
      return losses

    steps_per_call = self.train_config.steps_per_call
    if steps_per_call == 1:
      # No loop in the graph (half the tracing); train_steps is never needed.
      return tf.function(one_step), train_steps

    def train_function(iterator):
      """Runs steps_per_call steps in one compiled call; the last losses."""
      return train_steps(iterator, tf.constant(steps_per_call, tf.int32))

    return train_function, train_steps

  # -- summaries ------------------------------------------------------------

  def _image_summary(self, batch, palette):
    images = batch[fields.InputFields.image][:3]
    labels = tf.squeeze(batch[fields.InputFields.label][:3], -1)
    self._apply_masks()
    logits = self.train_model.predict(self.train_model.preprocess(images))[
        fields.PredictionFields.logits]
    predicted = self.train_model.postprocess(logits, tf.shape(images)[1:3])[
        fields.PredictionFields.labels]
    tf.summary.image("input", tf.cast(images, tf.uint8), step=self.step)
    tf.summary.image("ground_truth",
                     visualization.overlay(images, labels, palette), step=self.step)
    tf.summary.image("prediction",
                     visualization.overlay(images, predicted, palette),
                     step=self.step)

  # -- the loop -------------------------------------------------------------

  def _apply_masks(self):
    """Pruning: zeroes the pruned weights, which the optimizer moved."""
    if self.compression:
      with self.strategy.scope():
        self.compression.apply_masks()

  def _save(self):
    if int(self.nonfinite_losses):
      return None
    self._apply_masks()
    return self.manager.save(checkpoint_number=self.step)

  def _epochs(self, step):
    """How many passes over the training set `step` steps make; None if unknown."""
    if not self.examples_per_epoch:
      return None
    return step * self.train_config.batch_size / self.examples_per_epoch

  def _validate(self, step):
    """Evaluates the current weights; keeps them in best/ if they are the best."""
    self._apply_masks()
    result = self.evaluator.evaluate_weights(self.validation_dir, step,
                                             quiet=True)
    metric = self.best.metric
    improved = self.best.offer(result, self.checkpoint.write)
    print(f"validation at step {step}: {metric} {100 * result[metric]:.2f}"
          f"  (best {100 * self.best.value:.2f} at step "
          f"{self.best.record['step']}{', saved to ' + self.best.directory if improved else ''})",
          flush=True)
    tf.summary.scalar(f"validation/{metric}", result[metric], step=step)
    return result

  def _check_finite(self):
    if int(self.nonfinite_losses):
      last = (tf.train.latest_checkpoint(self.logdir)
              or "none (no checkpoint was written)")
      raise TrainingDivergedError(
          f"the loss became NaN or Inf by step {int(self.step.numpy())}; training "
          f"stopped. The last good checkpoint is kept: {last}. Lower the "
          "learning rate, check the labels (train_config / input) or use "
          "gradient-friendlier settings, then restart on the same logdir.")

  def train(self, num_steps):
    """Runs until the step counter reaches `num_steps`.

    Steps run steps_per_call at a time (the last call only as many as are
    left); logging, image summaries and checkpoints happen after the call
    that crosses their interval.

    Returns:
      dict of the last logged losses (floats), binary models' precision,
      recall and iou of that log line, and the final step.
    """
    try:
      return self._train(num_steps)
    except INPUT_ERRORS:
      # TensorFlow names neither the shard nor the image: find them.
      problem = input_reader_builder.find_input_problem(
          self.config.train_input_reader.tf_record_input_path,
          "train_input_reader")
      if problem is None:
        raise
      last = tf.train.latest_checkpoint(self.logdir) or "none yet"
      raise ValueError(f"{problem}. Training stopped at step "
                       f"{int(self.step.numpy())}; last checkpoint: {last}") from None
    finally:
      if self._worker_dir:
        shutil.rmtree(self._worker_dir, ignore_errors=True)

  def _train(self, num_steps):
    start_step = self.restore_or_initialize()
    if self.compression:
      with self.strategy.scope():
        self.compression.start(start_step)
    if start_step >= num_steps:
      logging.info("Step %d already >= num_steps %d; nothing to train.",
                   start_step, num_steps)
      return {"step": start_step}
    dataset = self.build_dataset()
    iterator = self.distribute(dataset)
    summary_batch = (next(iter(dataset))
                     if self.train_config.image_summary_every_n_steps else None)
    writer = (tf.summary.create_file_writer(os.path.join(self.logdir, "train"))
              if self.is_chief else tf.summary.create_noop_writer())
    self._announce(start_step, num_steps)
    meter = _Throughput(start_step, num_steps, self.train_config.batch_size)
    self.time_profile = time_profile.TimeProfile(self.train_config.batch_size)
    last_losses = {}
    try:
      with writer.as_default():
        step = start_step
        while step < num_steps:
          # The Python counter mirrors self.step without a device sync per call.
          count = min(self.train_config.steps_per_call, num_steps - step)
          losses = self._call(iterator, count)
          previous, step = step, step + count
          if (_crossed(previous, step, self.train_config.log_every_n_steps)
              or step == num_steps):
            with self.time_profile.phase(time_profile.LOGGING):
              last_losses = self._log(losses, step, meter)
          self._after_call(previous, step, step == num_steps, summary_batch)
    except KeyboardInterrupt:
      saved = self._save()
      logging.warning("Interrupted at step %d; %s", int(self.step.numpy()),
                      f"saved {saved}" if saved else "nothing saved")
      raise
    writer.flush()
    self._report_time()
    last_losses["step"] = int(self.step.numpy())
    return last_losses

  def _call(self, iterator, count):
    """One compiled call of `count` steps, timed; the last step's losses."""
    with self.time_profile.call(count):
      if count == self.train_config.steps_per_call:
        return self.train_function(iterator)
      return self._train_steps(iterator, tf.constant(count, tf.int32))

  def _report_time(self):
    """The time line on the console and <logdir>/train_time.json."""
    summary = self.time_profile.summary()
    print(time_profile.describe(summary), flush=True)
    if self.is_chief:
      time_profile.write(summary, self.logdir)

  def _announce(self, start_step, num_steps):
    epochs = self._epochs(num_steps)
    span = (f" ({epochs:.1f} epochs of {self.examples_per_epoch} examples)"
            if epochs is not None else "")
    print(f"Training {self.model.name} from step {start_step} to {num_steps}"
          f"{span}, global batch {self.train_config.batch_size} on "
          f"{self.strategy.num_replicas_in_sync} device(s), "
          f"{self.train_config.steps_per_call} step(s) per call", flush=True)

  def _log(self, losses, step, meter):
    """TensorBoard scalars and one progress line.

    Returns:
      The losses as floats, and a binary model's foreground metrics.
    """
    self._check_finite()
    images_per_sec, eta = meter.update(step)
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
    epoch = self._epochs(step)
    epoch = f" (epoch {epoch:.1f})" if epoch is not None else ""
    print(f"step {step}/{meter.num_steps}{epoch}  loss "
          f"{losses[fields.LossFields.total]:.4f} ({heads}){scores}  lr {lr:.5f}  "
          f"{images_per_sec:.1f} img/s  ETA {_format_duration(eta)}"
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

  def _after_call(self, previous, step, is_last, summary_batch):
    """Image summary, checkpoint and validation when their interval passed."""
    train_config = self.train_config
    phase = self.time_profile.phase
    if (summary_batch is not None and _crossed(
        previous, step, train_config.image_summary_every_n_steps)):
      with phase(time_profile.IMAGE_SUMMARIES):
        self._image_summary(summary_batch, self.palette)
    if _crossed(previous, step, train_config.checkpoint_every_n_steps) or is_last:
      self._check_finite()
      with phase(time_profile.CHECKPOINTS):
        self._save()
    if self.evaluator and (
        _crossed(previous, step, train_config.eval_every_n_steps) or is_last):
      self._check_finite()
      with phase(time_profile.VALIDATION):
        self._validate(step)


class _Throughput:
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


def resolve_num_steps(pipeline_config, info, info_path):
  """Fills in train_config.num_steps from num_epochs, and checks it.

  Args:
    pipeline_config: the pipeline; train_config.num_steps is set in place
      (so the saved pipeline.config and a resumed run see the same length).
    info: the dataset_info dict beside the training TFRecords, or None.
    info_path: its path, for messages.

  Returns:
    The number of training examples per epoch, or None when unknown.

  Raises:
    ValueError: a length out of range, num_epochs without a dataset_info
      that counts the training split, or num_steps disagreeing with it.
  """
  train_config = pipeline_config.train_config
  globs = list(pipeline_config.train_input_reader.tf_record_input_path)
  examples = (dataset_info.num_examples_for(info, globs)
              if info is not None else None)
  epochs = train_config.num_epochs
  if epochs < 0 or math.isnan(epochs):
    raise ValueError(f"train_config.num_epochs must be >= 0, got {epochs}")
  if epochs:
    if not examples:
      where = info_path or "none found beside " + ", ".join(globs)
      raise ValueError(
          "train_config.num_epochs needs the number of training examples from "
          f"the dataset_info.json of train_input_reader ({where}; its globs "
          "must be one converted split's); give train_config.num_steps instead")
    steps = math.ceil(epochs * examples / train_config.batch_size)
    if train_config.HasField("num_steps") and train_config.num_steps != steps:
      raise ValueError(
          f"train_config.num_steps ({train_config.num_steps}) and num_epochs "
          f"({epochs:g} = {steps} steps of batch {train_config.batch_size} over "
          f"{examples} examples) disagree; set only one of them")
    train_config.num_steps = steps
    logging.info("num_epochs %g = %d steps (%d examples, batch %d)", epochs,
                 steps, examples, train_config.batch_size)
  if train_config.num_steps < 1:
    raise ValueError("train_config.num_steps must be >= 1")
  return examples


def computed_class_weights(pipeline_config, info, info_path):
  """Loss.class_weighting MEDIAN_FREQUENCY or ENET from the training splits.

  The pixel frequencies are those of every split train_input_reader reads
  (train and val for a trainval run), combined by their example counts.

  Args:
    pipeline_config: the pipeline; its model and train_input_reader are read.
    info: the dataset_info dict beside the training TFRecords, or None.
    info_path: its path, for messages.

  Returns:
    list of weights: one per class, or [background, foreground] for a binary
    model (frequencies summed over the foreground ids first).

  Raises:
    ValueError: there is no dataset_info.json or it has no frequencies for
      the training globs.
  """
  which = pipeline_config.model.WhichOneof("model")
  arch = getattr(pipeline_config.model, which)
  reader = pipeline_config.train_input_reader
  weighting = losses_pb2.Loss.ClassWeighting.Name(arch.loss.class_weighting)
  if info is None:
    raise ValueError(
        f"model.{which}.loss.class_weighting {weighting} needs the "
        "dataset_info.json that the converters write beside the TFRecords of "
        f"train_input_reader ({', '.join(reader.tf_record_input_path)}); none "
        "found: convert with python -m fast_seg.data.convert or give "
        "class_weights")
  frequencies = dataset_info.class_frequencies_for(
      info, list(reader.tf_record_input_path), info_path)
  if arch.HasField("binary_output"):
    ids = core_model.BinaryOutput.from_proto(
        arch.binary_output).foreground_ids(arch.num_classes)
    foreground = sum(f for i, f in enumerate(frequencies) if i in ids)
    frequencies = [1.0 - foreground, foreground]
  if arch.loss.class_weighting == losses_pb2.Loss.ENET:
    return core_losses.enet_weights(frequencies,
                                    arch.loss.enet_weighting_constant)
  return core_losses.median_frequency_weights(frequencies)


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
  """
  config = pipeline_pb2.PipelineConfig()
  config.CopyFrom(pipeline_config)
  if num_steps:
    # The command line wins over the config's length, in steps or epochs.
    config.train_config.num_steps = num_steps
    config.train_config.ClearField("num_epochs")
  # First: MultiWorkerMirroredStrategy must be created before other TF work.
  strategy = build_strategy(strategy)
  chief = strategy.extended.should_checkpoint
  if chief:
    config_util.save_pipeline_config(config, logdir)
  trainer = Trainer(config, logdir, strategy)
  if chief:
    # Again: the as-run config has the computed steps and class weights.
    config_util.save_pipeline_config(trainer.config, logdir)
  return trainer.train(trainer.config.train_config.num_steps)
