"""Builds a feature extractor from a `FeatureExtractor` proto."""

from fast_seg import feature_extractors
from fast_seg.protos import feature_extractor_pb2
from fast_seg.utils import config_util


def build(config, conv_hyperparams, field_path="feature_extractor"):
  """Instantiates the registered extractor named by `config.type`.

  Args:
    config: feature_extractor_pb2.FeatureExtractor.
    conv_hyperparams: hyperparams_builder.ConvHyperparams for its layers.
    field_path: where `config` sits in the pipeline, for error messages.

  Returns:
    A fast_seg.feature_extractors FeatureExtractor (layers not built yet).

  Raises:
    ValueError: unset or unknown type, or out-of-range values, naming the field.
  """
  config_util.check_type(config, feature_extractor_pb2.FeatureExtractor,
                         field_path)
  allowed = ", ".join(feature_extractors.registered_names())
  if not config.type:
    raise ValueError(f"{field_path}.type is not set; allowed: {allowed}")
  try:
    extractor_class = feature_extractors.get(config.type)
  except ValueError:
    raise ValueError(
        f"{field_path}.type: unknown '{config.type}'; allowed: {allowed}") from None
  if not 0.0 < config.filter_scale <= 1.0:
    raise ValueError(
        f"{field_path}.filter_scale must be in (0, 1], got {config.filter_scale}")
  try:
    return extractor_class(conv_hyperparams, filter_scale=config.filter_scale,
                           output_stride=config.output_stride)
  except ValueError as e:
    raise ValueError(f"{field_path}: {e}") from None
