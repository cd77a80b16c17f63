"""Checks that a migrated config loads in fast_seg before it is written.

The converted config is loaded the way train.py loads one, so a config the
tool writes is known to parse, build its model, and pass train_config's
checks; a failure names the TF1 file it came from.
"""

from google.protobuf import text_format
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.builders import optimizer_builder
from fast_seg.builders import preprocessor_builder
from fast_seg.training import run_settings
from fast_seg.utils import config_util


def validate(config, source):
  """Loads the result the way fast_seg does: parses its text back, builds
  the model, checks train_config and builds its optimizer and augmentations.

  Raises:
    ValueError: naming `source` and the fast_seg field at fault.
  """
  try:
    parsed = config_util.parse_pipeline_config(text_format.MessageToString(config))
    arch = config_util.get_model_config(parsed.model)
    model_builder.build(parsed.model)
    if parsed.HasField("train_config"):
      train = parsed.train_config
      run_settings.check_train_config(parsed, tf.distribute.get_strategy())
      optimizer_builder.build(train.optimizer, train.num_steps)
      steps = train.data_augmentation_options
      preprocessor_builder.build_sequence(steps, arch.ignore_label,
                                          "train_config.data_augmentation_options")
      if train.batch_size > 1 and not preprocessor_builder.ends_with_fixed_size(steps):
        raise ValueError("train_config.batch_size > 1 needs a random_crop or "
                         "fixed_resize in data_augmentation_options")
  except ValueError as e:
    raise ValueError(f"{source}: the converted config does not load in "
                     f"fast_seg: {e}") from None
