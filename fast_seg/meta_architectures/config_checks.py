"""Checks that several architectures' `kwargs_from_config` share.

Each raises a ValueError that names the field by its path in the pipeline
config, e.g. 'model.icnet.pyramid_bins must all be >= 1, got [0, 2]'.
"""

from fast_seg.protos import model_pb2


def require_output_stride(config, field_path, allowed, why):
  """Checks feature_extractor.output_stride against what the model needs.

  Args:
    config: the architecture message (ICNet, PSPNet, ...).
    field_path: its path, e.g. 'model.icnet'.
    allowed: the output strides the architecture works with.
    why: the architecture and its reason, for the message.
  """
  stride = config.feature_extractor.output_stride
  if stride not in allowed:
    values = " or ".join(str(s) for s in allowed)
    raise ValueError(
        f"{field_path}.feature_extractor.output_stride must be {values} "
        f"for {why}, got {stride}")


# Values of the shared enums that only ICNet builds (the fritz Keras ICNet).
_ICNET_ONLY = {
    "interpolation": model_pb2.ICNet.KERAS_ASYMMETRIC,
    "head_activation": model_pb2.ICNet.RELU_BEFORE_BATCH_NORM,
}


def tf1_graph_kwargs(config, field_path, icnet=False):
  """Constructor arguments of the TF1 graph fields (interpolation,
  head_activation) that ICNet and PSPNet share; ICNet (`icnet`) reads their
  Keras values itself, any other model refuses them."""
  for field, value in _ICNET_ONLY.items():
    if getattr(config, field) == value and not icnet:
      enum = config.DESCRIPTOR.fields_by_name[field].enum_type
      raise ValueError(f"{field_path}.{field}: "
                       f"{enum.values_by_number[value].name} is built by ICNet "
                       "only (the fritz Keras ICNet)")
  return {"tf1_interpolation":
              config.interpolation == model_pb2.ICNet.TF1_ALIGN_CORNERS,
          "head_relu_max":
              6.0 if config.head_activation == model_pb2.ICNet.RELU6 else None}


def pyramid_bins(config, field_path, default_bins):
  """The configured pyramid_bins (default_bins when empty), all >= 1."""
  bins = list(config.pyramid_bins) or list(default_bins)
  if any(b < 1 for b in bins):
    raise ValueError(f"{field_path}.pyramid_bins must all be >= 1, got {bins}")
  return bins


def all_at_least_one(values, field):
  """`values` as a list, all >= 1 (rates, dilations)."""
  values = list(values)
  if any(v < 1 for v in values):
    raise ValueError(f"{field} must all be >= 1, got {values}")
  return values


def positive(value, field):
  """`value` if it is > 0."""
  if value <= 0:
    raise ValueError(f"{field} must be > 0, got {value}")
  return value
