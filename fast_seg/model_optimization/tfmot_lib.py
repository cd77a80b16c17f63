"""Magnitude pruning and quantization-aware training with tfmot.

`train_config.magnitude_pruning` and `train_config.quantization_aware_training`
wrap the layers of a built SegmentationModel with tfmot's wrappers
(prune_low_magnitude, quantize_apply) and keep what the rest of fast_seg
relies on:

- checkpoints key every layer by its own, unwrapped name
  (`model/<layer>/<weight>`), so eval.py, export.py and fine-tuning read a
  compressed run into the plain model by name, exactly as a dense run;
- the wrappers' own variables (pruning masks, thresholds and steps; quantizer
  ranges) are saved beside them as `compression/<layer>/<variable>`, so a run
  resumes where it stopped;
- the SegmentationModel interface (preprocess / predict / loss / postprocess)
  is unchanged; only its Keras models are swapped.

train_lib uses its own tf.function step, not model.fit, so the work of tfmot's
UpdatePruningStep callback is done here: `start` sets every wrapper's
pruning_step to the global step, and `apply_masks` zeroes the pruned weights
before a checkpoint or a summary. The wrappers' call itself (training=True)
advances pruning_step and updates the masks on schedule.

quantization.py annotates a model's layers for QAT; what an export reports of
the result (sparsity, gzip sizes) is fast_seg.export.size_report's.
"""

import copy

from absl import logging
import tensorflow as tf
import tf_keras as keras
import tensorflow_model_optimization as tfmot

from fast_seg.core import standard_fields as fields
from fast_seg.model_optimization import quantization
from fast_seg.protos import train_pb2
from fast_seg.utils import checkpoint_util

MAGNITUDE_PRUNING = "magnitude_pruning"
QUANTIZATION_AWARE_TRAINING = "quantization_aware_training"
TECHNIQUES = (MAGNITUDE_PRUNING, QUANTIZATION_AWARE_TRAINING)
# Checkpoint key of the wrappers' own variables, beside checkpoint_util.MODEL_KEY.
STATE_KEY = "compression"


# -- config -----------------------------------------------------------------


def configured_technique(train_config):
  """The compression set in `train_config` (a TECHNIQUES name) or None.

  Raises:
    ValueError: both are set (sparsity-preserving QAT is not supported).
  """
  chosen = [name for name in TECHNIQUES if train_config.HasField(name)]
  if len(chosen) > 1:
    raise ValueError(
        "train_config.magnitude_pruning and "
        "train_config.quantization_aware_training cannot be set together: "
        "quantization-aware training would not keep the pruned weights at "
        "zero. Set one of them.")
  return chosen[0] if chosen else None


def _last_mask_update(config, num_steps):
  """The schedule's effective end step; ValueError naming a bad field."""
  field = "train_config.magnitude_pruning"
  for name in ("initial_sparsity", "final_sparsity"):
    value = getattr(config, name)
    if not 0.0 <= value < 1.0:
      raise ValueError(f"{field}.{name} must be in [0, 1), got {value}")
  if config.initial_sparsity > config.final_sparsity:
    raise ValueError(
        f"{field}.initial_sparsity ({config.initial_sparsity}) must be <= "
        f"final_sparsity ({config.final_sparsity})")
  if config.frequency < 1:
    raise ValueError(f"{field}.frequency must be >= 1, got {config.frequency}")
  if config.begin_step < 0:
    raise ValueError(f"{field}.begin_step must be >= 0, got {config.begin_step}")
  if config.power <= 0:
    raise ValueError(f"{field}.power must be > 0, got {config.power}")
  if config.end_step < 0:
    raise ValueError(f"{field}.end_step must be >= 0 (0: num_steps), got "
                     f"{config.end_step}")
  end = config.end_step or num_steps
  source = "end_step" if config.end_step else "end_step (0: num_steps)"
  if end <= config.begin_step:
    raise ValueError(f"{field}.{source} ({end}) must be > begin_step "
                     f"({config.begin_step})")
  span = (end - config.begin_step) // config.frequency * config.frequency
  if span == 0:
    raise ValueError(
        f"{field}.frequency ({config.frequency}) is longer than the schedule "
        f"from begin_step {config.begin_step} to {source} {end}: no mask "
        "update would reach final_sparsity")
  return config.begin_step + span


