"""The Trainer: model, optimizer, checkpoints and the loop of one run.

It checkpoints every n steps with a CheckpointManager, resumes on the same
logdir with its step counter, and stops on a NaN / Inf or diverging loss
(loss_guard.py) without overwriting the last good checkpoint. The step is
train_step.py's; what is settled before it run_settings.py's; what the loop
says progress.py's; the validation during training validation.py's.

The checkpoint's object graph (`model`, `optimizer`, `step`, and a tfmot
run's `compression`; files ckpt-N and the `checkpoint` state file) is what
eval, export, compress and a resumed run read: it must not change.

Multi-worker (MultiWorkerMirroredStrategy): every worker runs this same loop
and every worker must save (the TF multi-worker recipe: a save may read
variables through collective ops), but only the chief writes to the logdir;
the others save into a throw-away local directory, removed when training
ends. Every worker resumes from the logdir's latest checkpoint, so it must
be on a filesystem all workers see. The input is sharded by tf.data's AUTO
policy, see input_reader_builder.build.
"""

import os
import shutil
import tempfile

from absl import logging
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import input_reader_builder
from fast_seg.builders import model_builder
from fast_seg.builders import optimizer_builder
from fast_seg.data import tf_example
from fast_seg.feature_extractors import pretrained
from fast_seg.model_optimization import tfmot_lib
from fast_seg.protos import train_pb2
from fast_seg.training import distillation as distillation_lib
from fast_seg.training import loss_guard
from fast_seg.training import progress
from fast_seg.training import run_settings
from fast_seg.training import time_profile
from fast_seg.training import train_step
from fast_seg.training import validation
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util

CHECKPOINT_NAME = "ckpt"
# What a broken input pipeline raises (a damaged shard, an empty input, an
# undecodable image; a record that is not an Example gives TensorFlow an
# error message that is not UTF-8); find_input_problem then says what it is.
INPUT_ERRORS = (tf.errors.DataLossError, tf.errors.OutOfRangeError,
                tf.errors.InvalidArgumentError, UnicodeDecodeError)


