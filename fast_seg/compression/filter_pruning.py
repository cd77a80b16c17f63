"""L1 filter pruning (Li et al. 2016) read off the model's own Keras graph.

No per-model tables: walking the functional graph, every conv that creates
channels starts a channel *group*; batch norms, activations, pooling and
resizes carry their input's group; depthwise convs follow their input; an
add (residual streams, ICNet's CFF sums) merges the groups it joins so they
share one mask; a concatenation lays its inputs' groups side by side, so a
consumer's input channels are sliced by offset. Groups that reach a model
output, the image, or a layer the pruner does not understand keep every
channel.

How many channels a group keeps is not a parameter of its own: it is what
the same config built with the new `filter_scale` has, so the pruned
weights load into that model by layer name with nothing missing. Within a
group, channels are ranked by the L1 norm of their filters, summed over the
group's convs (each conv's norms divided by their mean first, so a wide
layer does not outvote the others).
"""

import dataclasses

import numpy as np
import tf_keras as keras

_LAYERS = keras.layers

# Layers whose output has their (first) input's channels, one to one.
_CHANNELWISE = (
    _LAYERS.BatchNormalization, _LAYERS.ReLU, _LAYERS.Activation,
    _LAYERS.LeakyReLU, _LAYERS.ELU, _LAYERS.Dropout, _LAYERS.SpatialDropout2D,
    _LAYERS.GaussianNoise, _LAYERS.ZeroPadding2D, _LAYERS.Cropping2D,
    _LAYERS.MaxPooling2D, _LAYERS.AveragePooling2D, _LAYERS.UpSampling2D,
    _LAYERS.Resizing,
)
_MERGES = (_LAYERS.Add, _LAYERS.Subtract, _LAYERS.Multiply, _LAYERS.Average,
           _LAYERS.Maximum, _LAYERS.Minimum)


def _kernel_axes(layer):
  """(input axis, output axis) of the kernel of a layer that makes channels.

  Such a layer mixes all its input channels into new ones; None for others.
  """
  if isinstance(layer, _LAYERS.Conv2DTranspose):
    return 3, 2
  if isinstance(layer, _LAYERS.Conv2D):
    return 2, 3
  if isinstance(layer, _LAYERS.Dense):
    return 0, 1
  return None


def _channelwise_input(layer):
  """Index of the input whose channels pass through `layer`, or None.

  fast_seg's own layers declare it with a `channel_input` attribute (e.g.
  ResizeLike(x, reference) passes x's channels; the reference gives only a
  size).
  """
  declared = getattr(layer, "channel_input", None)
  if declared is not None:
    return declared
  if isinstance(layer, _LAYERS.BatchNormalization):
    axis = layer.axis if isinstance(layer.axis, (list, tuple)) else [layer.axis]
    return 0 if list(axis) in ([3], [-1]) else None
  if isinstance(layer, _CHANNELWISE + (_LAYERS.GlobalAveragePooling2D,
                                       _LAYERS.GlobalMaxPooling2D)):
    return 0
  if isinstance(layer, _LAYERS.DepthwiseConv2D) and layer.depth_multiplier == 1:
    return 0
  return None


class _UnionFind:
  """Groups of channel spaces that must share one mask."""

  def __init__(self):
    self.parent = []

  def new(self):
    self.parent.append(len(self.parent))
    return len(self.parent) - 1

  def find(self, i):
    while self.parent[i] != i:
      self.parent[i] = self.parent[self.parent[i]]
      i = self.parent[i]
    return i

  def union(self, i, j):
    i, j = self.find(i), self.find(j)
    if i != j:
      self.parent[max(i, j)] = min(i, j)
    return min(i, j)


@dataclasses.dataclass
class Group:
  """Channels that are pruned together.

  Attributes:
    name: the first producer's layer name (or the reason it is fixed).
    width: number of channels.
    producers: layers whose output channels are this group's channels.
    fixed: why the group keeps every channel, or "".
  """
  name: str
  width: int
  producers: list = dataclasses.field(default_factory=list)
  fixed: str = ""


