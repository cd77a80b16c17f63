"""Memory-saving gradients: a training model run with its trunk recomputed.

`RecomputePlan` runs a tf_keras functional model node by node, as Keras
itself would, except that the nodes of each feature-extractor stage run
together inside `tf.recompute_grad`: only a stage's inputs and outputs are
kept for the backward pass, and its inner activations are computed again
when its gradient is needed (the TF1 project's train_mem_saving.py).

Outputs, gradients, layers, variable names and weights are those of the
plain model; batch-norm moving statistics are updated once per step.

This module leans on tf_keras internals, kept here so that nothing else does:
`Model._nodes_by_depth`, `Node.flat_input_ids` / `flat_output_ids` /
`map_arguments`, and the two BatchNormalization methods that assign the
moving averages (`_assign_moving_average`, `_assign_new_value`).
"""

import collections
import contextlib

import tensorflow as tf
import tf_keras as keras


class _Node:
  """One call of a layer in a functional model, as a step of a RecomputePlan.

  Steps read and write `values`, a dict from Keras tensor id (as in
  Node.flat_input_ids) to the computed tensor.
  """

  def __init__(self, node):
    self.node = node
    self.name = node.layer.name
    self.layers = [node.layer]
    self.input_ids = node.flat_input_ids
    self.output_ids = node.flat_output_ids

  def run(self, values, training):
    counts = collections.Counter(self.input_ids)
    args, kwargs = self.node.map_arguments(
        {i: [values[i]] * n for i, n in counts.items()})
    kwargs.setdefault("training", training)
    outputs = self.node.layer(*args, **kwargs)
    values.update(zip(self.output_ids, tf.nest.flatten(outputs)))


def _run_steps(steps, values, keep_ids, training):
  """Runs `steps` in order on `values`.

  Each value is dropped after its last reader unless it is in keep_ids, as
  Keras does, so eager runs do not hold every activation to the end.
  """
  reads = collections.Counter(i for step in steps for i in step.input_ids)
  for step in steps:
    step.run(values, training)
    for i in step.input_ids:
      reads[i] -= 1
      if reads[i] == 0 and i not in keep_ids:
        values.pop(i, None)


class _Segment:
  """Steps run as one unit in tf.recompute_grad: a feature-extractor stage."""

  def __init__(self, name, steps):
    self.name = name
    self.steps = steps
    # Filled in by RecomputePlan once every node has found its segment.
    self.input_ids = []
    self.output_ids = []

  @property
  def layers(self):
    return [layer for step in self.steps for layer in step.layers]

  def _forward(self, inputs, training):
    values = dict(zip(self.input_ids, inputs))
    _run_steps(self.steps, values, set(self.output_ids), training)
    return [values[i] for i in self.output_ids]

  def run(self, values, training):
    inputs = [values[i] for i in self.input_ids]
    if not (training and any(layer.trainable_weights for layer in self.layers)):
      # A frozen stage (freeze_backbone freezes the whole trunk, so no
      # gradient goes through it either): nothing to recompute.
      outputs = self._forward(inputs, training)
    else:
      outputs = self._recomputed(training)(*inputs)
    values.update(zip(self.output_ids, outputs))

  def _recomputed(self, training):
    calls = []

    def forward(*inputs):
      # tf.recompute_grad calls this once in the forward pass, then once
      # more per gradient: those calls must not move the batch-norm moving
      # averages again.
      recomputing = bool(calls)
      calls.append(recomputing)
      if not recomputing:
        return self._forward(inputs, training)
      with _moving_statistics_frozen(self.layers):
        return self._forward(inputs, training)

    return tf.recompute_grad(forward)


@contextlib.contextmanager
def _moving_statistics_frozen(layers):
  """Batch norms normalize by the batch but skip the moving-average updates.

  tf_keras makes every one of those assignments, fused or not, through the
  two methods replaced here.
  """
  def keep(variable, *unused_args):
    return variable
  batch_norms = [layer for layer in layers
                 if isinstance(layer, keras.layers.BatchNormalization)]
  for layer in batch_norms:
    # object.__setattr__: not through Keras' attribute tracking.
    object.__setattr__(layer, "_assign_moving_average", keep)
    object.__setattr__(layer, "_assign_new_value", keep)
  try:
    yield
  finally:
    for layer in batch_norms:
      object.__delattr__(layer, "_assign_moving_average")
      object.__delattr__(layer, "_assign_new_value")


