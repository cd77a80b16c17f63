"""Shared plumbing of the entry points: common flags and user-error handling.

A user error (bad config, missing file, bad data, diverged training) ends
with one readable message and exit status 2, not a traceback.
"""

import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from fast_seg.utils import config_util

FLAGS = flags.FLAGS

EXIT_USER_ERROR = 2


def define_config_flags():
  """--config_path and --config_override, shared by the config-driven mains."""
  flags.DEFINE_string("config_path", None,
                      "Pipeline config (protobuf text format).")
  flags.DEFINE_multi_string(
      "config_override", [],
      "Text-format snippet merged over the config, e.g. "
      "'train_config { batch_size: 4 }'; a repeated field given here replaces "
      "the config's list. May be repeated.")
  flags.DEFINE_multi_string(
      "config_append", [],
      "Like --config_override, but repeated fields are appended to, e.g. "
      "'train_input_reader { tf_record_input_path: \"more/*.tfrecord\" }'.")
  flags.mark_flag_as_required("config_path")


def load_config(path):
  """Loads --config_path with the --config_override snippets applied."""
  return config_util.load_pipeline_config(path, FLAGS.config_override,
                                          FLAGS.config_append)


def _short_message(error):
  """The user-facing part of an error (TF op errors carry graph dumps)."""
  if isinstance(error, tf.errors.OpError):
    lines = [line for line in str(error.message).splitlines()
             if line.strip() and not line.strip().startswith("[[")]
    return "\n".join(lines[:6])
  return str(error)


def run(main, user_errors=()):
  """Runs an absl main, turning user errors into a message and exit code 2."""
  errors = (ValueError, FileNotFoundError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError) + tuple(user_errors)

  def guarded_main(argv):
    try:
      return main(argv)
    except errors as e:  # pylint: disable=catching-non-exception
      logging.debug("user error", exc_info=True)
      print(f"error: {_short_message(e)}", file=sys.stderr, flush=True)
      sys.exit(EXIT_USER_ERROR)

  app.run(guarded_main)