class TrainingDivergedError(RuntimeError):
  """The loss became NaN or Inf or diverged; the last good checkpoint is kept."""


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
    self.config = run_settings.as_run_config(pipeline_config)
    self.logdir = logdir
    self.strategy = strategy
    self.train_config = self.config.train_config
    run_settings.check_train_config(self.config, strategy)
    (self.dataset_info_path, self.examples_per_epoch,
     self.palette) = run_settings.read_dataset_facts(self.config)
    self._build_model_and_optimizer()
    self._check_resumable()
    self._make_checkpoint_manager()
    self.trainable_variables = self._select_trainable_variables()
    self.train_function, self._train_steps = self._make_train_function()
    self.validation = validation.build(
        self.config, self.train_model,
        self.logdir if self.is_chief else self._worker_dir)
    self.progress = progress.ProgressLog(
        self.train_config.batch_size, self.examples_per_epoch,
        self.learning_rate, self.compression, self.foreground_counts)
    self.time_profile = None  # the last train()'s, see time_profile.py

  def _build_model_and_optimizer(self):
    """Model (tfmot-wrapped if asked), optimizer, step and checkpoint."""
    train_config = self.train_config
    policy = run_settings.precision_policy(train_config)
    # float16 needs loss scaling against underflowing gradients; bfloat16 has
    # float32's exponent range and does not.
    self.loss_scaling = policy == "mixed_float16"
    with run_settings.global_precision_policy(policy), self.strategy.scope():
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
    self.loss_guard = loss_guard.LossGuard(train_config.divergence_factor)
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

  def _make_train_function(self):
    """(train_function, train_steps) of train_step.step_functions."""
    compute_gradients = train_step.gradient_function(
        self.train_model, self.optimizer, self.trainable_variables,
        self.strategy.num_replicas_in_sync, self.loss_scaling,
        distillation=self.distillation,
        count_foreground=self.foreground_counts is not None,
        use_xla=self.train_config.use_xla)
    return train_step.step_functions(
        self.strategy, compute_gradients, self.optimizer,
        self.trainable_variables, self.step, self.loss_guard,
        self.foreground_counts, self.train_config.steps_per_call)

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
      # A shard failing its checksum shows only as its tensors are read.
      with checkpoint_util.reading(latest, self._damaged_advice(latest)):
        self._restore(latest)
      logging.info("Resumed from %s at step %d", latest, int(self.step.numpy()))
      return int(self.step.numpy())
    self._load_imagenet_weights()
    if self.train_config.fine_tune_checkpoint:
      self._fine_tune()
    if self.compression:
      self.compression.load_float_weights()
    return 0

  def _restore(self, latest):
    if self.compression:
      self._restore_compressed(latest)
    else:
      self.checkpoint.restore(latest).assert_existing_objects_matched()

  def _check_resumable(self):
    """The logdir's latest checkpoint can be read and fits this model.

    Checked before train_lib saves this run's config over the one the
    checkpoint was trained with, so a changed num_classes or filter_scale
    ends in one line that names both shapes, not TensorFlow's restore error.
    """
    latest = tf.train.latest_checkpoint(self.logdir)
    if not latest:
      return
    checkpoint_util.open_reader(latest, self._damaged_advice(latest))
    if not self.compression:  # a tfmot run's keys are checked on restore
      checkpoint_util.check_resumable(self.model.keras_model.layers, latest,
                                      self.logdir)

  def _damaged_advice(self, latest):
    """What to do about a damaged latest checkpoint of the logdir."""
    state = tf.train.get_checkpoint_state(self.logdir)
    name = os.path.basename(latest)
    earlier = [os.path.basename(p) for p in
               (state.all_model_checkpoint_paths if state else ())]
    earlier = [p for p in earlier if p != name]
    resume = (f"delete {name}.* to resume from {earlier[-1]}, " if earlier
              else "")
    return f"; {resume}or train in a new --logdir"

  def _load_imagenet_weights(self):
    """The backbone's ImageNet weights, if given; else says it starts cold."""
    extractor_config = config_util.get_model_config(
        self.config.model).feature_extractor
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

  def _fine_tune(self):
    """train_config.fine_tune_checkpoint's layers, by its checkpoint type;
    a checkpoint that cannot be read or does not fit names the field."""
    try:
      self._restore_fine_tune_layers()
    except ValueError as e:
      raise ValueError(f"train_config.fine_tune_checkpoint: {e}") from None

  def _restore_fine_tune_layers(self):
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

  # -- checkpoints ----------------------------------------------------------

  def _apply_masks(self):
    """Pruning: zeroes the pruned weights, which the optimizer moved."""
    if self.compression:
      with self.strategy.scope():
        self.compression.apply_masks()

  def _save(self):
    if self.loss_guard.tripped():
      return None
    self._apply_masks()
    return checkpoint_util.save(self.manager, self.step, CHECKPOINT_NAME)

  def _check_loss(self):
    if self.loss_guard.tripped():
      raise TrainingDivergedError(self.loss_guard.problem(
          int(self.step.numpy()), tf.train.latest_checkpoint(self.logdir)))

  # -- the loop -------------------------------------------------------------

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
      problem = tf_example.find_input_problem(
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
    self.progress.start(self.model.name, start_step, num_steps,
                        self.strategy.num_replicas_in_sync,
                        self.train_config.steps_per_call)
    self.time_profile = time_profile.TimeProfile(self.train_config.batch_size)
    try:
      with writer.as_default():
        last_losses = self._loop(iterator, start_step, num_steps, summary_batch)
    except KeyboardInterrupt:
      saved = self._save()
      logging.warning("Interrupted at step %d; %s", int(self.step.numpy()),
                      f"saved {saved}" if saved else "nothing saved")
      raise
    writer.flush()
    progress.report_time(self.time_profile, self.logdir, self.is_chief)
    last_losses["step"] = int(self.step.numpy())
    return last_losses

  def _loop(self, iterator, step, num_steps, summary_batch):
    """Calls the step from `step` to `num_steps`; the last logged losses."""
    last_losses = {}
    while step < num_steps:
      # The Python counter mirrors self.step without a device sync per call.
      count = min(self.train_config.steps_per_call, num_steps - step)
      losses = self._call(iterator, count)
      previous, step = step, step + count
      if (progress.crossed(previous, step, self.train_config.log_every_n_steps)
          or step == num_steps):
        with self.time_profile.phase(time_profile.LOGGING):
          self._check_loss()
          last_losses = self.progress.log(losses, step)
      self._after_call(previous, step, step == num_steps, summary_batch)
    return last_losses

  def _call(self, iterator, count):
    """One compiled call of `count` steps, timed; the last step's losses."""
    with self.time_profile.call(count):
      if count == self.train_config.steps_per_call:
        return self.train_function(iterator)
      return self._train_steps(iterator, tf.constant(count, tf.int32))

  def _after_call(self, previous, step, is_last, summary_batch):
    """Image summary, checkpoint and validation when their interval passed."""
    train_config = self.train_config
    phase = self.time_profile.phase
    if (summary_batch is not None and progress.crossed(
        previous, step, train_config.image_summary_every_n_steps)):
      with phase(time_profile.IMAGE_SUMMARIES):
        self._apply_masks()
        progress.image_summary(self.train_model, summary_batch, self.palette,
                               self.step)
    if (progress.crossed(previous, step, train_config.checkpoint_every_n_steps)
        or is_last):
      self._check_loss()
      with phase(time_profile.CHECKPOINTS):
        self._save()
    if self.validation and (
        progress.crossed(previous, step, train_config.eval_every_n_steps)
        or is_last):
      self._check_loss()
      with phase(time_profile.VALIDATION):
        self._apply_masks()
        self.validation.run(step, self.checkpoint.write)
