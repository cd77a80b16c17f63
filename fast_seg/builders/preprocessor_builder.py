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

EVAL_FIELD_PATH = "eval_config.preprocessing"

# Steps that change the size by a random amount.
_VARIABLE_SIZE_STEPS = ("random_scale",)

# Steps without randomness: the only ones allowed before evaluation, where
# every run must see the same pixels.
DETERMINISTIC_STEPS = ("fixed_resize", "fixed_row_crop", "resize_with_pad")


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


def _check_probability(config, field):
  _require(0.0 <= config.probability <= 1.0, f"{field}.probability",
           f"must be in [0, 1], got {config.probability}")


def _build_random_rotation(config, field, ignore_label):
  _require(config.max_degrees >= config.min_degrees, f"{field}.max_degrees",
           f"must be >= min_degrees ({config.min_degrees}), got "
           f"{config.max_degrees}")
  _check_probability(config, field)
  return functools.partial(
      preprocessor.random_rotation, min_degrees=config.min_degrees,
      max_degrees=config.max_degrees, ignore_label=ignore_label,
      probability=config.probability)


def _build_random_shear(config, field, ignore_label):
  # tan grows without bound towards 90 degrees; 60 already stretches by 1.7.
  _require(0.0 <= config.max_degrees < 60.0, f"{field}.max_degrees",
           f"must be in [0, 60), got {config.max_degrees}")
  _check_probability(config, field)
  return functools.partial(
      preprocessor.random_shear, max_degrees=config.max_degrees,
      ignore_label=ignore_label, shear_y=config.shear_y,
      probability=config.probability)


def _build_random_zoom(config, field, ignore_label):
  _require(config.min_zoom > 0, f"{field}.min_zoom",
           f"must be > 0, got {config.min_zoom}")
  _require(config.max_zoom >= config.min_zoom, f"{field}.max_zoom",
           f"must be >= min_zoom ({config.min_zoom}), got {config.max_zoom}")
  _check_probability(config, field)
  return functools.partial(
      preprocessor.random_zoom, min_zoom=config.min_zoom,
      max_zoom=config.max_zoom, ignore_label=ignore_label,
      probability=config.probability)


def _build_random_vertical_flip(config, field):
  _check_probability(config, field)
  return functools.partial(
      preprocessor.random_vertical_flip, probability=config.probability)


def _build_random_gaussian_blur(config, field):
  _require(config.min_sigma > 0, f"{field}.min_sigma",
           f"must be > 0, got {config.min_sigma}")
  _require(config.max_sigma >= config.min_sigma, f"{field}.max_sigma",
           f"must be >= min_sigma ({config.min_sigma}), got "
           f"{config.max_sigma}")
  _check_probability(config, field)
  return functools.partial(
      preprocessor.random_gaussian_blur, min_sigma=config.min_sigma,
      max_sigma=config.max_sigma, probability=config.probability)


def _build_random_gaussian_noise(config, field):
  _require(config.stddev >= 0, f"{field}.stddev",
           f"must be >= 0, got {config.stddev}")
  _check_probability(config, field)
  return functools.partial(
      preprocessor.random_gaussian_noise, stddev=config.stddev,
      probability=config.probability)


def _build_fixed_row_crop(config, field):
  _require(config.top >= 0, f"{field}.top", f"must be >= 0, got {config.top}")
  _require(config.bottom >= 0, f"{field}.bottom",
           f"must be >= 0, got {config.bottom}")
  return functools.partial(
      preprocessor.fixed_row_crop, top=config.top, bottom=config.bottom)


def _build_resize_with_pad(config, field, ignore_label):
  _require(config.height > 0, f"{field}.height",
           f"must be > 0, got {config.height}")
  _require(config.width > 0, f"{field}.width",
           f"must be > 0, got {config.width}")
  return functools.partial(
      preprocessor.resize_with_pad, height=config.height, width=config.width,
      ignore_label=ignore_label)


