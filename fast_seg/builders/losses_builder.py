"""Builds the weighted multi-head segmentation loss from a `Loss` proto."""

import collections
import functools

from absl import logging

from fast_seg.core import losses
from fast_seg.core import model
from fast_seg.core import registry
from fast_seg.protos import losses_pb2
from fast_seg.utils import config_util

AUX_TARGET = model.AUX_TARGET

PixelLoss = collections.namedtuple(
    "PixelLoss", ["build", "multi_class", "binary"])
PixelLoss.__doc__ = """How one Loss.classification_loss oneof field is built.

build(params, path, binary) checks the field's message (`path` names it in
errors) and returns a function with the signature of
core/losses.softmax_cross_entropy: (logits, labels, ignore_label,
class_weights=None, upsample_logits=False) -> float scalar.
multi_class / binary: the models the loss fits.
"""

# Loss.classification_loss oneof name -> PixelLoss, in the proto's order.
PIXEL_LOSSES = registry.Registry("loss.classification_loss")


def register_pixel_loss(name, multi_class=True, binary=True):
  """Decorator: `name` (a field of the classification_loss oneof) is built
  by the decorated build(params, path, binary).

  A new loss is its function here plus its message in that oneof of
  protos/losses.proto. Raises ValueError if `name` is taken.
  """

  def register(build_function):
    PIXEL_LOSSES.add(name, PixelLoss(build_function, multi_class, binary))
    return build_function

  return register


@register_pixel_loss("softmax_cross_entropy", binary=False)
def _cross_entropy(params, path, binary):
  del params, path, binary  # no settings; binary models use one logit
  return losses.softmax_cross_entropy


register_pixel_loss("binary_cross_entropy", multi_class=False)(_cross_entropy)


@register_pixel_loss("focal_loss")
def _focal(params, path, binary):
  if params.gamma < 0:
    raise ValueError(f"{path}.gamma must be >= 0, got {params.gamma}")
  if not 0.0 <= params.alpha < 1.0:
    raise ValueError(f"{path}.alpha must be in [0, 1), got {params.alpha}")
  if params.alpha > 0 and not binary:
    raise ValueError(f"{path}.alpha applies to binary models only; use "
                     f"{path.rsplit('.', 1)[0]}.class_weights for a "
                     "multi-class model")
  return functools.partial(losses.focal_loss, gamma=params.gamma,
                           alpha=params.alpha)


@register_pixel_loss("ohem_cross_entropy")
def _ohem(params, path, binary):
  del binary
  if not 0.0 < params.threshold <= 1.0:
    raise ValueError(
        f"{path}.threshold must be in (0, 1], got {params.threshold}")
  if params.min_kept < 0:
    raise ValueError(f"{path}.min_kept must be >= 0, got {params.min_kept}")
  return functools.partial(losses.ohem_cross_entropy,
                           threshold=params.threshold,
                           min_kept=params.min_kept)


@register_pixel_loss("bootstrapped_cross_entropy")
def _bootstrapped(params, path, binary):
  del binary
  if not 0.0 < params.top_k_fraction <= 1.0:
    raise ValueError(f"{path}.top_k_fraction must be in (0, 1], got "
                     f"{params.top_k_fraction}")
  return functools.partial(losses.bootstrapped_cross_entropy,
                           top_k_fraction=params.top_k_fraction)


@register_pixel_loss("dice_loss")
def _dice(params, path, binary):
  del binary
  if params.smooth < 0:
    raise ValueError(f"{path}.smooth must be >= 0, got {params.smooth}")
  return functools.partial(losses.dice_loss, smooth=params.smooth)


