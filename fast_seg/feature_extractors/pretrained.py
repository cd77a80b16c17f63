"""Loads ImageNet weights into a built feature extractor from a local file.

Two formats are read, by the name maps in third_party/ that each backbone
registers (base.register's imagenet_name_maps): tf-slim model-zoo
checkpoints (`resnet_v1_50.ckpt`, `mobilenet_v1_1.0_224.ckpt`,
`mobilenet_v2_1.0_224.ckpt`) and Keras-applications `.h5` weight files.
Nothing is ever downloaded: the path comes from
`feature_extractor.weights_path`.

Loading is all or nothing: every weight of every extractor layer is looked
up first, and all problems (missing names, shape mismatches) are reported in
one error before any variable is touched. One absence is not a problem: a
slim batch norm built with scale=False has a beta but no gamma, which means
gamma = 1 (slim's MobilenetV1 arg scope sets scale=True, so its model-zoo
checkpoints do carry gamma; checkpoints trained with other arg scopes may not).
"""

import os

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

from fast_seg.feature_extractors import base
from fast_seg.utils import checkpoint_util
from fast_seg.utils import keras_h5

WeightsFormat = base.WeightsFormat

# How errors name each format.
_FORMAT_NAMES = {WeightsFormat.TF_SLIM: "tf-slim checkpoint",
                 WeightsFormat.KERAS_H5: "Keras-applications .h5"}


def resolve_format(path, weights_format):
  """Returns TF_SLIM or KERAS_H5; AUTO means KERAS_H5 for .h5 files."""
  if weights_format == WeightsFormat.AUTO:
    if path.lower().endswith((".h5", ".hdf5")):
      return WeightsFormat.KERAS_H5
    return WeightsFormat.TF_SLIM
  if weights_format not in (WeightsFormat.TF_SLIM, WeightsFormat.KERAS_H5):
    raise ValueError(
        f"feature_extractor.weights_format: unknown value {weights_format}")
  return weights_format


def _layer_weights(layer):
  """List of (kind, variable) of a layer, kinds named as the maps expect."""
  if isinstance(layer, keras.layers.DepthwiseConv2D):
    kinds = ("depthwise_kernel", "bias")
  elif isinstance(layer, keras.layers.Conv2D):
    kinds = ("kernel", "bias")
  elif isinstance(layer, keras.layers.BatchNormalization):
    kinds = ("gamma", "beta", "moving_mean", "moving_variance")
  elif layer.weights:
    raise ValueError(
        f"layer '{layer.name}' ({type(layer).__name__}) has weights but no "
        "ImageNet name map")
  else:
    kinds = ()
  pairs = [(kind, getattr(layer, kind, None)) for kind in kinds]
  return [(kind, var) for kind, var in pairs if var is not None]


def _targets(extractor):
  """(layer name, kind, variable) for every weight the extractor created."""
  targets = []
  for layer in extractor.layers:
    if not layer.built:
      continue
    for kind, var in _layer_weights(layer):
      targets.append((layer.name, kind, var))
  return targets


def _shape_problem(name, file_shape, var):
  model_shape = tuple(var.shape.as_list())
  if tuple(file_shape) == model_shape:
    return None
  return f"{name}: file has {tuple(file_shape)}, model needs {model_shape}"


def _name_map(extractor, weights_format):
  """The map the extractor registered for `weights_format`."""
  name_map = extractor.imagenet_name_maps.get(weights_format)
  if name_map is None:
    raise ValueError(f"no {_FORMAT_NAMES[weights_format]} name map for "
                     f"{extractor.name}")
  return name_map


def _read_slim(name_map, path, targets):
  """Returns ([(variable, value)], [problem]) from a tf-slim checkpoint."""
  try:
    reader = tf.train.load_checkpoint(path)
  except (tf.errors.OpError, ValueError) as e:
    raise ValueError(f"{path}: not a readable TF checkpoint ({e})") from None
  shapes = reader.get_variable_to_shape_map()
  assignments, problems, scale_free = [], [], []
  for layer_name, kind, var in targets:
    try:
      name = name_map(layer_name, kind)
    except KeyError as e:
      problems.append(str(e.args[0]))
      continue
    if name not in shapes:
      if kind == "gamma" and _has_beta(name_map, layer_name, shapes):
        # slim's batch_norm(scale=False) stores no gamma: it is 1.
        scale_free.append(layer_name)
        assignments.append((var, np.ones(var.shape.as_list(), np.float32)))
        continue
      problems.append(f"missing: {name}")
      continue
    problem = _shape_problem(name, shapes[name], var)
    if problem:
      problems.append(problem)
      continue
    with checkpoint_util.reading(path):  # a shard failing its checksum
      assignments.append((var, reader.get_tensor(name)))
  if scale_free:
    logging.info("%s has no BatchNorm/gamma for %d batch norms (slim's "
                 "scale=False); their gamma is set to 1", path,
                 len(scale_free))
  return assignments, problems