class ChannelGraph:
  """The channel groups of a functional Keras model.

  Attributes:
    groups: {group id: Group} after merging.
    layer_inputs: {layer name: tuple of group ids of its input channels, in
      order (a concatenation gives several)}.
    layer_outputs: {layer name: tuple of group ids of its output channels}.
  """

  def __init__(self, model):
    self._sets = _UnionFind()
    self._groups = {}
    self._space_of = {}  # id(KerasTensor) -> tuple of group ids
    self.layer_inputs = {}
    self.layer_outputs = {}
    self._walk(model)
    for tensor in model.outputs:
      for group in self._space(tensor):
        self._fix(group, "reaches a model output")
    self.groups = {}
    for group_id, group in self._groups.items():
      root = self._sets.find(group_id)
      merged = self.groups.setdefault(
          root, Group(self._groups[root].name, group.width))
      merged.producers.extend(group.producers)
      merged.fixed = merged.fixed or group.fixed
    self.layer_inputs = {name: tuple(self._sets.find(g) for g in space)
                         for name, space in self.layer_inputs.items()}
    self.layer_outputs = {name: tuple(self._sets.find(g) for g in space)
                          for name, space in self.layer_outputs.items()}

  # -- building ---------------------------------------------------------------

  def _new_group(self, name, width, producer=None, fixed=""):
    group_id = self._sets.new()
    self._groups[group_id] = Group(name, int(width),
                                   [producer] if producer else [], fixed)
    return (group_id,)

  def _fix(self, group_id, reason):
    group = self._groups[group_id]
    if not group.fixed:
      group.fixed = reason

  def _space(self, tensor):
    return self._space_of[id(tensor)]

  def _walk(self, model):
    for tensor in model.inputs:
      self._space_of[id(tensor)] = self._new_group(
          "input", tensor.shape[-1], fixed="the model input")
    for layer in model.layers:
      if isinstance(layer, _LAYERS.InputLayer):
        continue
      for node in layer.inbound_nodes:
        inputs = [t for t in node.keras_inputs if id(t) in self._space_of]
        if len(inputs) != len(node.keras_inputs):
          continue  # a node of another model sharing this layer
        outputs = node.outputs
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        spaces = [self._space(t) for t in inputs]
        out_space = self._layer_space(layer, spaces, outputs[0])
        self.layer_inputs[layer.name] = tuple(g for s in spaces for g in s)
        self.layer_outputs[layer.name] = out_space
        for tensor in outputs:
          self._space_of[id(tensor)] = out_space

  def _layer_space(self, layer, spaces, output):
    """The output channel space of `layer`; records producers and merges."""
    width = output.shape[-1]
    if _kernel_axes(layer) is not None:
      if getattr(layer, "groups", 1) != 1:
        return self._barrier(layer, spaces, width, "a grouped conv")
      return self._new_group(layer.name, width, producer=layer)
    if isinstance(layer, _MERGES):
      return self._merge(layer, spaces, width)
    if isinstance(layer, _LAYERS.Concatenate) and layer.axis in (-1, 3):
      return tuple(g for space in spaces for g in space)
    channel_input = _channelwise_input(layer)
    if channel_input is not None and channel_input < len(spaces):
      space = spaces[channel_input]
      if self._width(space) == width:
        return space
    return self._barrier(layer, spaces, width,
                         f"{type(layer).__name__} layer {layer.name}")

  def _width(self, space):
    return sum(self._groups[g].width for g in space)

  def _merge(self, layer, spaces, width):
    first = spaces[0]
    if all(len(s) == len(first) and all(
        self._groups[a].width == self._groups[b].width for a, b in zip(s, first))
           for s in spaces):
      for space in spaces[1:]:
        for a, b in zip(first, space):
          self._sets.union(a, b)
      return first
    return self._barrier(layer, spaces, width,
                         f"{layer.name} merges unequal channel layouts")

  def _barrier(self, layer, spaces, width, reason):
    """A layer the pruner cannot see through: fix its inputs and output."""
    for space in spaces:
      for group in space:
        self._fix(group, f"feeds {reason}")
    return self._new_group(layer.name, width, fixed=f"made by {reason}")

  # -- queries ----------------------------------------------------------------

  def group(self, group_id):
    return self.groups[self._sets.find(group_id)]

  def input_mask(self, layer_name, masks):
    """Concatenated keep-mask of a layer's input channels."""
    return np.concatenate([masks[g] for g in self.layer_inputs[layer_name]])

  def output_mask(self, layer_name, masks):
    return np.concatenate([masks[g] for g in self.layer_outputs[layer_name]])


