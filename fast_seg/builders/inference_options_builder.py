"""Builds the test-time inference options from an `EvalConfig` proto."""

import math

from fast_seg.core import inference
from fast_seg.protos import eval_pb2
from fast_seg.utils import config_util


def build(config, field_path="eval_config"):
  """scales, flip and sliding_window of `config` as inference.TestTimeOptions.

  Raises:
    ValueError: a scale that is not a positive number, or a window whose
      size or stride cannot cover the image, naming the field.
  """
  config_util.check_type(config, eval_pb2.EvalConfig, field_path)
  # Proto floats are float32: 0.75 reads back exactly, 1.1 as 1.10000002.
  scales = tuple(round(scale, 6) for scale in config.scales) or (1.0,)
  for scale in scales:
    if not (math.isfinite(scale) and scale > 0):
      raise ValueError(f"{field_path}.scales must be > 0, got {list(scales)}")
  if len(set(scales)) != len(scales):
    raise ValueError(f"{field_path}.scales lists a scale twice: {list(scales)}")
  window = None
  if config.HasField("sliding_window"):
    window = _window(config.sliding_window, f"{field_path}.sliding_window")
  return inference.TestTimeOptions(scales=scales, flip=config.flip, window=window)


def _window(config, path):
  if config.height < 1 or config.width < 1:
    raise ValueError(f"{path}.height and width must be >= 1, got "
                     f"{config.height}x{config.width}")
  if not 1 <= config.stride <= min(config.height, config.width):
    raise ValueError(
        f"{path}.stride must be in 1..{min(config.height, config.width)} (at "
        f"most the window's height and width, so windows cover every pixel), "
        f"got {config.stride}")
  return inference.SlidingWindow(config.height, config.width, config.stride)
