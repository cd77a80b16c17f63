"""Builds the weighted multi-head segmentation loss from a `Loss` proto."""

from fast_seg.core import losses
from fast_seg.protos import losses_pb2
from fast_seg.utils import config_util


class SegmentationLoss:
  """Weighted sum over heads of a pixel-wise classification loss.

  Attributes:
    head_weights: dict head name -> weight, main head first.
  """

  def __init__(self, ignore_label, class_weights, upsample_logits, head_weights):
    self.ignore_label = ignore_label
    self.class_weights = class_weights
    self.upsample_logits = upsample_logits
    self.head_weights = head_weights

  def __call__(self, prediction_dict, labels):
    """Returns {'<head>_loss': weight * loss} for every head in head_weights.

    Args:
      prediction_dict: head name -> logits [N, h, w, C].
      labels: int32 [N, H, W, 1].
    """
    return {
        f"{head}_loss": weight * losses.softmax_cross_entropy(
            prediction_dict[head], labels, self.ignore_label,
            self.class_weights, self.upsample_logits)
        for head, weight in self.head_weights.items()
    }


def build(config, num_classes, ignore_label, main_head, default_aux_weights,
          field_path="model.loss"):
  """Builds a SegmentationLoss.

  Args:
    config: losses_pb2.Loss.
    num_classes: number of classes (class_weights must match it).
    ignore_label: label excluded from the loss.
    main_head: name of the main head in the prediction dict.
    default_aux_weights: dict aux head name -> weight, in the order that
      `aux_weights` lists them; used when `aux_weights` is empty.
    field_path: where `config` sits in the pipeline, for error messages.

  Returns:
    SegmentationLoss whose head_weights hold only heads with weight > 0.

  Raises:
    ValueError: empty oneof, or a class_weights / aux_weights list of the wrong
      length, naming the field.
  """
  config_util.check_type(config, losses_pb2.Loss, field_path)
  config_util.require_oneof(config, "classification_loss", field_path)
  class_weights = list(config.class_weights)
  if class_weights and len(class_weights) != num_classes:
    raise ValueError(
        f"{field_path}.class_weights has {len(class_weights)} values; "
        f"num_classes is {num_classes}")
  if any(w < 0 for w in class_weights):
    raise ValueError(f"{field_path}.class_weights must be >= 0")
  aux_names = list(default_aux_weights)
  aux_weights = list(config.aux_weights) or list(default_aux_weights.values())
  if len(aux_weights) != len(aux_names):
    raise ValueError(
        f"{field_path}.aux_weights has {len(aux_weights)} values; this model "
        f"has {len(aux_names)} auxiliary heads ({', '.join(aux_names)})")
  if config.main_weight <= 0 or any(w < 0 for w in aux_weights):
    raise ValueError(
        f"{field_path}: main_weight must be > 0 and aux_weights >= 0")
  head_weights = {main_head: config.main_weight}
  head_weights.update(
      (name, w) for name, w in zip(aux_names, aux_weights) if w > 0)
  return SegmentationLoss(ignore_label, class_weights or None,
                          config.upsample_logits, head_weights)