def pruning_schedule(config, num_steps):
  """tfmot PolynomialDecay for a MagnitudePruning config.

  end_step (0: num_steps) is rounded down to the last mask update,
  begin_step + k * frequency, so that final_sparsity is applied by a mask
  update; tfmot only updates masks on those steps.

  Raises:
    ValueError: naming the field, for values tfmot would reject or a
      schedule that would never reach final_sparsity.
  """
  last_update = _last_mask_update(config, num_steps)
  end = config.end_step or num_steps
  if last_update != end:
    logging.info("magnitude_pruning: final_sparsity %.3f at step %d, the last "
                 "mask update before end_step %d", config.final_sparsity,
                 last_update, end)
  if end > num_steps:
    logging.warning("magnitude_pruning: end_step %d is after num_steps %d; "
                    "this run ends before final_sparsity", end, num_steps)
  return tfmot.sparsity.keras.PolynomialDecay(
      initial_sparsity=config.initial_sparsity,
      final_sparsity=config.final_sparsity, begin_step=config.begin_step,
      end_step=last_update, power=config.power, frequency=config.frequency)


def validate(train_config):
  """Checks the compression fields; returns configured_technique()."""
  technique = configured_technique(train_config)
  if technique == MAGNITUDE_PRUNING:
    _last_mask_update(train_config.magnitude_pruning, train_config.num_steps)
  if (technique == QUANTIZATION_AWARE_TRAINING
      and train_config.precision != train_pb2.TrainConfig.FLOAT32):
    # tfmot's fake-quant ops are float32 only.
    name = train_pb2.TrainConfig.Precision.Name(train_config.precision)
    raise ValueError("train_config.quantization_aware_training does not "
                     f"support train_config.precision: {name}; use FLOAT32")
  return technique


# -- the wrapped model ------------------------------------------------------


def _unique_short_names(variables):
  """{'kernel_min': var, ...} from variable names such as 'quant_x/kernel_min:0'."""
  named = {}
  for variable in variables:
    name = variable.name.split("/")[-1].split(":")[0]
    unique, i = name, 1
    while unique in named:
      unique, i = f"{name}_{i}", i + 1
    named[unique] = variable
  return named


def _no_state_error(path, technique):
  return ValueError(
      f"checkpoint {path} has no {technique} state ({STATE_KEY}/...): it was "
      f"not trained with train_config.{technique}. Train (or resume) with it "
      "first, or export with a config without it.")


def check_state(checkpoint_path, technique):
  """Raises ValueError unless the checkpoint holds tfmot wrapper state.

  A quick check before building a wrapped model; Compression.restore checks
  that the state is this technique's.
  """
  path = checkpoint_util.resolve_checkpoint(checkpoint_path)
  names = checkpoint_util.open_reader(path).get_variable_to_shape_map()
  if not any(name.startswith(STATE_KEY + "/") for name in names):
    raise _no_state_error(path, technique)


def _assign(reader, found, missing, problem, path):
  """Assigns every found variable its value in checkpoint `path`, or names
  the missing."""
  if missing:
    raise ValueError(
        f"{problem} ({len(missing)} missing or mismatched: "
        f"{', '.join(missing[:10])}{' ...' if len(missing) > 10 else ''})")
  with checkpoint_util.reading(path):
    for variable, key in found:
      variable.assign(reader.get_tensor(key))


def _is_pruning_wrapper(layer):
  return isinstance(layer, keras.layers.Wrapper) and hasattr(layer, "pruning_vars")


