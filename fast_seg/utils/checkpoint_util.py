"""Checkpoints keyed by layer name.

A fast_seg checkpoint tracks each layer under its own name
(`model/<layer name>/<weight>`), not by position, so a checkpoint of one
architecture can seed another that shares layer names (PSPNet -> ICNet trunk,
a 1.0 model -> a pruned one), and a missing or mismatched weight can be
reported by name.
"""

import contextlib
import json
import os

import tensorflow as tf

from fast_seg.utils import output_files

MODEL_KEY = "model"


def layer_tracker(layers):
  """A trackable that holds `layers` as attributes named after the layers."""
  return tf.train.Checkpoint(**{layer.name: layer for layer in layers
                                if layer.weights})


def make_checkpoint(keras_model, **extra):
  """tf.train.Checkpoint of a model's layers plus extra trackables (step, optimizer)."""
  return tf.train.Checkpoint(**{MODEL_KEY: layer_tracker(keras_model.layers)},
                             **extra)


def weight_key(layer, weight):
  """Checkpoint key of `weight` of `layer` in a checkpoint from make_checkpoint."""
  attribute = weight.name.split("/")[-1].split(":")[0]
  return f"{MODEL_KEY}/{layer.name}/{attribute}/.ATTRIBUTES/VARIABLE_VALUE"


def resolve_checkpoint(path):
  """Accepts a checkpoint prefix or a directory (its latest checkpoint)."""
  if tf.io.gfile.isdir(path):
    latest = tf.train.latest_checkpoint(path)
    if latest is None:
      raise ValueError(f"no checkpoint found in directory {path}")
    return latest
  if not tf.io.gfile.exists(path + ".index"):
    raise ValueError(f"checkpoint not found: {path} (no {path}.index)")
  return path


def damaged_error(path, error, advice=""):
  """The ValueError for checkpoint `path` whose files cannot be read."""
  reason = (error.message if isinstance(error, tf.errors.OpError)
            else str(error))
  reason = (reason.strip().splitlines()[0] if reason.strip()
            else type(error).__name__)
  return ValueError(f"checkpoint {path} cannot be read ({reason}); its files "
                    f"are damaged or not a TensorFlow checkpoint{advice}")


@contextlib.contextmanager
def reading(path, advice=""):
  """Turns TensorFlow's errors while reading checkpoint `path` into one
  ValueError naming it, followed by `advice` (what to do instead).

  Opening a checkpoint reads only its index: a data shard with flipped
  bytes ("Checksum does not match") fails when a tensor is read, so every
  read is made inside this.
  """
  try:
    yield
  except tf.errors.OpError as e:
    raise damaged_error(path, e, advice) from None


def open_reader(path, advice=""):
  """tf.train.load_checkpoint, with a readable error for a damaged checkpoint.

  Raises:
    ValueError: naming the checkpoint, when its files cannot be read
      (truncated, overwritten, not a checkpoint at all), then `advice`.
  """
  try:
    return tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError) as e:
    raise damaged_error(path, e, advice) from None


def _fit_problems(layers, shapes):
  """(problems, [(weight, key)]): what of `layers` the checkpoint whose
  variable shapes are `shapes` lacks or holds in another shape."""
  problems, assignments = [], []
  for layer in layers:
    for weight in layer.weights:
      key = weight_key(layer, weight)
      if key not in shapes:
        problems.append(f"missing: {layer.name}/{key.split('/')[2]}")
      elif tuple(shapes[key]) != tuple(weight.shape):
        problems.append(
            f"shape mismatch: {layer.name}/{key.split('/')[2]}: checkpoint "
            f"{tuple(shapes[key])}, model {tuple(weight.shape)}")
      else:
        assignments.append((weight, key))
  return problems, assignments


def check_resumable(layers, path, logdir):
  """Raises a one-line ValueError when a run's checkpoint does not fit the
  model that would resume from it (another num_classes, filter_scale or
  architecture), before TensorFlow's restore says it in its own words
  with a warning per unmatched variable."""
  problems, _ = _fit_problems(layers, open_reader(path).get_variable_to_shape_map())
  if problems:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise ValueError(
        f"--logdir {logdir}: its checkpoint {os.path.basename(path)} does not "
        f"fit the model of this config: {problems[0]}{more}; resume with the "
        f"config it was trained with ({os.path.join(logdir, 'pipeline.config')}) "
        "or train in a new --logdir")


