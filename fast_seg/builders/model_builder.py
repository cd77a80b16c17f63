"""Builds a SegmentationModel from a `Model` proto (dispatch on its oneof).

Each architecture message has the shared fields (num_classes, ignore_label,
feature_extractor, hyperparams, loss, binary_output) and its own; one
`_<arch>_kwargs` function per message checks and translates its own fields.
"""

from fast_seg.builders import feature_extractor_builder
from fast_seg.builders import hyperparams_builder
from fast_seg.builders import losses_builder
from fast_seg.core import model as model_lib
from fast_seg.core import standard_fields as fields
from fast_seg.meta_architectures import deeplab_v3_plus
from fast_seg.meta_architectures import dilated_fcn
from fast_seg.meta_architectures import icnet
from fast_seg.meta_architectures import mobile_unet
from fast_seg.meta_architectures import pspnet
from fast_seg.protos import model_pb2
from fast_seg.utils import config_util


def _require_output_stride(arch, path, allowed, why):
  stride = arch.feature_extractor.output_stride
  if stride not in allowed:
    values = " or ".join(str(s) for s in allowed)
    raise ValueError(f"{path}.feature_extractor.output_stride must be {values} "
                     f"for {why}, got {stride}")


def _bins(arch, path, default_bins):
  bins = list(arch.pyramid_bins) or list(default_bins)
  if any(b < 1 for b in bins):
    raise ValueError(f"{path}.pyramid_bins must all be >= 1, got {bins}")
  return {"pyramid_bins": bins}


def _icnet_kwargs(arch, path):
  _require_output_stride(
      arch, path, (icnet.TRUNK_SPLIT_STRIDE,),
      "ICNet (its trunk is split at stride 8 of the half-resolution input)")
  return _bins(arch, path, icnet.DEFAULT_PYRAMID_BINS)


def _pspnet_kwargs(arch, path):
  return _bins(arch, path, pspnet.DEFAULT_PYRAMID_BINS)


def _positive(value, field):
  if value <= 0:
    raise ValueError(f"{field} must be > 0, got {value}")
  return value


def _deeplab_v3_plus_kwargs(arch, path):
  _require_output_stride(arch, path, (8, 16), "DeepLabV3+")
  kwargs = {
      "low_level_depth": _positive(arch.low_level_depth,
                                   f"{path}.low_level_depth"),
      "decoder_depth": arch.decoder_depth,
      "dropout_rate": arch.dropout_rate,
  }
  if arch.decoder_depth < 0:
    raise ValueError(f"{path}.decoder_depth must be >= 0 (0: no decoder), "
                     f"got {arch.decoder_depth}")
  if not 0.0 <= arch.dropout_rate < 1.0:
    raise ValueError(
        f"{path}.dropout_rate must be in [0, 1), got {arch.dropout_rate}")
  if arch.WhichOneof("encoder_head") == "dense_prediction_cell":
    cell = arch.dense_prediction_cell
    cell_path = f"{path}.dense_prediction_cell"
    ops = []
    for i, op in enumerate(cell.ops):
      op_path = f"{cell_path}.ops[{i}]"
      if op.kernel_size not in (1, 3):
        raise ValueError(f"{op_path}.kernel_size must be 1 or 3, got "
                         f"{op.kernel_size}")
      rate = list(op.rate) or [1]
      if len(rate) == 1:
        rate = rate * 2
      if len(rate) != 2 or min(rate) < 1:
        raise ValueError(f"{op_path}.rate must be one or two values >= 1 "
                         f"(height, width), got {list(op.rate)}")
      if not -1 <= op.input_index < i:
        raise ValueError(
            f"{op_path}.input_index must be -1 (the trunk output) or the "
            f"index of an earlier op (0..{i - 1}), got {op.input_index}")
      ops.append((op.kernel_size, tuple(rate), op.input_index))
    if not ops:
      # The published cell was searched at output stride 16; DeepLab doubles
      # its rates at output stride 8, as it does ASPP's.
      factor = 16 // arch.feature_extractor.output_stride
      ops = [(kernel, (rate[0] * factor, rate[1] * factor), index)
             for kernel, rate, index in deeplab_v3_plus.DEFAULT_CELL_OPS]
    kwargs.update(encoder="dense_prediction_cell", cell_ops=ops,
                  encoder_depth=_positive(cell.depth, f"{cell_path}.depth"))
    return kwargs
  aspp = arch.aspp
  rates = (list(aspp.atrous_rates) or deeplab_v3_plus.default_atrous_rates(
      arch.feature_extractor.output_stride))
  if any(r < 1 for r in rates):
    raise ValueError(f"{path}.aspp.atrous_rates must all be >= 1, got {rates}")
  kwargs.update(encoder="aspp", atrous_rates=list(rates),
                encoder_depth=_positive(aspp.depth, f"{path}.aspp.depth"),
                image_pooling=aspp.image_pooling,
                separable_conv=aspp.separable_conv)
  return kwargs