def filter_norms(layer):
  """L1 norm of each output filter of a producer layer."""
  kernel = layer.get_weights()[0]
  _, out_axis = _kernel_axes(layer)
  axes = tuple(i for i in range(kernel.ndim) if i != out_axis)
  return np.abs(kernel).sum(axis=axes)


def group_scores(group):
  """Per-channel score of a group: the producers' L1 norms, mean-normalised."""
  total = np.zeros(group.width)
  for layer in group.producers:
    norms = filter_norms(layer)
    mean = norms.mean()
    total += norms / mean if mean > 0 else norms
  return total


def keep_mask(scores, keep):
  """Boolean mask of the `keep` highest scores (ties: lower index first)."""
  order = np.lexsort((np.arange(len(scores)), -scores))
  mask = np.zeros(len(scores), bool)
  mask[order[:keep]] = True
  return mask


def _output_width(layer):
  """Output channels of a layer, from its weights (producers only)."""
  kernel = layer.get_weights()[0]
  return kernel.shape[_kernel_axes(layer)[1]]


def plan(source_model, target_model):
  """Decides which channels each group keeps.

  Args:
    source_model: the functional Keras model with the weights to prune.
    target_model: the same architecture built with the new filter_scale
      (its widths say how many channels each group keeps).

  Returns:
    (graph, {group id: bool mask}, {group id: scores}).

  Raises:
    ValueError: a layer of the source is missing from the target, a group's
      convs disagree on the target width, or a fixed group would change.
  """
  graph = ChannelGraph(source_model)
  target_layers = {layer.name: layer for layer in target_model.layers}
  masks, scores = {}, {}
  for group_id, group in graph.groups.items():
    widths = {}
    for layer in group.producers:
      if layer.name not in target_layers:
        raise ValueError(f"layer {layer.name} of the checkpoint's model is not "
                         "in the model built with the new filter_scale")
      widths[layer.name] = _output_width(target_layers[layer.name])
    keep = set(widths.values()) or {group.width}
    if len(keep) != 1:
      raise ValueError(
          f"convs {', '.join(widths)} share their channels (they meet in an "
          f"add) but the new filter_scale gives them different widths: "
          f"{widths}")
    keep = keep.pop()
    if keep > group.width:
      raise ValueError(f"the new filter_scale widens {group.name} from "
                       f"{group.width} to {keep} channels; pruning only narrows")
    if keep < group.width and group.fixed:
      raise ValueError(
          f"{group.name} cannot be pruned ({group.fixed}) but the new "
          f"filter_scale gives it {keep} of {group.width} channels")
    scores[group_id] = (group_scores(group) if group.producers
                        else np.zeros(group.width))
    masks[group_id] = (keep_mask(scores[group_id], keep) if keep < group.width
                       else np.ones(group.width, bool))
  return graph, masks, scores


def _slice(array, axis, mask):
  return np.compress(mask, array, axis=axis)


