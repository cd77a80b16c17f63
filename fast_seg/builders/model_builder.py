"""Builds a SegmentationModel from a `Model` proto (dispatch on its oneof)."""

from fast_seg.builders import feature_extractor_builder
from fast_seg.builders import hyperparams_builder
from fast_seg.builders import losses_builder
from fast_seg.core import standard_fields as fields
from fast_seg.meta_architectures import icnet
from fast_seg.meta_architectures import pspnet
from fast_seg.protos import model_pb2
from fast_seg.utils import config_util

# oneof field -> (class, default aux loss weights, default pyramid bins).
_META_ARCHITECTURES = {
    "icnet": (icnet.ICNet, icnet.DEFAULT_AUX_WEIGHTS,
              icnet.DEFAULT_PYRAMID_BINS),
    "pspnet": (pspnet.PSPNet, pspnet.DEFAULT_AUX_WEIGHTS,
               pspnet.DEFAULT_PYRAMID_BINS),
}


def build(config):
  """Builds the model named by the `model` oneof.

  Args:
    config: model_pb2.Model.

  Returns:
    A fast_seg.core.model.SegmentationModel with its Keras models built.

  Raises:
    ValueError: empty oneof or a bad value, naming the field.
  """
  config_util.check_type(config, model_pb2.Model, "model")
  which = config_util.require_oneof(config, "model", "model")
  arch = getattr(config, which)
  path = f"model.{which}"
  model_class, default_aux_weights, default_bins = _META_ARCHITECTURES[which]
  if not arch.HasField("num_classes") or arch.num_classes < 1:
    raise ValueError(f"{path}.num_classes must be set to a value >= 1")
  if not arch.HasField("feature_extractor"):
    raise ValueError(f"{path}.feature_extractor is not set")
  if which == "icnet" and arch.feature_extractor.output_stride != icnet.TRUNK_SPLIT_STRIDE:
    raise ValueError(
        f"{path}.feature_extractor.output_stride must be "
        f"{icnet.TRUNK_SPLIT_STRIDE} for ICNet (its trunk is split at stride 8 "
        f"of the half-resolution input), got {arch.feature_extractor.output_stride}")
  bins = list(arch.pyramid_bins) or list(default_bins)
  if any(b < 1 for b in bins):
    raise ValueError(f"{path}.pyramid_bins must all be >= 1, got {bins}")
  conv_hyperparams = hyperparams_builder.build(arch.hyperparams)
  extractor = feature_extractor_builder.build(
      arch.feature_extractor, conv_hyperparams, f"{path}.feature_extractor")
  loss = losses_builder.build(
      arch.loss, arch.num_classes, arch.ignore_label,
      fields.PredictionFields.logits, default_aux_weights, f"{path}.loss")
  return model_class(arch.num_classes, arch.ignore_label, extractor,
                     conv_hyperparams, loss, pyramid_bins=bins)