def _nodes_in_call_order(keras_model):
  by_depth = keras_model._nodes_by_depth  # pylint: disable=protected-access
  return [_Node(node) for depth in sorted(by_depth, reverse=True)
          for node in by_depth[depth] if not node.is_input]


def _check_no_tfmot_wrappers(nodes, stage_of):
  wrapped = [node.name for node in nodes
             if isinstance(node.node.layer, keras.layers.Wrapper)
             and node.node.layer.layer.name in stage_of]
  if wrapped:
    raise ValueError(
        "memory saving recomputes the feature extractor, whose layers are "
        f"tfmot wrappers here ({', '.join(wrapped[:3])}, ...): their "
        "training state would be updated again by the recomputation; "
        "memory_saving cannot be combined with magnitude_pruning or "
        "quantization_aware_training")


class RecomputePlan:
  """Runs a training keras_model with its trunk stages as recomputed segments.

  The functional model's own nodes are called in its own order, except that
  the nodes of a stage (found by layer name, so a clone with the same names
  works too) run together, where the stage's first node would run.
  """

  def __init__(self, keras_model, stage_io):
    """Plans the run.

    Args:
      keras_model: a functional tf_keras model with a dict of outputs.
      stage_io: the feature extractor's StageIO list (layer names by stage).

    Raises:
      ValueError: the trunk's layers are tfmot wrappers, or a stage reads a
        tensor that the model computes after it.
    """
    self.model = keras_model
    nodes = _nodes_in_call_order(keras_model)
    stage_of = {name: stage.name for stage in stage_io
                for name in stage.layer_names}
    _check_no_tfmot_wrappers(nodes, stage_of)
    self.output_ids = {head: str(id(tensor))
                       for head, tensor in keras_model.output.items()}
    self.steps = self._group_by_stage(nodes, stage_of)
    self._connect_segments(nodes, stage_of)
    self._check_order()

  @staticmethod
  def _group_by_stage(nodes, stage_of):
    """Plain nodes stay steps; a stage's nodes become one _Segment step."""
    steps, segments = [], {}
    for node in nodes:
      stage = stage_of.get(node.name)
      if stage is None:
        steps.append(node)
      elif stage in segments:
        segments[stage].steps.append(node)
      else:
        segments[stage] = _Segment(stage, [node])
        steps.append(segments[stage])
    return steps

  def _connect_segments(self, nodes, stage_of):
    """A segment reads what it does not make, and returns what others read."""
    outside_readers = collections.defaultdict(set)
    for node in nodes:
      for i in node.input_ids:
        outside_readers[i].add(stage_of.get(node.name))
    model_outputs = set(self.output_ids.values())
    for segment in self.segments:
      made = {i for step in segment.steps for i in step.output_ids}
      segment.input_ids = list(dict.fromkeys(
          i for step in segment.steps for i in step.input_ids
          if i not in made))
      segment.output_ids = [
          i for step in segment.steps for i in step.output_ids
          if i in model_outputs or outside_readers[i] - {segment.name}]

  def _check_order(self):
    available = {str(id(tensor)) for tensor in self.model.inputs}
    for step in self.steps:
      if any(i not in available for i in step.input_ids):
        raise ValueError(
            f"memory saving: {step.name} reads a tensor computed after it; "
            "a stage of this model cannot run as one unit")
      available.update(step.output_ids)

  @property
  def segments(self):
    return [step for step in self.steps if isinstance(step, _Segment)]

  def run(self, inputs, training):
    """keras_model(inputs, training=training), with the stages recomputed."""
    model_input = self.model.inputs[0]
    inputs = tf.convert_to_tensor(inputs)
    if inputs.dtype != model_input.dtype and model_input.dtype.is_floating:
      inputs = tf.cast(inputs, model_input.dtype)
    values = {str(id(model_input)): inputs}
    _run_steps(self.steps, values, set(self.output_ids.values()), training)
    return {head: values[i] for head, i in self.output_ids.items()}