def pruned_weights(layer, in_mask, out_mask):
  """The weights of `layer` restricted to the kept input / output channels."""
  weights = layer.get_weights()
  if not weights:
    return []
  if isinstance(layer, _LAYERS.BatchNormalization):
    return [_slice(w, 0, out_mask) for w in weights]
  if isinstance(layer, _LAYERS.DepthwiseConv2D):
    return [_slice(weights[0], 2, in_mask)] + [
        _slice(w, 0, out_mask) for w in weights[1:]]
  axes = _kernel_axes(layer)
  if axes is None:  # a layer the pruner does not see through: unchanged
    if not (in_mask.all() and out_mask.all()):
      raise ValueError(f"cannot prune the channels of {layer.name} "
                       f"({type(layer).__name__})")
    return weights
  in_axis, out_axis = axes
  kernel = _slice(_slice(weights[0], in_axis, in_mask), out_axis, out_mask)
  return [kernel] + [_slice(w, 0, out_mask) for w in weights[1:]]


def zeroed_weights(layer, out_mask):
  """The weights of `layer` with the pruned output channels set to zero.

  Zeroing a conv's filter and the gamma and beta of the batch norms after it
  makes the channel exactly 0 downstream, so the soft-pruned model computes
  what the hard-pruned one will.
  """
  weights = layer.get_weights()
  if not weights or out_mask.all():
    return weights
  drop = ~out_mask
  result = [w.copy() for w in weights]
  if isinstance(layer, _LAYERS.BatchNormalization):
    names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
    for i, name in enumerate(names):
      if name in ("gamma", "beta"):
        result[i][drop] = 0.0
    return result
  if isinstance(layer, _LAYERS.DepthwiseConv2D):
    result[0][:, :, drop, :] = 0.0
  else:
    _, out_axis = _kernel_axes(layer)
    index = [slice(None)] * result[0].ndim
    index[out_axis] = drop
    result[0][tuple(index)] = 0.0
  for extra in result[1:]:
    extra[drop] = 0.0
  return result


def apply(source_model, target_model, graph, masks, soft=False):
  """Copies the kept channels of every source layer into the target.

  Args:
    source_model: the model with the weights.
    target_model: the filter_scale model (hard pruning) or a model of the
      source's own widths (soft pruning).
    graph, masks: from `plan`.
    soft: zero the pruned channels instead of removing them.

  Returns:
    Rows {layer, type, in_before, in_after, out_before, out_after} for each
    layer with weights.

  Raises:
    ValueError: naming the first layer whose pruned shapes do not match
      the target model.
  """
  targets = {layer.name: layer for layer in target_model.layers}
  rows = []
  for layer in source_model.layers:
    if not layer.weights or layer.name not in graph.layer_outputs:
      continue
    in_mask = graph.input_mask(layer.name, masks)
    out_mask = graph.output_mask(layer.name, masks)
    if soft:
      new = zeroed_weights(layer, out_mask)
    else:
      new = pruned_weights(layer, in_mask, out_mask)
    target = targets.get(layer.name)
    if target is None:
      raise ValueError(f"layer {layer.name} is missing from the target model")
    expected = [tuple(w.shape) for w in target.weights]
    got = [tuple(w.shape) for w in new]
    if expected != got:
      raise ValueError(
          f"pruned {layer.name} has weight shapes {got} but the model with the "
          f"new filter_scale expects {expected}")
    target.set_weights(new)
    rows.append({"layer": layer.name, "type": type(layer).__name__,
                 "in_before": int(in_mask.size),
                 "in_after": int(in_mask.sum()),
                 "out_before": int(out_mask.size),
                 "out_after": int(out_mask.sum())})
  return rows


def group_table(graph, masks):
  """One row per prunable group: name, producers, channels before / after."""
  rows = []
  for group_id, group in sorted(graph.groups.items()):
    if not group.producers:
      continue
    rows.append({"group": group.name,
                 "convs": [layer.name for layer in group.producers],
                 "before": group.width,
                 "after": int(masks[group_id].sum()),
                 "fixed": group.fixed})
  return rows