def _has_beta(name_map, layer_name, shapes):
  """Whether the checkpoint has the beta of a batch norm (so it exists)."""
  try:
    return name_map(layer_name, "beta") in shapes
  except KeyError:
    return False


def _read_h5(name_map, path, targets):
  """Returns ([(variable, value)], [problem]) from a Keras .h5 weight file."""
  assignments, problems = [], []
  with keras_h5.KerasH5Weights(path) as layers:
    for layer_name, kind, var in targets:
      try:
        spec = name_map(layer_name, kind)
      except KeyError as e:
        problems.append(str(e.args[0]))
        continue
      name = f"{spec.layer}/{spec.weight}"
      dataset = layers.get(spec.layer, spec.weight)
      if dataset is None:
        problems.append(f"missing: {name}")
        continue
      problem = _shape_problem(name, dataset.shape, var)
      if problem:
        problems.append(problem)
        continue
      value = np.array(dataset)
      if spec.minus is not None:
        # Fold the conv bias (our convs have none) into the BN moving mean;
        # a file without that bias has nothing to fold.
        minus = layers.get(*spec.minus)
        if minus is not None:
          minus_name = "/".join(spec.minus)
          if minus.shape != value.shape:
            problems.append(
                f"{minus_name}: file has {tuple(minus.shape)}, folded into "
                f"{name} of shape {value.shape}")
            continue
          value = value - np.array(minus)
      assignments.append((var, value))
  return assignments, problems


def _require_file(path, weights_format):
  """Raises FileNotFoundError unless the weights file (or prefix) exists."""
  if weights_format == WeightsFormat.KERAS_H5:
    exists = tf.io.gfile.exists(path)
  else:
    exists = any(tf.io.gfile.exists(p) for p in (path, path + ".index"))
  if not exists:
    raise FileNotFoundError(
        f"feature_extractor.weights_path: {path} does not exist (ImageNet "
        "weights are read from local files only)")


def _load_error(extractor, path, problems):
  """One ValueError naming the file and every problem, with a hint."""
  lines = [f"cannot load {path} into {extractor.name} "
           f"(filter_scale {extractor.filter_scale:g}): "
           f"{len(problems)} problem(s):"]
  lines += ["  " + p for p in problems]
  if any("file has" in p for p in problems):
    lines.append(
        "  hint: shapes must match exactly; ImageNet files are full width, "
        "so load them into a filter_scale 1.0 model (current: "
        f"{extractor.filter_scale:g}) and prune it with compress.py")
  return ValueError("\n".join(lines))


def load_imagenet_weights(extractor, path,
                          weights_format=WeightsFormat.AUTO):
  """Assigns ImageNet weights from a local file to a built extractor.

  Every weight of every layer the extractor created is assigned; variables of
  the file without a counterpart (logits, the final 1x1 conv, optimizer
  slots) are ignored.

  Args:
    extractor: a FeatureExtractor whose stages are built (layers that are not
      built yet are skipped; build the stages you want first).
    path: a tf-slim checkpoint (prefix or directory) or a Keras .h5 file.
    weights_format: a feature_extractor_pb2.FeatureExtractor.WeightsFormat value; AUTO reads
      `.h5` files as KERAS_H5 and anything else as TF_SLIM.

  Returns:
    int, the number of weights assigned.

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file cannot be read, nothing is built, the extractor has
      no name map for the format, or weights are missing or of the wrong
      shape (one message names the file and every such weight).
  """
  if not path:
    raise ValueError("feature_extractor.weights_path is empty")
  path = os.fspath(path)
  weights_format = resolve_format(path, weights_format)
  _require_file(path, weights_format)
  targets = _targets(extractor)
  if not targets:
    raise ValueError(
        f"{extractor.name} has no built layers: call build() before loading "
        f"{path}")
  read = _read_h5 if weights_format == WeightsFormat.KERAS_H5 else _read_slim
  assignments, problems = read(_name_map(extractor, weights_format), path,
                               targets)
  if problems:
    raise _load_error(extractor, path, problems)
  for var, value in assignments:
    var.assign(np.asarray(value, dtype=var.dtype.as_numpy_dtype))
  logging.info("Loaded %d ImageNet weights into %s from %s",
               len(assignments), extractor.name, path)
  return len(assignments)
