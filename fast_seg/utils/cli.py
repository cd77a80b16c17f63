"""Shared plumbing of the entry points: common flags, flag values that are
lists (shapes, format names) and user-error handling.

A user error (bad config, missing file, bad data, diverged training) ends
with one readable message and exit status 2, not a traceback.
"""

import logging as logging_lib
import os
import re
import signal
import sys
import textwrap

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf

from fast_seg.utils import config_util
from fast_seg.utils import output_files

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


def define_input_flags(reader_field):
  """--input_pattern and --split: the input override every user needs.

  Args:
    reader_field: the input reader they replace the globs of
      ('train_input_reader' or 'eval_input_reader').
  """
  flags.DEFINE_list(
      "input_pattern", None,
      f"TFRecord globs (comma separated) read instead of {reader_field}."
      "tf_record_input_path.")
  flags.DEFINE_string(
      "split", None,
      f"A split of the converted dataset {reader_field} reads from (e.g. "
      "test): its glob from the dataset_info.json beside the config's globs.")


def check_output_dir(path, flag):
  """Refuses an output folder that is an existing file or lies under one,
  or that cannot be written (nor made, when it does not exist yet).

  Called before any work, so a typo'd path or a read-only folder fails at
  once and not after an hour of training or a half-written export.
  """
  if not path:
    return
  probe = os.path.abspath(path)
  while True:
    if os.path.exists(probe) and not os.path.isdir(probe):
      where = "is a file" if probe == os.path.abspath(path) else f"lies under the file {probe}"
      raise ValueError(f"{flag} {path} {where}; give a folder")
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  try:
    output_files.check_writable(path)
  except OSError as e:
    raise ValueError(f"{flag} {path}: "
                     f"{output_files.write_problem(e) or e}") from None


def parse_shape(text, rank, flag):
  """'1,512,1024,3' -> (1, 512, 1024, 3), with a clear error naming the flag."""
  try:
    shape = tuple(int(v) for v in text.split(","))
  except (AttributeError, ValueError):
    shape = ()
  if len(shape) != rank or any(v < 1 for v in shape):
    raise ValueError(f"{flag} must be {rank} positive integers separated by "
                     f"commas, got {text!r}")
  return shape


def parse_input_shape(text, flag="--input_shape"):
  """An exported input's shape: '1,360,480,3', '360,480,3' (no batch axis)
  or with -1 for a dynamic size -> a tuple with None for -1."""
  try:
    shape = tuple(int(v) for v in text.split(","))
  except (AttributeError, ValueError):
    shape = ()
  if (len(shape) not in (3, 4) or shape[-1] != 3
      or any(v < 1 and v != -1 for v in shape)):
    raise ValueError(f"{flag} must be N,H,W,3 or H,W,3 (positive integers, "
                     f"-1 for a dynamic size), got {text!r}")
  return tuple(None if v == -1 else v for v in shape)


def parse_subset(text, allowed, flag):
  """'b,a' -> ('a', 'b'): names from `allowed`, in its order, at least one.

  The order is `allowed`'s, not the user's, so that a flag such as
  --formats means the same whatever order its names were typed in.
  """
  names = [n.strip() for n in text.split(",") if n.strip()]
  unknown = [n for n in names if n not in allowed]
  if unknown or not names:
    raise ValueError(f"{flag} must be a comma-separated subset of "
                     f"{', '.join(allowed)}, got '{text}'")
  return tuple(n for n in allowed if n in names)


def glob_files(pattern, flag):
  """The files a glob flag names, sorted; a ValueError naming the flag if none."""
  files = sorted(tf.io.gfile.glob(pattern))
  if not files:
    raise ValueError(f"{flag}: no file matches '{pattern}'")
  return files


def load_config(path):
  """Loads --config_path with the --config_override snippets applied."""
  return config_util.load_pipeline_config(path, FLAGS.config_override,
                                          FLAGS.config_append)


# Messages that start with a pipeline field are about the config file.
_CONFIG_FIELD = re.compile(
    r"^(model|train_config|train_input_reader|eval_config|eval_input_reader)\b")


# What TensorFlow wraps around a tf.debugging.Assert message raised inside a
# tf.data iterator: "{{function_node __wrapped__IteratorGetNext_...}}
# assertion failed: [<our message>]"; the user needs only the message.
_TF_FUNCTION_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_TF_ASSERTION = re.compile(r"^assertion failed: \[(.*)\]\s*$")


def short_message(error):
  """The user-facing part of an error (TF op errors carry graph dumps).

  A message about a config field is prefixed with the --config_path file,
  so the user knows which file to open.
  """
  if isinstance(error, tf.errors.OpError):
    lines = [_TF_ASSERTION.sub(r"\1", _TF_FUNCTION_NODE.sub("", line))
             for line in str(error.message).splitlines()
             if line.strip() and not line.strip().startswith("[[")]
    return "\n".join(lines[:6])
  message = str(error)
  config_path = FLAGS["config_path"].value if "config_path" in FLAGS else None
  if config_path and _CONFIG_FIELD.match(message):
    message = f"{config_path}: {message}"
  return message


