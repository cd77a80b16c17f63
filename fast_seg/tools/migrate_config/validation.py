"""Checks that a migrated config loads in fast_seg before it is written.

The converted config is parsed back from its text and given the pipeline
check every fast_seg command makes when it starts (model, optimizer,
augmentations, readers, eval settings), so a config the tool writes is
known to load; a failure names the TF1 file it came from.
"""

from google.protobuf import text_format

from fast_seg.training import pipeline_check
from fast_seg.utils import config_util


def validate(config, source):
  """Loads the result the way fast_seg does and checks all of it.

  Raises:
    ValueError: naming `source` and the fast_seg field at fault.
  """
  try:
    parsed = config_util.parse_pipeline_config(
        text_format.MessageToString(config))
    pipeline_check.check(parsed, "all")
  except ValueError as e:
    raise ValueError(f"{source}: the converted config does not load in "
                     f"fast_seg: {e}") from None