class SegmentationLoss:
  """Weighted sum over heads of a pixel loss, plus an optional aux target.

  Attributes:
    head_weights: dict head name -> weight, main head first; the auxiliary
      target head (if any) last.
    binary: whether the heads have one sigmoid channel.
    class_weights: per-class weights or None; set_class_weights replaces them
      (train.py does for MEDIAN_FREQUENCY and ENET).
    class_weighting: the ClassWeighting enum value of the config.
  """

  def __init__(self, pixel_loss, ignore_label, head_weights, binary=False,
               foreground_class_ids=(), dice_weight=0.0, dice_smooth=1.0,
               aux_target_class_ids=None, class_weights=None,
               class_weighting=losses_pb2.Loss.UNIFORM, upsample_logits=False):
    self._pixel_loss = pixel_loss
    self.ignore_label = ignore_label
    self.head_weights = head_weights
    self.binary = binary
    self.foreground_class_ids = tuple(foreground_class_ids)
    self.dice_weight = dice_weight
    self.dice_smooth = dice_smooth
    self.aux_target_class_ids = aux_target_class_ids
    self.class_weights = class_weights
    self.class_weighting = class_weighting
    self.upsample_logits = upsample_logits

  def set_class_weights(self, class_weights):
    """Replaces the class weights (before the training step is traced)."""
    self.class_weights = [float(w) for w in class_weights]

  def targets(self, labels):
    """Labels as the heads see them: 0 / 1 / ignore for a binary model."""
    if not self.binary:
      return labels
    return losses.binary_targets(labels, self.foreground_class_ids,
                                 self.ignore_label)

  def _head_loss(self, logits, labels, class_weights, pixel_loss):
    loss = pixel_loss(logits, labels, self.ignore_label,
                      class_weights=class_weights,
                      upsample_logits=self.upsample_logits)
    if self.dice_weight > 0:
      loss += self.dice_weight * losses.dice_loss(
          logits, labels, self.ignore_label, smooth=self.dice_smooth,
          class_weights=class_weights, upsample_logits=self.upsample_logits)
    return loss

  def __call__(self, prediction_dict, labels):
    """Returns {'<head>_loss': weight * loss} for every head in head_weights.

    Args:
      prediction_dict: head name -> logits [N, h, w, C] (1 channel if binary).
      labels: int32 [N, H, W, 1] dataset class ids.
    """
    targets = self.targets(labels)
    result = {}
    for head, weight in self.head_weights.items():
      if head == AUX_TARGET:
        mask = losses.binary_targets(labels, self.aux_target_class_ids,
                                     self.ignore_label)
        loss = self._head_loss(prediction_dict[head], mask, None,
                               losses.binary_cross_entropy)
      else:
        loss = self._head_loss(prediction_dict[head], targets,
                               self.class_weights, self._pixel_loss)
      result[f"{head}_loss"] = weight * loss
    return result


def _pixel_loss(config, field_path, binary):
  """The oneof's loss function with its parameters bound, after checks."""
  which = config_util.require_oneof(config, "classification_loss", field_path)
  allowed = [name for name, entry in PIXEL_LOSSES.items()
             if (entry.binary if binary else entry.multi_class)]
  if which not in allowed:
    kind = "binary (binary_output is set)" if binary else "multi-class"
    raise ValueError(
        f"{field_path}.{which} does not apply to a {kind} model; allowed: "
        f"{', '.join(allowed)}")
  return PIXEL_LOSSES.get(which).build(getattr(config, which),
                                       f"{field_path}.{which}", binary)


def build(config, num_classes, ignore_label, main_head, default_aux_weights,
          field_path="model.loss", binary_output=None):
  """Builds a SegmentationLoss.

  Args:
    config: losses_pb2.Loss.
    num_classes: number of dataset classes.
    ignore_label: label excluded from the loss.
    main_head: name of the main head in the prediction dict.
    default_aux_weights: dict aux head name -> weight, in the order that
      `aux_weights` lists them; used when `aux_weights` is empty.
    field_path: where `config` sits in the pipeline, for error messages.
    binary_output: model_pb2.BinaryOutput of a binary model, else None.

  Returns:
    SegmentationLoss whose head_weights hold only heads with weight > 0.

  Raises:
    ValueError: empty oneof, a loss that does not fit the model, or a bad
      value, naming the field.
  """
  config_util.check_type(config, losses_pb2.Loss, field_path)
  binary = binary_output is not None
  pixel_loss = _pixel_loss(config, field_path, binary)
  class_weights = _class_weights(config, num_classes, binary, field_path)
  head_weights = {main_head: config.main_weight}
  head_weights.update(_aux_head_weights(config, default_aux_weights,
                                        field_path))
  if config.dice_weight < 0:
    raise ValueError(
        f"{field_path}.dice_weight must be >= 0, got {config.dice_weight}")
  aux_target_ids = None
  if config.HasField("auxiliary_target"):
    aux_target_ids = _aux_target_ids(config.auxiliary_target, num_classes,
                                     f"{field_path}.auxiliary_target")
    head_weights[AUX_TARGET] = config.auxiliary_target.weight
  foreground = (model.BinaryOutput.from_proto(binary_output).foreground_ids(
      num_classes) if binary else ())
  dice_smooth = (config.dice_loss.smooth if config.HasField("dice_loss")
                 else losses_pb2.DiceLoss().smooth)
  return SegmentationLoss(
      pixel_loss, ignore_label, head_weights, binary=binary,
      foreground_class_ids=foreground, dice_weight=config.dice_weight,
      dice_smooth=dice_smooth, aux_target_class_ids=aux_target_ids,
      class_weights=class_weights or None,
      class_weighting=config.class_weighting,
      upsample_logits=config.upsample_logits)