def _mobile_unet_kwargs(arch, path):
  _require_output_stride(arch, path, (32,),
                         "MobileUNet (its encoder goes down to 1/32)")
  return {
      "decoder_width_multiplier": _positive(
          arch.decoder_width_multiplier, f"{path}.decoder_width_multiplier"),
      "upsampling": model_pb2.Upsampling.Name(arch.upsampling).lower(),
  }


def _dilated_fcn_kwargs(arch, path):
  _require_output_stride(
      arch, path, (8,),
      "DilatedFCN (its trunk is built up to the stride-8 stage; dilated "
      "blocks replace the rest)")
  rates = list(arch.dilation_rates) or list(dilated_fcn.DEFAULT_DILATION_RATES)
  if any(r < 1 for r in rates):
    raise ValueError(f"{path}.dilation_rates must all be >= 1, got {rates}")
  return {
      "dilation_rates": rates,
      "context_depth": _positive(arch.context_depth, f"{path}.context_depth"),
      "decoder_depth": _positive(arch.decoder_depth, f"{path}.decoder_depth"),
  }


# oneof field -> (class, default aux loss weights, kwargs of its own fields).
_META_ARCHITECTURES = {
    "icnet": (icnet.ICNet, icnet.DEFAULT_AUX_WEIGHTS, _icnet_kwargs),
    "pspnet": (pspnet.PSPNet, pspnet.DEFAULT_AUX_WEIGHTS, _pspnet_kwargs),
    "deeplab_v3_plus": (deeplab_v3_plus.DeepLabV3Plus,
                        deeplab_v3_plus.DEFAULT_AUX_WEIGHTS,
                        _deeplab_v3_plus_kwargs),
    "mobile_unet": (mobile_unet.MobileUNet, mobile_unet.DEFAULT_AUX_WEIGHTS,
                    _mobile_unet_kwargs),
    "dilated_fcn": (dilated_fcn.DilatedFCN, dilated_fcn.DEFAULT_AUX_WEIGHTS,
                    _dilated_fcn_kwargs),
}


def build_binary_output(arch, path):
  """The model's BinaryOutput, or None when `binary_output` is not set.

  Raises:
    ValueError: a foreground id out of range or a threshold outside (0, 1).
  """
  if not arch.HasField("binary_output"):
    return None
  config = arch.binary_output
  field = f"{path}.binary_output"
  ids = tuple(config.foreground_class_ids)
  bad = [i for i in ids if not 0 <= i < arch.num_classes]
  if bad:
    raise ValueError(f"{field}.foreground_class_ids {bad} are not class ids "
                     f"(0..{arch.num_classes - 1})")
  if arch.num_classes < 2:
    raise ValueError(f"{path}.num_classes must be >= 2 for a binary model "
                     "(background and foreground)")
  if not 0.0 < config.threshold < 1.0:
    raise ValueError(
        f"{field}.threshold must be in (0, 1), got {config.threshold}")
  return model_lib.BinaryOutput(ids, round(config.threshold, 6))


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
  model_class, default_aux_weights, own_kwargs = _META_ARCHITECTURES[which]
  if not arch.HasField("num_classes") or arch.num_classes < 1:
    raise ValueError(f"{path}.num_classes must be set to a value >= 1")
  if not arch.HasField("feature_extractor"):
    raise ValueError(f"{path}.feature_extractor is not set")
  kwargs = own_kwargs(arch, path)
  binary_output = build_binary_output(arch, path)
  conv_hyperparams = hyperparams_builder.build(arch.hyperparams)
  extractor = feature_extractor_builder.build(
      arch.feature_extractor, conv_hyperparams, f"{path}.feature_extractor")
  loss = losses_builder.build(
      arch.loss, arch.num_classes, arch.ignore_label,
      fields.PredictionFields.logits, default_aux_weights, f"{path}.loss",
      binary_output=binary_output)
  return model_class(arch.num_classes, arch.ignore_label, extractor,
                     conv_hyperparams, loss, binary_output=binary_output,
                     **kwargs)
