"""Maps a file's variables onto a fast_seg model and writes its checkpoint."""

import os

import numpy as np
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.tools.import_weights import projects  # registers the projects
from fast_seg.tools.import_weights.source import SOURCES
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from fast_seg.utils import keras_h5

del projects
PREFIX = "model"
# How many names an error lists of each kind before "... and N more".
_SHOWN = 8


def _weight_kind(weight):
  """'icnet_psp_conv_bn/moving_mean:0' -> 'moving_mean'."""
  return weight.name.split("/")[-1].split(":")[0]


def _listing(label, names):
  shown = ", ".join(names[:_SHOWN])
  more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
  return f"{label} ({len(names)}): {shown}{more}"


class _Plan:
  """Which file variable fills which weight, and what does not fit."""

  def __init__(self, name_map, is_training_state, model, shapes):
    self.assignments, self.missing, self.mismatched = [], [], []
    used = set()
    for layer in model.keras_model.layers:
      for weight in layer.weights:
        self._plan_weight(name_map, layer.name, weight, shapes, used)
    self.unmapped = sorted(name for name in shapes if name not in used
                           and not is_training_state(name))

  def _plan_weight(self, name_map, layer_name, weight, shapes, used):
    kind = _weight_kind(weight)
    try:
      name = name_map(layer_name, kind)
    except KeyError:
      self.missing.append(f"{layer_name}/{kind} (no name)")
      return
    if name not in shapes:
      if kind in ("gamma", "beta"):
        # slim's batch_norm without scale (center) stores no gamma (beta).
        self.assignments.append((weight, None, kind))
        return
      self.missing.append(name)
      return
    used.add(name)
    model_shape = tuple(weight.shape.as_list())
    if tuple(shapes[name]) != model_shape:
      self.mismatched.append(
          f"{name} {tuple(shapes[name])} vs {model_shape} in the model")
      return
    self.assignments.append((weight, name, kind))

  def error(self, path):
    """One line naming what does not fit, or None."""
    parts = []
    if self.mismatched:
      parts.append(_listing(
          "other shapes (filter_scale or num_classes differ?)",
          self.mismatched))
    if self.unmapped:
      parts.append(_listing("unmapped, in the checkpoint only", self.unmapped))
    if self.missing:
      parts.append(_listing("missing, the model needs them", self.missing))
    if not parts:
      return None
    return f"{path} does not fit the config's model: " + "; ".join(parts)


def plan(source_name, pipeline_config, shapes, path):
  """Adapts the config, builds the model and maps the file's variables.

  Args:
    source_name: a key of SOURCES.
    pipeline_config: the fast_seg pipeline config (its source fields set).
    shapes: {variable name: shape} of the file.
    path: the file, for the message.

  Returns:
    (model, assignments): the built SegmentationModel and (weight, file
    variable or None for an absent gamma / beta, kind) for every weight.

  Raises:
    ValueError: an unknown source, a file or model its maps do not cover,
      or variables that do not all map (one line naming them).
  """
  source = SOURCES.get(source_name)
  try:
    name_map = source.adapt(pipeline_config.model, shapes)
  except ValueError as error:
    raise ValueError(f"{path}: {error}") from None
  model = model_builder.build(pipeline_config.model)
  mapping = _Plan(name_map, source.is_training_state, model, shapes)
  message = mapping.error(path)
  if message:
    raise ValueError(message)
  return model, mapping.assignments


class _CheckpointWeights:
  """A TF checkpoint read like a KerasH5Weights (path, context manager)."""

  def __init__(self, checkpoint):
    self.path = checkpoint_util.resolve_checkpoint(checkpoint)
    self._reader = checkpoint_util.open_reader(self.path)

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    pass

  def __getattr__(self, name):
    return getattr(self._reader, name)


def open_weights(path):
  """A reader of the trained model's file: a Keras .h5 / .hdf5 file, or a
  TF checkpoint (prefix or directory)."""
  if str(path).lower().endswith((".h5", ".hdf5")):
    if not os.path.isfile(path):
      raise ValueError(f"--input: {path} does not exist")
    return keras_h5.KerasH5Weights(path)
  return _CheckpointWeights(path)


def import_checkpoint(source_name, checkpoint, pipeline_config, output_dir):
  """Writes output_dir/model.* and pipeline.config from another project's
  checkpoint.

  Args:
    source_name: a key of SOURCES.
    checkpoint: the checkpoint prefix or its directory.
    pipeline_config: the fast_seg pipeline config (changed: the source's
      graph fields are set, as written to pipeline.config).
    output_dir: where to write.

  Returns:
    dict: prefix, num_weights, step (or None), source (the checkpoint
    read) and model (the built SegmentationModel holding the weights).

  Raises:
    ValueError: an unknown source, an unreadable checkpoint, a model the map
      does not cover, or variables that do not all map (one line).
  """
  with open_weights(checkpoint) as reader:
    model, assignments = plan(source_name, pipeline_config,
                              reader.get_variable_to_shape_map(), reader.path)
    for weight, name, kind in assignments:
      if name is None:
        value = np.full(weight.shape, 1.0 if kind == "gamma" else 0.0)
      else:
        with checkpoint_util.reading(reader.path):
          value = reader.get_tensor(name)
      weight.assign(np.asarray(value, weight.dtype.as_numpy_dtype))
    step = (int(reader.get_tensor("global_step"))
            if reader.has_tensor("global_step") else None)
  layers = [layer for layer in model.keras_model.layers if layer.weights]
  prefix = os.path.join(output_dir, PREFIX)
  count = checkpoint_util.write_weights_only(layers, prefix, tf.float32,
                                             step=step)
  checkpoint_util.write_checkpoint_index(output_dir, PREFIX)
  config_util.save_pipeline_config(pipeline_config, output_dir)
  return {"prefix": prefix, "num_weights": count, "step": step,
          "source": reader.path, "model": model}
