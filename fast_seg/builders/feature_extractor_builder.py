"""Builds a feature extractor from a `FeatureExtractor` proto."""

from fast_seg import feature_extractors
from fast_seg.protos import feature_extractor_pb2
from fast_seg.utils import config_util

# Extractor errors name their field from here; the builder re-roots them.
_OWN_PATH = "feature_extractor."


def build(config, conv_hyperparams, field_path="feature_extractor"):
  """Instantiates the registered extractor named by `config.type`.

  The values are checked once, by the registry (type) and the extractor
  (filter_scale, group_widths, output_stride); their errors are given here with the
  field's place in the pipeline.

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
  if not config.type:
    allowed = ", ".join(feature_extractors.registered_names())
    raise ValueError(f"{field_path}.type is not set; allowed: {allowed}")
  try:
    extractor_class = feature_extractors.get(config.type)
    # group_widths only when set: a backbone without them keeps working.
    group_scales = {"group_scales": [(w.group, w.scale)
                                     for w in config.group_widths]
                    } if config.group_widths else {}
    extractor = extractor_class(
        conv_hyperparams, filter_scale=config.filter_scale,
        output_stride=config.output_stride, **group_scales,
        **_slim_layout(config, extractor_class),
        **_keras_padding(config, extractor_class))
    if config.input_mean or config.input_std:
      extractor.set_input_normalization(config.input_mean, config.input_std)
    return extractor
  except ValueError as e:
    raise ValueError(_at(field_path, str(e))) from None


def _slim_layout(config, extractor_class):
  """The TF1-layout keyword arguments, only when set (and honoured)."""
  kwargs = {}
  if config.slim_explicit_padding:
    kwargs["slim_explicit_padding"] = True
  if config.stage_dilation_multipliers:
    kwargs["dilation_multipliers"] = {
        d.stage: d.multiplier for d in config.stage_dilation_multipliers}
  if kwargs and not getattr(extractor_class, "supports_slim_layout", False):
    field = ("slim_explicit_padding" if config.slim_explicit_padding
             else "stage_dilation_multipliers")
    raise ValueError(f"{_OWN_PATH}{field} is not supported by "
                     f"{config.type}; only resnet_v1_50 honours it")
  return kwargs


def _keras_padding(config, extractor_class):
  """keras_padding as a keyword argument, only when set (and honoured)."""
  if config.keras_padding == feature_extractor_pb2.FeatureExtractor.SAME:
    return {}
  if not getattr(extractor_class, "supports_keras_padding", False):
    raise ValueError(f"{_OWN_PATH}keras_padding is not supported by "
                     f"{config.type}; only mobilenet_v2 honours it")
  return {"keras_padding": config.keras_padding}


def _at(field_path, message):
  """`message` with 'feature_extractor.<field>' replaced by its full path."""
  if message.startswith(_OWN_PATH):
    return f"{field_path}.{message[len(_OWN_PATH):]}"
  return f"{field_path}: {message}"