def restore_layers(layers, checkpoint_path):
  """Copies the weights of `layers` from a checkpoint, by layer name.

  Args:
    layers: Keras layers to fill; each of their weights must be present.
    checkpoint_path: a checkpoint prefix or a directory.

  Returns:
    The number of weights restored.

  Raises:
    ValueError: listing every missing weight and every shape mismatch by
      name, so nothing is silently left at its initial value.
  """
  path = resolve_checkpoint(checkpoint_path)
  reader = open_reader(path)
  problems, assignments = _fit_problems(
      layers, reader.get_variable_to_shape_map())
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise ValueError(
        f"checkpoint {path} does not fit the model ({len(problems)} problems; "
        f"a different architecture, num_classes or filter_scale?):\n  {shown}{more}")
  with reading(path):
    for weight, key in assignments:
      # A weights-only checkpoint may store float16 (model_zoo/): widen it.
      weight.assign(tf.cast(reader.get_tensor(key), weight.dtype))
  return len(assignments)


def checkpoint_step(path):
  """The global step stored in a training checkpoint (or parsed from ckpt-N)."""
  reader = open_reader(path)
  key = "step/.ATTRIBUTES/VARIABLE_VALUE"
  if reader.has_tensor(key):
    with reading(path):
      return int(reader.get_tensor(key))
  return int(path.rsplit("-", 1)[-1])


def restore_matching_layers(layers, checkpoint_path):
  """Restores each layer whose weights are all in the checkpoint, same shapes.

  For optional layers such as classifiers: a fine-tune checkpoint of the same
  classes (a pruned model) brings them along, one of other classes does not.

  Returns:
    (names of the restored layers, names of the layers left as they are).
  """
  path = resolve_checkpoint(checkpoint_path)
  reader = open_reader(path)
  shapes = reader.get_variable_to_shape_map()
  restored, skipped = [], []
  for layer in layers:
    keys = [weight_key(layer, w) for w in layer.weights]
    if all(k in shapes and tuple(shapes[k]) == tuple(w.shape)
           for k, w in zip(keys, layer.weights)):
      with reading(path):
        for key, weight in zip(keys, layer.weights):
          weight.assign(reader.get_tensor(key))
      restored.append(layer.name)
    else:
      skipped.append(layer.name)
  return restored, skipped


BEST_DIR = "best"
BEST_FILE = "best.json"
# Metrics of metrics.compute_metrics that can select the best checkpoint;
# for each, higher is better.
BEST_METRICS = ("miou", "pixel_accuracy", "mean_accuracy", "mean_dice")


class BestCheckpoint:
  """A directory holding the one checkpoint with the highest metric so far.

  `<dir>/ckpt-N.*` plus a `checkpoint` index (so the directory can be given
  wherever a checkpoint is accepted, like a training logdir) and `best.json`
  with the metric, its value, the step and where the checkpoint came from.
  It survives restarts: the recorded value is read back, so a resumed run
  only replaces the checkpoint with a better one. Nothing else ever deletes
  it (max_checkpoints_to_keep applies to the logdir's own checkpoints).
  """

  def __init__(self, directory, metric):
    if metric not in BEST_METRICS:
      raise ValueError(f"train_config.best_checkpoint_metric: unknown "
                       f"'{metric}'; allowed: {', '.join(BEST_METRICS)}")
    self.directory = directory
    self.metric = metric
    self.record = None
    path = os.path.join(directory, BEST_FILE)
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        record = json.load(f)
      if record.get("metric") == metric:
        self.record = record

  @property
  def value(self):
    return None if self.record is None else self.record["value"]

  def offer(self, result, write):
    """Keeps the checkpoint of `result` if its metric beats the best so far.

    Args:
      result: a metrics dict with `step`, the metric and optionally
        `checkpoint` (where the weights came from).
      write: write(prefix) writes the checkpoint to that prefix.

    Returns:
      Whether it became the best.
    """
    value = float(result[self.metric])
    if self.value is not None and not value > self.value:
      return False
    tf.io.gfile.makedirs(self.directory)
    previous = tf.train.latest_checkpoint(self.directory)
    prefix = os.path.join(self.directory, f"ckpt-{result['step']}")
    write(prefix)
    write_checkpoint_index(self.directory, os.path.basename(prefix))
    if previous and previous != prefix:
      for name in tf.io.gfile.glob(previous + ".*"):
        tf.io.gfile.remove(name)
    self.record = {"metric": self.metric, "value": value,
                   "step": int(result["step"]),
                   "checkpoint": os.path.basename(prefix),
                   "source": result.get("checkpoint")}
    with tf.io.gfile.GFile(os.path.join(self.directory, BEST_FILE), "w") as f:
      json.dump(self.record, f, indent=2)
    return True


