"""Reads the weights of a Keras .h5 / .hdf5 file, as a checkpoint reader does.

Keras 2 writes weights in two layouts: a whole model (`model.save`, weights
under the `model_weights` group) and weights alone (`save_weights`, at the
root). In both, each layer is a group whose `weight_names` attribute lists
its weights in order, e.g. 'conv1/kernel:0'; a model nested as a layer (a
Keras-applications MobileNet inside a segmentation model) lists its inner
layers' weights in its own group ('block_1_expand/kernel:0').

One home for that layout: ImageNet .h5 loading (feature_extractors/
pretrained.py) and the import of other projects' trained .h5 files
(tools/import_weights/) both read through `KerasH5Weights`.
"""

import h5py
import numpy as np


def weight_kind(weight_name):
  """'conv1_conv/kernel:0' -> 'kernel': files differ in prefix and suffix."""
  last = weight_name.rsplit("/", 1)[-1]
  return last.split(":", 1)[0]


def _text(value):
  return value.decode("utf8") if isinstance(value, bytes) else str(value)


class KerasH5Weights:
  """The weights of a Keras .h5 file by layer, or by one flat name.

  The flat name of a weight is its layer's group and its stored name without
  the ':0' suffix, the layer written once: 'conv1/kernel' for layer 'conv1'
  holding 'conv1/kernel:0', 'base/block_1_expand/kernel' for the nested model
  'base' holding 'block_1_expand/kernel:0'. `get_variable_to_shape_map`,
  `get_tensor` and `has_tensor` take those names, as tf.train's checkpoint
  reader does for a checkpoint.

  Use as a context manager, or call close().
  """

  def __init__(self, path):
    try:
      self._file = h5py.File(path, "r")
    except OSError as e:
      raise ValueError(f"{path}: not a readable Keras .h5 file ({e})") \
          from None
    self.path = path
    self._root = self._file.get("model_weights", self._file)
    self._layers = {}
    self._flat = None

  def __enter__(self):
    return self

  def __exit__(self, *unused):
    self.close()

  def close(self):
    self._file.close()

  def layer_names(self):
    """Layers in the file's order (its `layer_names`), else its groups'."""
    names = self._root.attrs.get("layer_names")
    if names is None:
      return sorted(self._root)
    return [_text(name) for name in names]

  def _stored(self, layer):
    """[(stored weight name, dataset)] of one layer, in the file's order."""
    if layer not in self._layers:
      group = self._root.get(layer)
      found = []
      if isinstance(group, h5py.Group):
        names = [_text(n) for n in group.attrs.get("weight_names", ())]
        if names:
          found = [(name, group[name]) for name in names if name in group]
        else:
          group.visititems(lambda name, item: found.append((name, item))
                           if isinstance(item, h5py.Dataset) else None)
      self._layers[layer] = found
    return self._layers[layer]

  def get(self, layer, weight):
    """The dataset of `weight` ('kernel', 'gamma', ...) in `layer`, or None.

    A layer holding one weight of each kind (every plain Keras layer) is
    looked up by kind, whatever prefix its file stored it under.
    """
    kind = weight_kind(weight)
    for name, dataset in self._stored(layer):
      if weight_kind(name) == kind:
        return dataset
    return None

  def _flat_names(self):
    if self._flat is not None:
      return self._flat
    names = {}
    for layer in self.layer_names():
      for stored, dataset in self._stored(layer):
        stored = stored.split(":", 1)[0]
        name = stored if stored.startswith(layer + "/") else \
            f"{layer}/{stored}"
        names[name] = dataset
    self._flat = names
    return names

  def get_variable_to_shape_map(self):
    return {name: tuple(dataset.shape)
            for name, dataset in self._flat_names().items()}

  def has_tensor(self, name):
    return name in self._flat_names()

  def get_tensor(self, name):
    return np.array(self._flat_names()[name])
