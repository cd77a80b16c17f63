"""Loading, overriding and saving pipeline configs (protobuf text format).

A config file's `train_config.fine_tune_checkpoint` may be relative to the
folder the file is in: compress.py writes its pruned model's config that
way, so the folder (ckpt-0 and pipeline.config) can be moved or copied as a
unit. A relative path found nowhere beside the file is read from the working
directory, as configs/ files have always been.
"""

import copy
import math
import os

from absl import logging
import tensorflow as tf
from google.protobuf import descriptor
from google.protobuf import text_format

from fast_seg.protos import pipeline_pb2
from fast_seg.protos import train_pb2

PIPELINE_CONFIG_NAME = "pipeline.config"

# train_config fields replaced by train_config.precision; read only by
# migrate_deprecated_fields.
DEPRECATED_PRECISION_FIELDS = ("mixed_precision", "mixed_precision_policy")


class ConfigError(ValueError):
  """A config file that cannot be used, with the file and field named."""


def check_type(config, proto_class, field_name):
  """Raises ValueError unless `config` is a `proto_class` message."""
  if not isinstance(config, proto_class):
    raise ValueError(
        f"{field_name}: expected a {proto_class.DESCRIPTOR.full_name} proto, "
        f"got {type(config).__name__}")


def require_oneof(config, oneof_name, field_path):
  """Returns the set field of a oneof, or raises a ValueError naming it.

  Args:
    config: a proto message.
    oneof_name: name of the oneof inside `config`.
    field_path: dotted path of `config` in the pipeline, for the message.
  """
  which = config.WhichOneof(oneof_name)
  if which is None:
    allowed = ", ".join(
        f.name for f in config.DESCRIPTOR.oneofs_by_name[oneof_name].fields)
    raise ValueError(
        f"{field_path}: '{oneof_name}' is not set; set one of: {allowed}")
  return which


def parse_pipeline_config(text, source="<string>"):
  """Parses text format into a PipelineConfig, naming `source` on errors.

  Strict: a field given twice (a scalar, a message, or two members of one
  oneof such as `pspnet {...}` then `icnet {...}`) is an error, where
  protobuf's Merge would silently keep the last. Repeated fields may repeat.
  Deprecated fields are rewritten into their replacements here
  (migrate_deprecated_fields), so every reader of a config sees only the
  current ones.
  """
  config = pipeline_pb2.PipelineConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError as e:
    raise ConfigError(f"{source}: {e}") from None
  check_finite(config, source)
  return migrate_deprecated_fields(config, source)


_FLOAT_TYPES = (descriptor.FieldDescriptor.TYPE_FLOAT,
                descriptor.FieldDescriptor.TYPE_DOUBLE)


def _float_values(message, prefix=""):
  """(dotted field path, value) of every float set in `message`, nested
  messages and lists included ('a.b[1].c')."""
  for field, value in message.ListFields():
    name = prefix + field.name
    values = list(value) if field.is_repeated else [value]
    for i, item in enumerate(values):
      path = f"{name}[{i}]" if field.is_repeated else name
      if field.message_type is not None:
        yield from _float_values(item, path + ".")
      elif field.type in _FLOAT_TYPES:
        yield path, item


def check_finite(config, source):
  """Raises ConfigError naming the first float field of `config` that is
  nan or inf.

  Text format reads `nan` and `inf` as floats, and no fast_seg field means
  anything by them; unchecked they reach Keras or TensorFlow, which fail
  without naming the field (a regularizer) or train to a NaN loss (a
  learning rate, which `<= 0` checks let through).
  """
  for path, value in _float_values(config):
    if not math.isfinite(value):
      raise ConfigError(f"{source}: {path} is {value}; it must be a finite "
                        "number")