class Compression:
  """A SegmentationModel trained through tfmot wrappers, beside its float model.

  Attributes:
    technique: a TECHNIQUES name.
    float_model: the SegmentationModel as built. ImageNet and fine-tune
      weights load into it; load_float_weights() then copies them over.
      Pruning shares its layers (same variables); quantization copies them.
    model: a shallow copy of float_model whose keras_model (training, aux
      heads) and inference_model (main head) are the wrapped ones.
    layers: {float layer name: layer} of the wrapped model, unwrapped.
    wrappers: {float layer name: tfmot wrapper}.
    variables: {float layer name: {weight name: variable}}: the float
      model's weights in the wrapped model, what checkpoints hold under
      `model/<layer>/<weight>`.
    state: {layer name: {variable name: variable}}: everything else the
      wrapped model has (masks, thresholds, pruning steps, quantizer
      ranges), under `compression/<layer>/<variable>`.
  """

  def __init__(self, technique, float_model, keras_model, inference_model):
    self.technique = technique
    self.float_model = float_model
    self.model = copy.copy(float_model)
    self.model.keras_model = keras_model
    self.model.inference_model = inference_model
    self.layers, self.wrappers, self.variables, self.state = {}, {}, {}, {}
    float_layers = {layer.name: layer for layer in float_model.keras_model.layers}
    added = 0
    for layer in keras_model.layers:
      inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
      float_layer = float_layers.get(inner.name)
      if float_layer is None:  # e.g. tfmot's QuantizeLayer on the input
        if layer.weights:
          # Keras numbers auto-named layers per process (quantize_layer_1):
          # keyed by class and order instead, variables without the name.
          self.state[f"{type(layer).__name__}_{added}"] = {
              name.removeprefix(layer.name + "_"): variable for name, variable
              in _unique_short_names(layer.weights).items()}
          added += 1
        continue
      self.layers[inner.name] = inner
      if inner is not layer:
        self.wrappers[inner.name] = layer
      # Matched by weight name, not through the inner layer: a quantize
      # wrapper replaces its layer's kernel attribute by the fake-quantized
      # tensor, which drops the kernel from that layer's weights.
      own = _unique_short_names(layer.weights)
      names = list(_unique_short_names(float_layer.weights))
      missing = [name for name in names if name not in own]
      if missing:
        raise ValueError(f"{technique}: {inner.name} lost weights {missing}")
      if names:
        self.variables[inner.name] = {name: own.pop(name) for name in names}
      if own:
        self.state[inner.name] = own

  def make_checkpoint(self, with_state=True, **extra):
    """tf.train.Checkpoint of `model/<layer>/<weight>` (the keys of a dense
    run), `compression/<layer>/<variable>` unless not with_state, and
    `extra` (step, optimizer)."""
    def tracker(groups):
      return tf.train.Checkpoint(**{
          name: tf.train.Checkpoint(**variables)
          for name, variables in groups.items()})
    items = {checkpoint_util.MODEL_KEY: tracker(self.variables)}
    if with_state:
      items[STATE_KEY] = tracker(self.state)
    return tf.train.Checkpoint(**items, **extra)

  def _restore_group(self, reader, root, groups):
    """[(variable, key)] found, [names] missing or mismatched."""
    shapes = reader.get_variable_to_shape_map()
    found, missing = [], []
    for layer_name, variables in groups.items():
      for name, variable in variables.items():
        key = f"{root}/{layer_name}/{name}/.ATTRIBUTES/VARIABLE_VALUE"
        if key in shapes and tuple(shapes[key]) == tuple(variable.shape):
          found.append((variable, key))
        else:
          missing.append(f"{layer_name}/{name}")
    return found, missing

  def restore_state(self, checkpoint_path):
    """Restores the wrappers' state from a checkpoint, when it has it.

    Returns:
      True if restored; False if the checkpoint holds none of this
      technique's state (a float run, or the other technique's run): the
      wrappers then start fresh, e.g. pruning or QAT from a trained model.

    Raises:
      ValueError: the checkpoint holds only part of the state.
    """
    path = checkpoint_util.resolve_checkpoint(checkpoint_path)
    reader = checkpoint_util.open_reader(path)
    found, missing = self._restore_group(reader, STATE_KEY, self.state)
    if not found:
      return False
    _assign(reader, found, missing, f"checkpoint {path} holds {self.technique} "
            "state that does not fit the model", path)
    return True

  def restore(self, checkpoint_path):
    """Restores weights by layer name and the wrappers' state (for export).

    Raises:
      ValueError: a weight is missing, or the checkpoint was not trained
        with this technique.
    """
    path = checkpoint_util.resolve_checkpoint(checkpoint_path)
    reader = checkpoint_util.open_reader(path)
    found, missing = self._restore_group(reader, checkpoint_util.MODEL_KEY,
                                         self.variables)
    _assign(reader, found, missing,
            f"checkpoint {path} does not fit the model", path)
    if not self.restore_state(path):
      raise _no_state_error(path, self.technique)

  def load_float_weights(self):
    """Copies float_model's weights into the wrapped model, by name.

    Needed after ImageNet or fine-tune weights were loaded into float_model;
    a no-op for pruning, whose wrappers hold the float layers themselves.
    """
    for layer in self.float_model.keras_model.layers:
      targets = self.variables.get(layer.name, {})
      for name, source in _unique_short_names(layer.weights).items():
        if targets[name] is not source:
          targets[name].assign(source)

  def in_float_order(self, variables):
    """`variables` of the wrapped model, ordered as their float counterparts.

    The optimizer checkpoints its slots by position in its variable list, so
    a compressed run resumed from a float run's checkpoint (or back) needs
    the float model's order; others keep their order, at the end.
    """
    order = {id(w): i for i, w in enumerate(self.float_model.keras_model.weights)}
    rank = {}
    for layer in self.float_model.keras_model.layers:
      wrapped = self.variables.get(layer.name, {})
      for name, weight in _unique_short_names(layer.weights).items():
        rank[id(wrapped[name])] = order[id(weight)]
    return sorted(variables, key=lambda v: rank.get(id(v), len(order)))

  def counterparts(self, float_layers):
    """The wrapped model's (unwrapped) layers named as `float_layers`."""
    return [self.layers[layer.name] for layer in float_layers
            if layer.name in self.layers]

  def weights_of(self, float_layers):
    """The wrapped model's variables of the layers named as `float_layers`."""
    return [variable for layer in float_layers
            for variable in self.variables.get(layer.name, {}).values()]

  # Pruning: what tfmot's UpdatePruningStep callback does in model.fit.

  def _pruning_wrappers(self):
    return [w for w in self.wrappers.values() if _is_pruning_wrapper(w)]

  def start(self, step):
    """Sets every pruning wrapper's step to the global step.

    Each training call then advances it by one and updates the masks when
    the schedule says so, so begin_step / end_step count global steps, also
    after a resume or when pruning starts on a trained run.
    """
    for wrapper in self._pruning_wrappers():
      wrapper.pruning_step.assign(step)

  def apply_masks(self):
    """weights *= mask: the optimizer moves pruned weights between the
    wrapper's per-step masking; checkpoints must hold them as zeros."""
    for wrapper in self._pruning_wrappers():
      for weight, mask, _ in wrapper.pruning_vars:
        weight.assign(weight * tf.cast(mask, weight.dtype))

  def mask_sparsity(self):
    """Fraction of pruned weights over all pruned kernels (None: no pruning)."""
    total = kept = 0.0
    for wrapper in self._pruning_wrappers():
      for _, mask, _ in wrapper.pruning_vars:
        values = mask.numpy()
        total += values.size
        kept += float(values.sum())
    return 1.0 - kept / total if total else None