# TensorFlow warnings that are false for fast_seg's graphs, by the start of
# their message.
_FALSE_TENSORFLOW_WARNINGS = (
    # fold_batch_norms (export/inference_graph.py) says this of every batch
    # norm behind a dilated conv (SpaceToBatchND -> conv -> BatchToSpaceND),
    # which fold_dilated_batch_norms folds right after it: 12 lines for an
    # ICNet-MobileNetV2 that read as "folding failed" when nothing is left
    # (tests/export/test_batch_norm_folding.py). A batch norm that stays is
    # counted in export's own line (export/graph_formats.py).
    "Didn't find expected Conv2D or DepthwiseConv2dNative input to ",
)
# tf.functions that fast_seg makes anew for each model, by the name that
# TensorFlow's "N out of the last M calls to <function NAME at 0x..>
# triggered tf.function retracing" warning gives them. TensorFlow counts the
# traces of all the tf.functions made from one Python function together, so
# when models follow each other with few batches each, the one trace that
# each new model needs reads as retracing: compress.py's sensitivity rows
# and search steps with --eval_examples 2 gave two such warnings. An
# input_signature or reduce_retracing cannot help: each function traces
# once. (Whole-image eval, without eval_config.padded_*, traces once per
# image size by design.)
_BUILT_PER_MODEL = ("Evaluator._make_eval_step.<locals>.eval_step",)


class _UserFacingTensorFlowLogs(logging_lib.Filter):
  """Drops TensorFlow's Python-side INFO lines (such as "Sharding callback
  duration" at every checkpoint), its deprecation notices about its own
  internals (dozens per TFLite conversion) and its warnings that are false
  for our graphs and functions (above): nothing a user can act on."""

  def filter(self, record):
    path = record.pathname.replace("\\", "/")
    if "/tensorflow/" not in path and "/tf_keras/" not in path:
      return True  # ours (absl logging from fast_seg) and other libraries'
    message = record.getMessage()
    if (record.levelno < logging_lib.WARNING
        or "deprecat" in message.lower()
        or message.startswith(_FALSE_TENSORFLOW_WARNINGS)):
      return False
    return not ("triggered tf.function retracing" in message and any(
        f"<function {name} at " in message for name in _BUILT_PER_MODEL))


EXIT_INTERRUPTED = 130
# A full disk or a folder that cannot be written, wherever it stops a
# write: one line naming the path (output_files.write_problem); the code
# that was writing has removed its partial files on the way out.
_WRITE_ERRORS = (OSError, tf.errors.ResourceExhaustedError,
                 tf.errors.PermissionDeniedError,
                 tf.errors.FailedPreconditionError)


def _interrupt(signum, frame):
  """SIGTERM acts as Ctrl-C: `finally` blocks and interrupt handlers run (a
  converter removes its partial files, training saves a checkpoint)."""
  del frame
  raise KeyboardInterrupt(f"signal {signum}")


def run(main, user_errors=(), usage=None):
  """Runs an absl main, turning user errors into a message and exit code 2.

  Ctrl-C and SIGTERM end it with one line and exit code 130, after the
  code's own cleanup ran. `usage` (the command module's docstring) is what
  --help prints first, whichever script started the process (a console
  command's generated wrapper, a root script, python -m).
  """
  if usage:
    sys.modules["__main__"].__doc__ = usage
  _help_lists_the_flags_of(main.__module__)
  signal.signal(signal.SIGTERM, _interrupt)
  for logger in (tf.get_logger(), logging_lib.getLogger("absl")):
    logger.addFilter(_UserFacingTensorFlowLogs())
  _print_tensorflow_logs_once()
  errors = (ValueError, FileNotFoundError, tf.errors.InvalidArgumentError,
            tf.errors.NotFoundError) + tuple(user_errors)

  def guarded_main(argv):
    try:
      return main(argv)
    except errors as e:  # pylint: disable=catching-non-exception
      logging.debug("user error", exc_info=True)
      print(f"error: {short_message(e)}", file=sys.stderr, flush=True)
      if getattr(e, "hint", None):  # e.g. the folder tree a converter reads
        print(textwrap.indent(e.hint, "  "), file=sys.stderr, flush=True)
      sys.exit(EXIT_USER_ERROR)
    except _WRITE_ERRORS as e:  # pylint: disable=catching-non-exception
      problem = output_files.write_problem(e)
      if problem is None:
        raise
      logging.debug("write error", exc_info=True)
      print(f"error: {problem}", file=sys.stderr, flush=True)
      sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
      print("interrupted; stopped cleanly (nothing half-written is left)",
            file=sys.stderr, flush=True)
      sys.exit(EXIT_INTERRUPTED)

  app.run(guarded_main, flags_parser=_parse_flags)


def _print_tensorflow_logs_once():
  """TensorFlow's logger, made before absl's handler was on the root logger,
  has a stderr handler of its own, and its records reach absl's handler
  too: each warning was printed twice ("WARNING:tensorflow:..." and absl's
  "W1207 ..."). absl's handler alone prints them, in the format of ours,
  as absl.logging.use_absl_handler does for the root logger's handlers."""
  tf_logger = tf.get_logger()
  for handler in list(tf_logger.handlers):
    if (isinstance(handler, logging_lib.StreamHandler)
        and handler.stream is sys.stderr):
      tf_logger.removeHandler(handler)


def _help_lists_the_flags_of(module_name):
  """absl's --help lists the flags of the script that started the process;
  a console command's generated script (or a root script that only calls
  command()) defines none, so the command module's are listed for it."""
  script = sys.argv[0]
  for flag in FLAGS.get_key_flags_for_module(module_name):
    FLAGS.register_key_flag_for_module(script, flag)


def _parse_flags(argv):
  """absl's parsing, but a bad or missing flag is a user error (exit 2, one
  line) instead of absl's "FATAL Flags parsing error" and exit 1."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f"error: {str(e).splitlines()[0]} (--help lists the flags)",
          file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)