def write_weights_only(layers, prefix, dtype=tf.float32, step=None):
  """Writes the weights of `layers` (and `step`) under their checkpoint keys.

  No optimizer slots and no object graph: what eval.py, export.py,
  compress.py and fine-tuning read (they restore by key, restore_layers),
  at a fraction of a training checkpoint's size; float16 halves it again.
  A training run cannot resume from it.

  Returns:
    The number of weights written.
  """
  names, tensors = [], []
  for layer in layers:
    for weight in layer.weights:
      names.append(weight_key(layer, weight))
      value = tf.convert_to_tensor(weight)
      tensors.append(tf.cast(value, dtype) if value.dtype.is_floating else value)
  if step is not None:
    names.append("step/.ATTRIBUTES/VARIABLE_VALUE")
    tensors.append(tf.constant(step, tf.int64))
  tf.io.gfile.makedirs(os.path.dirname(prefix) or ".")
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[""] * len(names), tensors=tensors)
  return len(names) - (step is not None)


def write_checkpoint_index(directory, name):
  """Writes `directory/checkpoint` naming checkpoint `name` (in that folder).

  The path is relative to the folder, so it can be moved or committed
  (tf.compat.v1.train.update_checkpoint_state would resolve a relative
  folder against the working directory and store "../../model").
  """
  with tf.io.gfile.GFile(os.path.join(directory, "checkpoint"), "w") as f:
    f.write(f'model_checkpoint_path: "{name}"\n'
            f'all_model_checkpoint_paths: "{name}"\n')


def copy_checkpoint(source, prefix):
  """Copies the files of checkpoint `source` to `prefix` (.index, .data-*)."""
  for name in tf.io.gfile.glob(source + ".*"):
    tf.io.gfile.copy(name, prefix + name[len(source):], overwrite=True)


def save(manager, number, name="ckpt"):
  """manager.save(checkpoint_number=number); a failed save leaves no part.

  TensorFlow writes `name`-N_temp/ and then `name`-N.index / .data-*, and
  the `checkpoint` state file last; a full disk or an unwritable folder
  stops it half way. Those partial files are removed, so the state file
  still names the last good checkpoint, which is kept.

  Args:
    manager: the tf.train.CheckpointManager (made with checkpoint_name
      `name`).
    number: the checkpoint's number (a step).
    name: the manager's checkpoint_name.

  Returns:
    The saved checkpoint's prefix.

  Raises:
    ValueError: no space left or the folder not writable, naming the
      checkpoint and the last good one.
  """
  # A step variable of a distribution strategy (MirroredVariable) has no
  # __int__; its tensor has.
  prefix = os.path.join(manager.directory,
                        f"{name}-{int(tf.convert_to_tensor(number))}")
  try:
    return manager.save(checkpoint_number=number)
  except BaseException as e:
    for path in tf.io.gfile.glob(f"{prefix}_temp*") + tf.io.gfile.glob(
        f"{prefix}.*"):
      output_files.remove(path)
    problem = output_files.write_problem(e, prefix)
    if problem is None:
      raise
    kept = [path for path in manager.checkpoints if path != prefix]
    raise ValueError(f"{problem}; its partial files were removed, the last "
                     f"good checkpoint is kept: {kept[-1] if kept else 'none yet'}"
                     ) from None