def _class_weights(config, num_classes, binary, field_path):
  """Loss.class_weights checked against the model's output classes."""
  class_weights = list(config.class_weights)
  num_weights = 2 if binary else num_classes
  if class_weights and len(class_weights) != num_weights:
    what = ("a binary model takes [background, foreground]" if binary
            else f"num_classes is {num_classes}")
    raise ValueError(
        f"{field_path}.class_weights has {len(class_weights)} values; {what}")
  if any(w < 0 for w in class_weights):
    raise ValueError(f"{field_path}.class_weights must be >= 0")
  _check_enet_constant(config, field_path)
  if class_weights and config.class_weighting != losses_pb2.Loss.UNIFORM:
    # train.py fills class_weights in for class_weighting and saves them
    # with the run, so a resumed run, eval and export use the same numbers.
    weighting = losses_pb2.Loss.ClassWeighting.Name(config.class_weighting)
    log_class_weights_once(class_weights, lambda text: (
        f"{field_path}: using class_weights {text} (class_weighting "
        f"{weighting} computes them only when class_weights is empty)"))
  return class_weights


# The class weights this process has logged, as they read. compress.py
# builds a model from one config for every sensitivity row and search step
# (25 identical lines in one run), and train.py logs the weights it
# computes, then builds its model with them.
_LOGGED_CLASS_WEIGHTS = set()


def log_class_weights_once(class_weights, describe):
  """Logs describe(weights as text), the first time these weights are
  logged in this process."""
  text = ", ".join(f"{w:.3f}" for w in class_weights)
  if text not in _LOGGED_CLASS_WEIGHTS:
    _LOGGED_CLASS_WEIGHTS.add(text)
    logging.info("%s", describe(text))


# Its line names the file and line that called it (run_settings.py when
# train.py computes the weights), not this function's.
logging.ABSLLogger.register_frame_to_skip(__file__, "log_class_weights_once")


def _check_enet_constant(config, field_path):
  """enet_weighting_constant: > 1, and set only where ENET reads it."""
  field = f"{field_path}.enet_weighting_constant"
  if config.class_weighting != losses_pb2.Loss.ENET:
    if config.HasField("enet_weighting_constant"):
      raise ValueError(
          f"{field} applies to class_weighting ENET only; this loss has "
          f"class_weighting "
          f"{losses_pb2.Loss.ClassWeighting.Name(config.class_weighting)}")
    return
  if config.enet_weighting_constant <= 1.0:
    raise ValueError(f"{field} must be > 1 (weights 1 / ln(c + p_c)), got "
                     f"{config.enet_weighting_constant:g}")


def _aux_head_weights(config, default_aux_weights, field_path):
  """Auxiliary head name -> weight, for the heads with a weight > 0."""
  aux_names = list(default_aux_weights)
  aux_weights = list(config.aux_weights) or list(default_aux_weights.values())
  if len(aux_weights) != len(aux_names):
    heads = ", ".join(aux_names) or "none"
    raise ValueError(
        f"{field_path}.aux_weights has {len(aux_weights)} values; this model "
        f"has {len(aux_names)} auxiliary heads ({heads})")
  if config.main_weight <= 0 or any(w < 0 for w in aux_weights):
    raise ValueError(
        f"{field_path}: main_weight must be > 0 and aux_weights >= 0")
  return {name: w for name, w in zip(aux_names, aux_weights) if w > 0}


def _aux_target_ids(target, num_classes, path):
  """The class ids of Loss.auxiliary_target, checked."""
  ids = tuple(target.class_ids)
  if not ids:
    raise ValueError(f"{path}.class_ids must list at least one class id")
  bad = [i for i in ids if not 0 <= i < num_classes]
  if bad:
    raise ValueError(f"{path}.class_ids {bad} are not class ids "
                     f"(0..{num_classes - 1})")
  if target.weight <= 0:
    raise ValueError(f"{path}.weight must be > 0, got {target.weight}")
  return ids