# Builders taking (config, field) and (config, field, ignore_label).
_BUILDERS = {
    "random_scale": _build_random_scale,
    "random_horizontal_flip": _build_random_horizontal_flip,
    "fixed_resize": _build_fixed_resize,
    "color_jitter": _build_color_jitter,
    "random_vertical_flip": _build_random_vertical_flip,
    "random_gaussian_blur": _build_random_gaussian_blur,
    "random_gaussian_noise": _build_random_gaussian_noise,
    "fixed_row_crop": _build_fixed_row_crop,
}
_BUILDERS_WITH_IGNORE_LABEL = {
    "random_crop": _build_random_crop,
    "random_rotation": _build_random_rotation,
    "random_shear": _build_random_shear,
    "random_zoom": _build_random_zoom,
    "resize_with_pad": _build_resize_with_pad,
}


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
  if which in _BUILDERS:
    return _BUILDERS[which](config, field)
  if which in _BUILDERS_WITH_IGNORE_LABEL:
    return _BUILDERS_WITH_IGNORE_LABEL[which](config, field, ignore_label)
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
    ValueError: as `build`, for any of the steps, or a fixed_row_crop removes
      every row of a size fixed by an earlier step.
  """
  step_configs = list(step_configs)
  steps = [build(config, ignore_label, f"{field_path}[{i}]")
           for i, config in enumerate(step_configs)]
  # Catches a row crop larger than a known size now rather than mid-training.
  fixed_output_size(step_configs, field_path)

  def apply(image, label):
    for step in steps:
      image, label = step(image, label)
    return image, label
  return apply


def build_deterministic_sequence(step_configs, ignore_label,
                                 field_path=EVAL_FIELD_PATH):
  """Builds steps that must give the same output on every run (evaluation).

  Args:
    step_configs: iterable of preprocessor_pb2.PreprocessingStep, each one of
      DETERMINISTIC_STEPS.
    ignore_label: label value used where a step pads the label.
    field_path: path of the repeated field, for messages.

  Returns:
    As `build_sequence`.

  Raises:
    ValueError: a step is random (the message names `field_path[i].<step>`),
      or as `build_sequence`.
  """
  step_configs = list(step_configs)
  for i, config in enumerate(step_configs):
    path = f"{field_path}[{i}]"
    config_util.check_type(config, preprocessor_pb2.PreprocessingStep, path)
    which = config_util.require_oneof(config, _ONEOF, path)
    if which not in DETERMINISTIC_STEPS:
      raise ValueError(
          f"{path}.{which} is random; eval preprocessing allows only "
          f"{', '.join(DETERMINISTIC_STEPS)}")
  return build_sequence(step_configs, ignore_label, field_path)


def fixed_output_size(step_configs, field_path=DEFAULT_FIELD_PATH):
  """Returns the (height, width) every example has after the steps, or None.

  The size is fixed by the last random_crop, fixed_resize or resize_with_pad
  after the last random_scale; a later fixed_row_crop takes its rows off the
  height; flips, rotation, shear, zoom, blur, noise and colour jitter keep it.

  Args:
    step_configs: iterable of preprocessor_pb2.PreprocessingStep.
    field_path: path of the repeated field, for messages.

  Returns:
    (height, width) after the steps, or None.

  Raises:
    ValueError: a fixed_row_crop removes every row of the fixed size.
  """
  return fixed_size_and_source(step_configs, field_path)[0]


def fixed_size_and_source(step_configs, field_path=DEFAULT_FIELD_PATH):
  """fixed_output_size, and the field of the step that set it (e.g.
  'train_config.data_augmentation_options[0].random_crop'), or (None, None).
  """
  size, source = None, None
  for i, config in enumerate(step_configs):
    which = config.WhichOneof(_ONEOF)
    if which == "random_crop":
      size = (config.random_crop.crop_height, config.random_crop.crop_width)
    elif which == "fixed_resize":
      size = (config.fixed_resize.height, config.fixed_resize.width)
    elif which == "resize_with_pad":
      size = (config.resize_with_pad.height, config.resize_with_pad.width)
    elif which == "fixed_row_crop" and size is not None:
      crop = config.fixed_row_crop
      _require(crop.top + crop.bottom < size[0],
               f"{field_path}[{i}].fixed_row_crop",
               f"removes {crop.top} + {crop.bottom} rows but the height at "
               f"that point is {size[0]}")
      size = (size[0] - crop.top - crop.bottom, size[1])
      continue
    elif which in _VARIABLE_SIZE_STEPS:
      size, source = None, None
      continue
    else:
      continue
    source = f"{field_path}[{i}].{which}"
  return size, source


def ends_with_fixed_size(step_configs):
  """Whether the steps give every example the same size (needed to batch).

  Args:
    step_configs: iterable of preprocessor_pb2.PreprocessingStep.

  Returns:
    True if a random_crop, fixed_resize or resize_with_pad follows the last
    random_scale.
  """
  return fixed_output_size(step_configs) is not None