def _legacy_precision(train_config, base_precision):
  """The Precision the deprecated pair in `train_config` asks for.

  A field of the pair left unset keeps what `base_precision` implies, as it
  did when the pair was merged onto a config that had it.
  """
  mixed_base = base_precision != train_pb2.TrainConfig.FLOAT32
  mixed = (train_config.mixed_precision
           if train_config.HasField("mixed_precision") else mixed_base)
  # Unset, the policy reads as its default, MIXED_FLOAT16.
  policy = (train_config.mixed_precision_policy
            if train_config.HasField("mixed_precision_policy") or not mixed_base
            else base_precision)
  return policy if mixed else train_pb2.TrainConfig.FLOAT32


def migrate_deprecated_fields(config, source, base=None):
  """Rewrites deprecated fields of `config` into their replacements.

  Old configs keep loading, while the rest of the code, and the as-run
  pipeline.config a run saves, know only the current fields. Today:
  train_config.mixed_precision + mixed_precision_policy -> precision.

  Args:
    config: a pipeline_pb2.PipelineConfig, changed in place.
    source: the file (or override) it came from, for the log and errors.
    base: the PipelineConfig that `config`, a snippet, will be merged onto,
      whose precision a field of the pair that the snippet leaves unset
      keeps; None when `config` is a whole file.

  Returns:
    `config`.

  Raises:
    ConfigError: train_config.precision is set too and disagrees.
  """
  train = config.train_config
  names = [name for name in DEPRECATED_PRECISION_FIELDS if train.HasField(name)]
  if not names:
    return config
  base_precision = (base.train_config.precision if base is not None
                    else train_pb2.TrainConfig.FLOAT32)
  precision = _legacy_precision(train, base_precision)
  old = train_pb2.TrainConfig()
  for name in names:
    setattr(old, name, getattr(train, name))
  old_text = text_format.MessageToString(old, as_one_line=True)
  new_text = "precision: " + train_pb2.TrainConfig.Precision.Name(precision)
  if train.HasField("precision") and train.precision != precision:
    set_text = train_pb2.TrainConfig.Precision.Name(train.precision)
    raise ConfigError(
        f"{source}: train_config sets both the deprecated {old_text} (that is "
        f"{new_text}) and precision: {set_text}, which disagree; delete "
        f"{' and '.join(names)} and keep only precision")
  logging.warning("%s: train_config { %s } is deprecated; read as "
                  "train_config { %s }, write that instead", source, old_text,
                  new_text)
  for name in names:
    train.ClearField(name)
  train.precision = precision
  return config


def load_pipeline_config(path, overrides=(), appends=()):
  """Reads a pipeline config file and applies text-format overrides.

  Args:
    path: a .config file in protobuf text format.
    overrides: text-format snippets merged on top, e.g.
      "train_config { num_steps: 10 }": a value given replaces the file's,
      a repeated field given replaces the whole list (the Object Detection
      API's override semantics), messages merge field by field; a length
      in train_config (num_steps or num_epochs) replaces the file's other
      one.
    appends: snippets merged after the overrides with protobuf's own Merge:
      repeated fields are appended to (e.g. one more TFRecord glob).

  Returns:
    pipeline_pb2.PipelineConfig.

  Raises:
    ConfigError: the file is missing or does not parse; the message names the
      file, the line and the field.
  """
  if not path:
    raise ConfigError("--config_path is required")
  if not tf.io.gfile.exists(path):
    raise ConfigError(f"config file not found: {path}")
  if tf.io.gfile.isdir(path):
    raise ConfigError(f"--config_path {path} is a directory; give the "
                      ".config file (a training logdir holds pipeline.config)")
  with tf.io.gfile.GFile(path, "rb") as f:
    data = f.read()
  try:
    text = data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ConfigError(f"{path}: not a text config (byte {e.start} is not "
                      "UTF-8); give a protobuf text-format .config file") from None
  config = parse_pipeline_config(text, source=path)
  # The file's own paths only: an override's are typed from the shell.
  _resolve_beside(config, os.path.dirname(path))
  for i, override in enumerate(overrides or ()):
    merge_replacing_lists(_snippet(
        override, f"--config_override #{i + 1} ({override!r})", config), config)
  for i, append in enumerate(appends or ()):
    # MergeFrom appends to the repeated fields.
    config.MergeFrom(_snippet(
        append, f"--config_append #{i + 1} ({append!r})", config))
  return config


