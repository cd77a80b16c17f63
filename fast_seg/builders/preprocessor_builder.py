"""Builds augmentation callables from `PreprocessingStep` protos.

Each step becomes a function `(image, label) -> (image, label)` over the
tensors of one example (see fast_seg.core.preprocessor); the input reader
applies them in the order of `train_config.data_augmentation_options`.
"""

import functools

from fast_seg.core import preprocessor
from fast_seg.protos import preprocessor_pb2
from fast_seg.utils import config_util

_ONEOF = "preprocessing_step"
DEFAULT_FIELD_PATH = "train_config.data_augmentation_options"

# Steps that change the size by a random amount.
_VARIABLE_SIZE_STEPS = ("random_scale",)


def _require(condition, field, message):
  if not condition:
    raise ValueError(f"{field} {message}")


def _build_random_scale(config, field):
  _require(config.min_scale_ratio > 0, f"{field}.min_scale_ratio",
           f"must be > 0, got {config.min_scale_ratio}")
  _require(config.max_scale_ratio >= config.min_scale_ratio,
           f"{field}.max_scale_ratio",
           f"must be >= min_scale_ratio ({config.min_scale_ratio}), got "
           f"{config.max_scale_ratio}")
  _require(config.scale_step >= 0, f"{field}.scale_step",
           f"must be >= 0, got {config.scale_step}")
  return functools.partial(
      preprocessor.random_scale, min_scale=config.min_scale_ratio,
      max_scale=config.max_scale_ratio, step=config.scale_step)


def _build_random_crop(config, field, ignore_label):
  _require(config.crop_height > 0, f"{field}.crop_height",
           f"must be > 0, got {config.crop_height}")
  _require(config.crop_width > 0, f"{field}.crop_width",
           f"must be > 0, got {config.crop_width}")
  return functools.partial(
      preprocessor.random_crop, crop_height=config.crop_height,
      crop_width=config.crop_width, ignore_label=ignore_label)


def _build_random_horizontal_flip(config, field):
  _require(0.0 <= config.probability <= 1.0, f"{field}.probability",
           f"must be in [0, 1], got {config.probability}")
  return functools.partial(
      preprocessor.random_horizontal_flip, probability=config.probability)


def _build_fixed_resize(config, field):
  _require(config.height > 0, f"{field}.height",
           f"must be > 0, got {config.height}")
  _require(config.width > 0, f"{field}.width",
           f"must be > 0, got {config.width}")
  return functools.partial(
      preprocessor.fixed_resize, height=config.height, width=config.width)


def _build_color_jitter(config, field):
  for name in ("brightness_delta", "contrast_range", "saturation_range"):
    value = getattr(config, name)
    _require(0.0 <= value <= 1.0, f"{field}.{name}",
             f"must be in [0, 1], got {value}")
  _require(0.0 <= config.hue_delta <= 0.5, f"{field}.hue_delta",
           f"must be in [0, 0.5], got {config.hue_delta}")
  jitter = functools.partial(
      preprocessor.color_jitter, brightness_delta=config.brightness_delta,
      contrast_range=config.contrast_range,
      saturation_range=config.saturation_range, hue_delta=config.hue_delta)

  def apply(image, label):
    return jitter(image), label
  return apply


def build(step_config, ignore_label, field_path=DEFAULT_FIELD_PATH):
  """Builds one augmentation from a PreprocessingStep proto.

  Args:
    step_config: preprocessor_pb2.PreprocessingStep.
    ignore_label: label value used where a step pads the label.
    field_path: where the step sits in the pipeline config, for messages.

  Returns:
    A callable `(image, label) -> (image, label)` on float32 [H, W, 3] images
    in 0..255 and int32 [H, W, 1] labels.

  Raises:
    ValueError: not a PreprocessingStep, the `preprocessing_step` oneof is
      empty, or a value is out of range (the message names the field).
  """
  config_util.check_type(
      step_config, preprocessor_pb2.PreprocessingStep, field_path)
  which = config_util.require_oneof(step_config, _ONEOF, field_path)
  config = getattr(step_config, which)
  field = f"{field_path}.{which}"
  if which == "random_scale":
    return _build_random_scale(config, field)
  if which == "random_crop":
    return _build_random_crop(config, field, ignore_label)
  if which == "random_horizontal_flip":
    return _build_random_horizontal_flip(config, field)
  if which == "fixed_resize":
    return _build_fixed_resize(config, field)
  if which == "color_jitter":
    return _build_color_jitter(config, field)
  raise ValueError(f"{field_path}: unsupported {_ONEOF} '{which}'")


def build_sequence(step_configs, ignore_label, field_path=DEFAULT_FIELD_PATH):
  """Builds all steps and returns one callable applying them in order.

  Args:
    step_configs: iterable of preprocessor_pb2.PreprocessingStep.
    ignore_label: label value used where a step pads the label.
    field_path: path of the repeated field, for messages; each step is named
      `field_path[i]`.

  Returns:
    A callable `(image, label) -> (image, label)`; the identity when there
    are no steps.

  Raises:
    ValueError: as `build`, for any of the steps.
  """
  steps = [build(config, ignore_label, f"{field_path}[{i}]")
           for i, config in enumerate(step_configs)]

  def apply(image, label):
    for step in steps:
      image, label = step(image, label)
    return image, label
  return apply


def fixed_output_size(step_configs):
  """Returns the (height, width) every example has after the steps, or None.

  The size is fixed when a random_crop or fixed_resize comes after the last
  random_scale; flips and colour jitter keep it.

  Args:
    step_configs: iterable of preprocessor_pb2.PreprocessingStep.

  Returns:
    (height, width) of the last size-fixing step, or None.
  """
  size = None
  for config in step_configs:
    which = config.WhichOneof(_ONEOF)
    if which == "random_crop":
      size = (config.random_crop.crop_height, config.random_crop.crop_width)
    elif which == "fixed_resize":
      size = (config.fixed_resize.height, config.fixed_resize.width)
    elif which in _VARIABLE_SIZE_STEPS:
      size = None
  return size


def ends_with_fixed_size(step_configs):
  """Whether the steps give every example the same size (needed to batch).

  Args:
    step_configs: iterable of preprocessor_pb2.PreprocessingStep.

  Returns:
    True if a random_crop or fixed_resize follows the last random_scale.
  """
  return fixed_output_size(step_configs) is not None