def apply(model, train_config):
  """Wraps `model` for the compression set in `train_config`.

  Call under the training strategy's scope and dtype policy: the wrappers
  create variables.

  Args:
    model: a built SegmentationModel (left intact; see Compression).
    train_config: train_pb2.TrainConfig.

  Returns:
    A Compression, or None when train_config sets no compression.
  """
  technique = validate(train_config)
  if technique is None:
    return None
  if technique == MAGNITUDE_PRUNING:
    config = train_config.magnitude_pruning
    schedule = pruning_schedule(config, train_config.num_steps)
    skipped = set() if config.prune_classifiers else model.classifier_layer_names

    def wrap(layer):
      # DepthwiseConv2D is not a Conv2D here, and tfmot has no prunable
      # weights for it.
      if isinstance(layer, keras.layers.Conv2D) and layer.name not in skipped:
        return tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=schedule)
      return layer

    keras_model = keras.models.clone_model(model.keras_model,
                                           clone_function=wrap)
    # The float inference model shares the wrapped kernels; apply_masks()
    # makes it see the pruned weights.
    inference_model = model.inference_model
  else:
    keras_model = quantization.quantize_model(model.keras_model)
    main = fields.PredictionFields.logits
    inference_model = keras.Model(keras_model.input, keras_model.output[main],
                                  name=model.inference_model.name)
  compression = Compression(technique, model, keras_model, inference_model)
  logging.info("%s: %d layers wrapped", technique, len(compression.wrappers))
  return compression
