"""What a training run settles before its first step.

The devices (the tf.distribute strategy), the checks of train_config, the
precision policy, the run's length (num_epochs -> num_steps) and the loss's
computed class weights. The computed values are written into the as-run
config, so the saved pipeline.config, a resumed run and eval see what this
run trained with. Nothing here builds a model or touches a checkpoint: a
setting that cannot be honoured fails before any of that work.
"""

import collections
import contextlib
import math

from absl import logging
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import losses_builder
from fast_seg.core import losses as core_losses
from fast_seg.core import model as core_model
from fast_seg.data import dataset_info
from fast_seg.model_optimization import tfmot_lib
from fast_seg.protos import losses_pb2
from fast_seg.protos import pipeline_pb2
from fast_seg.protos import train_pb2
from fast_seg.utils import config_util
from fast_seg.utils import visualization

STRATEGIES = ("one_device", "mirrored", "multi_worker")
_POLICIES = {train_pb2.TrainConfig.FLOAT32: "float32",
             train_pb2.TrainConfig.MIXED_FLOAT16: "mixed_float16",
             train_pb2.TrainConfig.MIXED_BFLOAT16: "mixed_bfloat16"}

# What the dataset_info.json beside the training TFRecords tells the run:
# its path (or None), the examples per epoch (or None when unknown) and the
# palette of the image summaries.
DatasetFacts = collections.namedtuple(
    "DatasetFacts", ["info_path", "examples_per_epoch", "palette"])


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


def as_run_config(pipeline_config, num_steps=None):
  """A copy of `pipeline_config` with the command line's length applied.

  `num_steps` is --num_steps (None: not given). A copy: the computed
  fields written later (num_steps from num_epochs, class weights) must not
  leak into the caller's message.
  """
  config = pipeline_pb2.PipelineConfig()
  config.CopyFrom(pipeline_config)
  if num_steps is not None:
    # 0 is a value the user typed, not "unset": training no step is never
    # what was meant, and silently training the config's length is worse.
    if num_steps < 1:
      raise ValueError(f"--num_steps must be >= 1, got {num_steps}")
    # The command line wins over the config's length, in steps or epochs.
    config.train_config.num_steps = num_steps
    config.train_config.ClearField("num_epochs")
  return config


def check_train_config(pipeline_config, strategy):
  """Refuses train_config values the loop cannot honour, naming the field.

  Returns:
    The tfmot technique configured (tfmot_lib.TECHNIQUES) or None.
  """
  train_config = pipeline_config.train_config
  stale = [name for name in config_util.DEPRECATED_PRECISION_FIELDS
           if train_config.HasField(name)]
  if stale:
    # Only config_util's loader reads them (into precision); a config built
    # around it would otherwise train in a precision it did not ask for.
    raise ValueError(
        f"train_config.{stale[0]} is deprecated and training does not read "
        "it; set train_config.precision (configs read by config_util are "
        "migrated)")
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
  factor = train_config.divergence_factor
  if not (factor == 0 or factor > 1):  # NaN too
    raise ValueError(
        "train_config.divergence_factor must be 0 (off) or > 1, got "
        f"{factor:g}")
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


def precision_policy(train_config):
  """The Keras policy name of train_config.precision."""
  return _POLICIES[train_config.precision]


@contextlib.contextmanager
def global_precision_policy(policy):
  """Keras builds layers under the global policy: set it, always restore it."""
  keras.mixed_precision.set_global_policy(policy)
  try:
    yield
  finally:
    keras.mixed_precision.set_global_policy("float32")


