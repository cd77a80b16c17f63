"""Checkpoints keyed by layer name.

A fast_seg checkpoint tracks each layer under its own name
(`model/<layer name>/<weight>`), not by position, so a checkpoint of one
architecture can seed another that shares layer names (PSPNet -> ICNet trunk,
a 1.0 model -> a pruned one), and a missing or mismatched weight can be
reported by name.
"""

import tensorflow as tf

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
  reader = tf.train.load_checkpoint(path)
  shapes = reader.get_variable_to_shape_map()
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
  if problems:
    shown = "\n  ".join(problems[:20])
    more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
    raise ValueError(
        f"checkpoint {path} does not fit the model ({len(problems)} problems; "
        f"a different architecture, num_classes or filter_scale?):\n  {shown}{more}")
  for weight, key in assignments:
    weight.assign(reader.get_tensor(key))
  return len(assignments)


def checkpoint_step(path):
  """The global step stored in a training checkpoint (or parsed from ckpt-N)."""
  reader = tf.train.load_checkpoint(path)
  key = "step/.ATTRIBUTES/VARIABLE_VALUE"
  if reader.has_tensor(key):
    return int(reader.get_tensor(key))
  return int(path.rsplit("-", 1)[-1])


def restore_matching_layers(layers, checkpoint_path):
  """Restores each layer whose weights are all in the checkpoint, same shapes.

  For optional layers such as classifiers: a fine-tune checkpoint of the same
  classes (a pruned model) brings them along, one of other classes does not.

  Returns:
    (names of the restored layers, names of the layers left as they are).
  """
  reader = tf.train.load_checkpoint(resolve_checkpoint(checkpoint_path))
  shapes = reader.get_variable_to_shape_map()
  restored, skipped = [], []
  for layer in layers:
    keys = [weight_key(layer, w) for w in layer.weights]
    if all(k in shapes and tuple(shapes[k]) == tuple(w.shape)
           for k, w in zip(keys, layer.weights)):
      for key, weight in zip(keys, layer.weights):
        weight.assign(reader.get_tensor(key))
      restored.append(layer.name)
    else:
      skipped.append(layer.name)
  return restored, skipped