def _snippet(text, source, config):
  """An override or append parsed apart, ready to merge onto `config`.

  Apart, so that its deprecated fields are migrated before they meet the
  config's, and a length it gives can drop the config's other one.
  """
  snippet = pipeline_pb2.PipelineConfig()
  try:
    text_format.Merge(text, snippet)
  except text_format.ParseError as e:
    raise ConfigError(f"{source}: {e}") from None
  check_finite(snippet, source)
  migrate_deprecated_fields(snippet, source, base=config)
  _clear_replaced_length(snippet, config)
  return snippet


def _clear_replaced_length(snippet, config):
  """A snippet giving the run's length in one unit drops the config's other.

  train_config's length is num_steps or num_epochs. `train_config {
  num_epochs: 30 }` over a config with num_steps means "30 epochs instead"
  (as --num_steps means "this many steps instead" of num_epochs), not a
  second length that disagrees with the first. A file, or one snippet, that
  sets both is still checked by the run (run_settings.resolve_num_steps).
  num_epochs: 0 ("num_steps decides") replaces nothing.
  """
  if not snippet.HasField("train_config"):
    return
  given = snippet.train_config
  if given.HasField("num_steps") and not given.HasField("num_epochs"):
    config.train_config.ClearField("num_epochs")
  elif given.num_epochs and not given.HasField("num_steps"):
    config.train_config.ClearField("num_steps")


def merge_replacing_lists(source, target):
  """Merges the fields set in `source` into `target`; lists are replaced.

  Scalars overwrite, messages merge recursively (setting a oneof member
  switches the oneof), and a repeated field in `source` replaces the
  target's list instead of extending it.
  """
  for field, value in source.ListFields():
    if field.is_repeated:
      target.ClearField(field.name)
      getattr(target, field.name).MergeFrom(value)
    elif field.message_type is not None:
      child = getattr(target, field.name)
      child.SetInParent()
      merge_replacing_lists(value, child)
    else:
      setattr(target, field.name, value)


def _is_local(*paths):
  """No URL among `paths` (gs://...): those are never made relative."""
  return not any("://" in path for path in paths)


def _checkpoint_exists(path):
  """A checkpoint prefix (its .index) or a folder of checkpoints."""
  return tf.io.gfile.exists(path + ".index") or tf.io.gfile.isdir(path)


def _resolve_beside(config, directory):
  """Reads a relative fine_tune_checkpoint beside the config file, if there.

  The path becomes absolute, so that the loaded config means the same
  wherever it is saved next (a training run's as-run config).
  """
  train = config.train_config
  path = train.fine_tune_checkpoint
  if not path or os.path.isabs(path) or not _is_local(path, directory):
    return
  beside = os.path.join(directory, path)
  if _checkpoint_exists(beside):
    train.fine_tune_checkpoint = os.path.abspath(beside)


def _relative_inside(path, directory):
  """`path` relative to `directory` when it lies inside it, else `path`."""
  if not path or not _is_local(path, directory):
    return path
  relative = os.path.relpath(os.path.abspath(path), os.path.abspath(directory))
  inside = relative != os.pardir and not relative.startswith(
      os.pardir + os.sep)
  return relative if inside else path


def save_pipeline_config(config, directory):
  """Writes `config` as `directory`/pipeline.config and returns the path.

  A fine_tune_checkpoint inside `directory` is written relative to it
  (load_pipeline_config reads it back from there), so the folder can move.
  """
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, PIPELINE_CONFIG_NAME)
  train = config.train_config
  relative = _relative_inside(train.fine_tune_checkpoint, directory)
  if relative != train.fine_tune_checkpoint:
    config = copy.deepcopy(config)
    config.train_config.fine_tune_checkpoint = relative
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text_format.MessageToString(config))
  return path


def get_model_config(model_config):
  """Returns the set architecture message (ICNet, PSPNet, ...) of a Model proto."""
  which = require_oneof(model_config, "model", "model")
  return getattr(model_config, which)