def read_dataset_facts(pipeline_config):
  """Epoch length, palette and class weights from dataset_info.json.

  Before any model building or step: a num_classes that disagrees with the
  data should fail now, not as a label-value error mid-run. Fills in
  train_config.num_steps (from num_epochs) and the loss's computed class
  weights in `pipeline_config`, the as-run config.

  Returns:
    DatasetFacts.
  """
  info_path, info = dataset_info.load_for_reader(
      pipeline_config.train_input_reader, pipeline_config.model,
      "train_input_reader")
  check_labelled(pipeline_config, info, info_path)
  examples_per_epoch = resolve_num_steps(pipeline_config, info, info_path)
  warn_if_crop_exceeds_images(pipeline_config, info, info_path)
  arch = config_util.get_model_config(pipeline_config.model)
  palette = (dataset_info.palette(info) if info is not None
             else visualization.default_palette(arch.num_classes))
  if (arch.loss.class_weighting != losses_pb2.Loss.UNIFORM
      and not arch.loss.class_weights):
    # Written into the config, so the saved pipeline.config, a resumed run
    # and eval see the weights this run trains with.
    arch.loss.class_weights[:] = computed_class_weights(
        pipeline_config, info, info_path)
    weighting = losses_pb2.Loss.ClassWeighting.Name(arch.loss.class_weighting)
    globs = ", ".join(pipeline_config.train_input_reader.tf_record_input_path)
    losses_builder.log_class_weights_once(
        arch.loss.class_weights,
        lambda text: f"{weighting} class weights over {globs}: {text}")
  return DatasetFacts(info_path, examples_per_epoch, palette)


def check_labelled(pipeline_config, info, info_path):
  """Refuses training data without a labelled pixel, as the converter counted.

  Every label pixel the ignore label: the loss is 0 at every step and the
  run would "train" and report done. A split like that among others (a test
  split without public labels in a trainval glob) is warned about.

  Returns:
    The warning text, or None.
  """
  if info is None:
    return None
  globs = list(pipeline_config.train_input_reader.tf_record_input_path)
  unlabelled = dataset_info.splits_without_labels(info, globs)
  if not unlabelled:
    return None
  text = (f"train_input_reader: every label pixel of split "
          f"{', '.join(unlabelled)} is the ignore label (per {info_path}: "
          "no labelled pixel)")
  if len(unlabelled) == len(globs):
    raise ValueError(f"{text}; there is nothing to train on: check the "
                     "labels or the converter's class mapping, or train on "
                     "a labelled split")
  text += "; those images add nothing to the loss"
  logging.warning(text)
  return text


# Steps after which the examples' sizes no longer follow the image files'.
_RESIZING_STEPS = ("fixed_resize", "resize_with_pad", "fixed_row_crop")


def warn_if_crop_exceeds_images(pipeline_config, info, info_path):
  """Says, before step 1, when random_crop is larger than every training
  image even at random_scale's largest factor.

  Legal (the crop pads with the ignore label, as mmsegmentation's does), but
  then most of every batch is padding, which is rarely meant. The sizes are
  the converter's count in dataset_info.json.

  Returns:
    The warning text, or None.
  """
  if info is None:
    return None
  largest = dataset_info.largest_image_size(
      info, list(pipeline_config.train_input_reader.tf_record_input_path))
  scale = 1.0
  for step in pipeline_config.train_config.data_augmentation_options:
    which = step.WhichOneof("preprocessing_step")
    if largest is None or which in _RESIZING_STEPS:
      return None
    if which == "random_scale":
      scale *= step.random_scale.max_scale_ratio
    if which == "random_crop":
      return _crop_warning(step.random_crop, largest, scale, info_path)
  return None


def _crop_warning(crop, largest, scale, info_path):
  reach = (round(largest[0] * scale), round(largest[1] * scale))
  if crop.crop_height <= reach[0] and crop.crop_width <= reach[1]:
    return None
  scaled = f", {reach[0]}x{reach[1]} at random_scale's x{scale:g}" if (
      scale != 1.0) else ""
  text = (f"train_config.data_augmentation_options: random_crop "
          f"{crop.crop_height}x{crop.crop_width} is larger than every "
          f"training image (at most {largest[0]}x{largest[1]} (HxW) per "
          f"{info_path}{scaled}): each crop is padded with the ignore label; "
          "lower the crop or raise max_scale_ratio if that is not meant")
  logging.warning(text)
  return text


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
