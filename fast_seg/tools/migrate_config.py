"""Converts a fast-semantic-segmentation (TF1) pipeline config to fast_seg's.

  python -m fast_seg.tools.migrate_config --input old.config --output new.config

The TF1 project (oandrienko/fast-semantic-segmentation) had protos of its own,
which are not installed here, so its text format is read by a small tolerant
parser into a generic tree and mapped onto fast_seg's PipelineConfig with one
table per TF1 message. A TF1 field is either written or listed, with the
reason, in the report that is printed and written as comments at the top of
the output: nothing is dropped silently. The result is parsed back and its
model, optimizer and augmentations are built, so a written config is known
to load. The tables follow the TF1 protos (protos/*.proto of that project);
docs/migrating.md has the renames as a table.
"""

import collections
import os
import re

from absl import flags
from google.protobuf import text_format
import tensorflow as tf

from fast_seg import feature_extractors
from fast_seg.builders import model_builder
from fast_seg.builders import optimizer_builder
from fast_seg.builders import preprocessor_builder
from fast_seg.protos import hyperparams_pb2
from fast_seg.protos import pipeline_pb2
from fast_seg.protos import train_pb2
from fast_seg.training import train_lib
from fast_seg.utils import cli
from fast_seg.utils import config_util

FLAGS = flags.FLAGS

_NOT_TF1 = "not a fast-semantic-segmentation (TF1) pipeline config"
_TF_DATA = "not needed (tf.data)"
_PATH_NOTE = ("kept as written; check this path; fast_seg reads TFRecords with "
              "the same keys; see docs/migrating.md")

# ----------------------------------------------------------------------------
# Reading the TF1 text format into a generic tree.

Scalar = collections.namedtuple("Scalar", "text quoted")
Field = collections.namedtuple("Field", "name value line")
_Token = collections.namedtuple("_Token", "kind text line")


class Message:
  """A parsed `{ ... }` block: its fields in file order (names may repeat)."""

  def __init__(self, fields, line):
    self.fields = fields
    self.line = line

  def all(self, name):
    return [f for f in self.fields if f.name == name]


_TOKENS = re.compile(r"""
    (?P<skip>\s+|\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<word>[\w.+-]+)
  | (?P<mark>[{}<>\[\]:,;])
""", re.VERBOSE)
_NAME = re.compile(r"^[A-Za-z_]\w*$")
_CLOSERS = {"{": "}", "<": ">"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


def _tokenize(text, source):
  """Text-format tokens; a character no config has means it is no config."""
  tokens, pos, line = [], 0, 1
  while pos < len(text):
    match = _TOKENS.match(text, pos)
    if not match:
      raise ValueError(f"{source}: line {line}: unexpected {text[pos]!r}; {_NOT_TF1}")
    if match.lastgroup != "skip":
      tokens.append(_Token(match.lastgroup, match.group(), line))
    line += match.group().count("\n")
    pos = match.end()
  return tokens


class _Parser:
  """Recursive descent: `name: scalar`, `name: [a, b]`, `name [:] { ... }`.

  Tolerant where TF1's own parser was (optional colon before a block,
  `< >` blocks, separators, single quotes, enum words) so that every config
  it read is read here; strict about structure, so other files are refused.
  """

  def __init__(self, tokens, source):
    self._tokens, self._pos, self._source = tokens, 0, source

  def _peek(self, text=None):
    token = self._tokens[self._pos] if self._pos < len(self._tokens) else None
    return token if text is None or (token and token.text == text) else None

  def _take(self, what):
    token = self._peek()
    if token is None:
      raise self._error(None, f"the file ends where {what} should be")
    self._pos += 1
    return token

  def _error(self, token, message):
    line = token.line if token else (self._tokens[-1].line if self._tokens else 1)
    return ValueError(f"{self._source}: line {line}: {message}; {_NOT_TF1}")

  def message(self, closer=None, line=1):
    fields = []
    while True:
      token = self._peek()
      if token is None:
        if closer:
          raise self._error(None, f"a '{closer}' is missing")
        return Message(fields, line)
      if closer and token.text == closer:
        self._pos += 1
        return Message(fields, line)
      fields.extend(self._field())

  def _field(self):
    name = self._take("a field name")
    if name.kind != "word" or not _NAME.match(name.text):
      raise self._error(name, f"expected a field name, got {name.text!r}")
    colon = bool(self._peek(":"))
    self._pos += colon
    token = self._take(f"a value of {name.text}")
    if token.text in _CLOSERS:
      values = [self.message(_CLOSERS[token.text], name.line)]
    elif colon and token.text == "[":
      values = self._list(name)
    elif colon and token.kind in ("word", "string"):
      values = [self._scalar(token)]
    else:
      raise self._error(token, f"expected ': value' or '{{' after {name.text}")
    if self._peek(",") or self._peek(";"):
      self._pos += 1
    return [Field(name.text, value, name.line) for value in values]

  def _list(self, name):
    values = []
    while not self._peek("]"):
      token = self._take(f"the end of the list {name.text}")
      if token.text in _CLOSERS:
        values.append(self.message(_CLOSERS[token.text], token.line))
      elif token.kind in ("word", "string"):
        values.append(self._scalar(token))
      else:
        raise self._error(token, f"unexpected {token.text!r} in the list {name.text}")
      if self._peek(","):
        self._pos += 1
    self._pos += 1
    return values

  def _scalar(self, token):
    if token.kind == "word":
      return Scalar(token.text, False)
    text = _unquote(token.text)
    while self._peek() and self._peek().kind == "string":  # "a" "b" is "ab"
      text += _unquote(self._take("a string").text)
    return Scalar(text, True)


def _unquote(quoted):
  return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), quoted[1:-1])


def parse_tf1(text, source):
  """The TF1 config as a Message tree; ValueError naming `source` if none."""
  return _Parser(_tokenize(text, source), source).message()


# ----------------------------------------------------------------------------
# The migration: the config being written and the report.

Entry = collections.namedtuple("Entry", "path value line note carried")


def _join(path, name):
  return f"{path}.{name}" if path else name


class _Out:
  """A fast_seg message being written, with its dotted path for the report."""

  def __init__(self, message, path):
    self.message, self.path = message, path

  def child(self, dotted):
    message, path = self.message, self.path
    for name in filter(None, dotted.split(".")):
      message = getattr(message, name)
      message.SetInParent()
      path = _join(path, name)
    return _Out(message, path)

  def add(self, name):
    items = getattr(self.message, name)
    return _Out(items.add(), f"{_join(self.path, name)}[{len(items) - 1}]")

  def set(self, dotted, value):
    """Sets (or appends to, if repeated) a field; returns its full path."""
    parent, _, name = dotted.rpartition(".")
    target = self.child(parent)
    if target.message.DESCRIPTOR.fields_by_name[name].is_repeated:
      getattr(target.message, name).append(value)
    else:
      setattr(target.message, name, value)
    return _join(target.path, name)


class Migration:
  """The config being written, the report, and the TF1 values that only
  map together (loss weights, the fine-tune checkpoint and its type), held
  until the walk is done."""

  def __init__(self, source):
    self.source = source
    self.config = pipeline_pb2.PipelineConfig()
    self.entries = []
    self.arch = None  # _Out of the fast_seg ICNet / PSPNet message
    self.held = {}  # TF1 field name -> (fields, TF1 path)

  def skip(self, path, field, note):
    """Reports a TF1 field that is not carried over."""
    self.entries.append(Entry(path, _shown(field), _line(field), note, False))

  def check(self, path, field, note, line=None):
    """Reports a TF1 field that is carried over but deserves a look."""
    self.entries.append(Entry(path, _shown(field), line or _line(field), note, True))

  def bad(self, field, path, expected):
    return ValueError(f"{self.source}: line {field.line}: {path}: expected "
                      f"{expected}, got {_shown(field)}")

  def held_value(self, name, parse, default):
    """(value, fields, path) of a held field; `default` when it is unset."""
    fields, path = self.held.get(name, ([], None))
    value = parse(self, _last(self, fields, path), path) if fields else default
    return value, fields, path


def _shown(field):
  if field is None:
    return "(not set)"
  if isinstance(field.value, Message):
    return "{...}"
  return f'"{field.value.text}"' if field.value.quoted else field.value.text


def _line(field):
  return field.line if field is not None else 0


# ----------------------------------------------------------------------------
# Values.

_TRUE = ("true", "True", "t", "1")
_FALSE = ("false", "False", "f", "0")


def _scalar(m, field, path):
  if isinstance(field.value, Message):
    raise m.bad(field, path, "a value, not a { } block")
  return field.value


def _message(m, field, path):
  if not isinstance(field.value, Message):
    raise m.bad(field, path, "a { } block")
  return field.value


def _float(m, field, path):
  value = _scalar(m, field, path)
  try:
    number = float(value.text)
  except ValueError:
    number = None
  if number is None or value.quoted:
    raise m.bad(field, path, "a number")
  return number


def _int(m, field, path):
  value = _float(m, field, path)
  if not value.is_integer():
    raise m.bad(field, path, "an integer")
  return int(value)


def _bool(m, field, path):
  text = _scalar(m, field, path).text
  if text not in _TRUE + _FALSE:
    raise m.bad(field, path, "true or false")
  return text in _TRUE


def _string(m, field, path):
  return _scalar(m, field, path).text


def _last(m, fields, path):
  """The value that counts: TF1 merged its configs, so the last one won."""
  if len(fields) > 1:
    lines = ", ".join(str(f.line) for f in fields)
    m.check(path, fields[-1], f"given {len(fields)} times (lines {lines}); the "
            "last one is used, as TF1 did")
  return fields[-1]


# ----------------------------------------------------------------------------
# Rules: rule(m, fields, out, path) maps the TF1 fields of one name (all
# occurrences) onto `out`; `path` is their dotted TF1 path.


def _apply(m, table, node, out, path):
  """Maps one TF1 message with its table; fields not in it are reported.

  A rule with a `default` runs with TF1's default when the field is unset:
  set only where fast_seg's default differs, so the old behaviour is kept.
  """
  for name, rule in table.items():
    fields, field_path = node.all(name), _join(path, name)
    default = getattr(rule, "default", None)
    if not fields and default is not None:
      fields = [Field(name, Scalar(str(default), False), node.line)]
      m.check(field_path, None, f"not set: TF1's default {default} written "
              "(fast_seg's default differs)", line=node.line)
    if fields:
      rule(m, fields, out, field_path)
  for field in node.fields:
    if field.name not in table:
      m.skip(_join(path, field.name), field,
             "unknown field: not in the fast-semantic-segmentation schema this "
             "tool knows; nothing written")


def _to(new, parse, default=None, convert=None, note=None):
  """Rule: the value, parsed (and converted), written to `new` under out."""

  def rule(m, fields, out, path):
    field = _last(m, fields, path)
    value = parse(m, field, path)
    value = convert(value) if convert else value
    written = out.set(new, value)
    if note:
      m.check(path, field, f"-> {written}: {value}, {note}")

  rule.default = default
  return rule


def _into(table, new=""):
  """Rule: each TF1 block mapped with `table` into the message at `new`."""

  def rule(m, fields, out, path):
    for field in fields:
      _apply(m, table, _message(m, field, path), out.child(new), path)

  return rule


def _skip(note):
  """Rule: the field is reported, with `note` saying why, and not written."""

  def rule(m, fields, out, path):
    for field in fields:
      m.skip(path, field, note)

  return rule


def _only(expected, parse, same, other):
  """Rule: a TF1 option fast_seg has fixed at `expected`: nothing to write
  when it matches, reported as lost when it does not."""

  def rule(m, fields, out, path):
    for field in fields:
      if parse(m, field, path) == expected:
        m.skip(path, field, f"nothing to write: {same}")
      else:
        m.skip(path, field, f"no equivalent: {other}")

  return rule


def _hold(key):
  """Rule: kept as m.held[key] for a finisher, where fields that map
  together meet."""

  def rule(m, fields, out, path):
    m.held[key] = (fields, path)

  return rule


# ----------------------------------------------------------------------------
# Rules with their own logic.

_EXTRACTORS = {"dilated_resnet50": "resnet_v1_50",
               "dilated_mobilenet": "mobilenet_v2"}
# The TF1 project's single_stage_icnet_1.0_1025_mobilenet_v2.config.
_MISSPELT = {"dialted_mobilenet": "dilated_mobilenet"}


def _extractor_type(m, fields, out, path):
  field = _last(m, fields, path)
  name = _string(m, field, path)
  if name in _MISSPELT:
    m.check(path, field, f"read as '{_MISSPELT[name]}' (a misspelling in a "
            "TF1 sample config, which TF1's builder refused)")
  name = _MISSPELT.get(name, name)
  if name not in _EXTRACTORS:
    raise m.bad(field, path, f"a TF1 feature extractor ({', '.join(_EXTRACTORS)})")
  out.set("type", _EXTRACTORS[name])


def _pooling_factors(m, fields, out, path):
  """TF1 pooled to size/factor, so whole factors are fast_seg's bin counts."""
  factors = [_float(m, f, path) for f in fields]
  if all(f.is_integer() and f >= 1 for f in factors):
    for factor in factors:
      out.set("pyramid_bins", int(factor))
    return
  for field in fields:
    m.skip(path, field, "no equivalent: fast_seg's pyramid_bins are whole bin "
           "counts; the model's default bins apply")


def _architecture(name, table):
  """Rule: `icnet` or `pspnet`, the one architecture of the model."""

  def rule(m, fields, out, path):
    if m.arch is not None or len(fields) > 1:
      raise m.bad(fields[-1], path, "one architecture in model { }")
    m.arch = out.child(name)
    _apply(m, table, _message(m, fields[0], path), m.arch, path)

  return rule


def _adam(m, fields, out, path):
  """tf.train.AdamOptimizer's epsilon was 1e-8 (Keras': 1e-7)."""
  adam = out.child("adam_optimizer")
  adam.set("epsilon", 1e-8)
  m.check(path, fields[-1], f"-> {adam.path}: epsilon 1e-8 written, "
          "tf.train.AdamOptimizer's default (Keras': 1e-7)")
  _into(_OPTIMIZER_LEARNING_RATE, "adam_optimizer")(m, fields, out, path)


def _input_paths(m, fields, out, path):
  for field in fields:
    written = out.set("tf_record_input_path", _string(m, field, path))
    m.check(path, field, f"-> {written}: {_PATH_NOTE}")


def _reader_epochs(m, fields, out, path):
  field = _last(m, fields, path)
  if _int(m, field, path) == 0:
    m.skip(path, field, "nothing to write: 0 repeated the data until training "
           "stopped, as fast_seg's training reader does (eval reads once)")
  else:
    m.skip(path, field, "no equivalent in the reader: set train_config."
           "num_epochs instead of num_steps (counted in dataset_info.json)")


def _variance_distribution(uniform):
  distributions = hyperparams_pb2.VarianceScalingInitializer
  return distributions.UNIFORM if uniform else distributions.TRUNCATED_NORMAL


def _variance_mode(m, field, path):
  text = _string(m, field, path)
  modes = hyperparams_pb2.VarianceScalingInitializer.Mode
  if text in modes.keys():
    return modes.Value(text)
  if text.isdigit() and int(text) in modes.values():
    return int(text)
  raise m.bad(field, path, f"one of {', '.join(modes.keys())}")


# ----------------------------------------------------------------------------
# The tables, one per TF1 message (its protos/*.proto), leaves first.

_L2_NOTE = ("halved: Keras' L2 adds weight * sum(w^2), slim's "
            "l2_regularizer(weight) half of that")

_HYPERPARAMS = {
    "regularizer": _into({
        "l1_regularizer": _into(
            {"weight": _to("weight", _float, default=1.0)}, "l1_regularizer"),
        "l2_regularizer": _into(
            {"weight": _to("weight", _float, default=1.0, convert=lambda w: w / 2,
                           note=_L2_NOTE)}, "l2_regularizer"),
    }, "regularizer"),
    "initializer": _into({
        "truncated_normal_initializer": _into({
            "mean": _to("mean", _float),
            "stddev": _to("stddev", _float, default=1.0),
        }, "truncated_normal_initializer"),
        "variance_scaling_initializer": _into({
            "factor": _to("scale", _float),
            "uniform": _to("distribution", _bool, convert=_variance_distribution),
            "mode": _to("mode", _variance_mode),
        }, "variance_scaling_initializer"),
    }, "initializer"),
    "batch_norm": _into({
        "decay": _to("decay", _float, default=0.9997),
        "epsilon": _to("epsilon", _float),
        "train": _to("train", _bool),
        "center": _only(True, _bool, "fast_seg's batch norms always learn beta",
                        "fast_seg's batch norms always learn beta (center)"),
        "scale": _only(True, _bool, "fast_seg's batch norms always learn gamma",
                       "fast_seg's batch norms always learn gamma (scale)"),
    }, "batch_norm"),
}

_LOSS = {
    "classification_loss": _into({"softmax": _into({}, "softmax_cross_entropy")}),
    "use_auxiliary_loss": _hold("use_auxiliary_loss"),
    "ignore_label": _hold("ignore_label"),
    "upsample_logits": _to("upsample_logits", _bool),
}

_ARCHITECTURE = {
    "num_classes": _to("num_classes", _int),
    "feature_extractor": _into({"type": _extractor_type}, "feature_extractor"),
    "filter_scale": _to("feature_extractor.filter_scale", _float),
    "pooling_factors": _pooling_factors,
    "hyperparams": _into(_HYPERPARAMS, "hyperparams"),
    "loss": _into(_LOSS, "loss"),
}

_ICNET = {
    **_ARCHITECTURE,
    "main_branch_loss_weight": _hold("main_branch_loss_weight"),
    "second_branch_loss_weight": _hold("second_branch_loss_weight"),
    "first_branch_loss_weight": _hold("first_branch_loss_weight"),
    "pretrain_single_branch_mode": _only(
        False, _bool, "false is ICNet's normal three-branch training",
        "to pretrain the trunk on one branch, train model { pspnet } and seed "
        "ICNet from it with fine_tune_checkpoint + CLASSIFICATION "
        "(configs/icnet_resnet50_1.0_cityscapes_1024.config)"),
    "mobile_ops_only": _skip("not needed: it avoided tf.add_n for TF1 mobile "
                             "converters; export.py checks every format it writes"),
}

_MODEL = {"icnet": _architecture("icnet", _ICNET),
          "pspnet": _architecture("pspnet", _ARCHITECTURE)}


def _learning_rate(new, defaults, fields):
  return _into({name: _to(name, kind, default=defaults.get(name))
                for name, kind in fields}, new)


_LEARNING_RATE = {
    "constant_learning_rate": _learning_rate(
        "constant_learning_rate", {"learning_rate": 0.002},
        [("learning_rate", _float)]),
    "exponential_decay_learning_rate": _learning_rate(
        "exponential_decay_learning_rate",
        {"initial_learning_rate": 0.002, "decay_steps": 4000000},
        [("initial_learning_rate", _float), ("decay_steps", _int),
         ("decay_factor", _float), ("staircase", _bool)]),
    # TF1 decayed to 0 (end_learning_rate=0 in its builder), as fast_seg does.
    "polynomial_decay_learning_rate": _learning_rate(
        "polynomial_decay_learning_rate",
        {"initial_learning_rate": 0.0001, "decay_steps": 4000000},
        [("initial_learning_rate", _float), ("decay_steps", _int),
         ("power", _float)]),
}
_OPTIMIZER_LEARNING_RATE = {"learning_rate": _into(_LEARNING_RATE, "learning_rate")}

_OPTIMIZER = {
    "momentum_optimizer": _into({
        **_OPTIMIZER_LEARNING_RATE,
        "momentum_optimizer_value": _to("momentum", _float),
    }, "momentum_optimizer"),
    "adam_optimizer": _adam,
}


def _augmentation(new, table):
  """Rule: each TF1 preprocessor_step member becomes one fast_seg
  data_augmentation_options entry, in the file's order."""

  def rule(m, fields, out, path):
    for field in fields:
      step = out.add("data_augmentation_options").child(new)
      _apply(m, table, _message(m, field, path), step, path)

  return rule


_CHANNELS = "fast_seg's images have 3 channels and labels 1"
_PREPROCESSOR_STEP = {
    "random_image_scale": _augmentation("random_scale", {
        "min_scale_ratio": _to("min_scale_ratio", _float),
        "max_scale_ratio": _to("max_scale_ratio", _float),
    }),
    "random_image_crop": _augmentation("random_crop", {
        "crop_height": _to("crop_height", _int),
        "crop_width": _to("crop_width", _int),
        "images_channel_dim": _only(3, _int, _CHANNELS, _CHANNELS),
        "labels_channel_dim": _only(1, _int, _CHANNELS, _CHANNELS),
        "int_seed": _skip("no equivalent: fast_seg's augmentations take no seed"),
    }),
    "random_horizontal_flip": _augmentation("random_horizontal_flip", {}),
    "set_fixed_image_size": _skip(
        f"{_TF_DATA}: it set static shapes for TF1's queues; batches get "
        "their size from random_crop"),
    "aspect_ratio_image_resize": _skip(
        "no equivalent: nearest are fixed_resize and resize_with_pad "
        "(docs/augmentations.md)"),
}

_TRAIN = {
    "batch_size": _to("batch_size", _int, default=32),
    "num_steps": _hold("num_steps"),
    "optimizer": _into(_OPTIMIZER, "optimizer"),
    "preprocessor_step": _into(_PREPROCESSOR_STEP),
    "fine_tune_checkpoint": _hold("fine_tune_checkpoint"),
    "fine_tune_checkpoint_type": _hold("fine_tune_checkpoint_type"),
    "freeze_fine_tune_backbone": _to("freeze_backbone", _bool),
    "add_regularization_loss": _hold("add_regularization_loss"),
    "keep_checkpoint_every_n_hours": _skip(
        "no equivalent: fast_seg keeps the last max_checkpoints_to_keep "
        "checkpoints, and the best one with eval_every_n_steps"),
    "quantize_with_delay": _skip(
        "no equivalent: train_config.quantization_aware_training {} quantizes "
        "from the first step of the run it is set in; to start after N float "
        "steps, train N steps, then resume with it set (docs/compression.md)"),
    "batch_queue_capacity": _skip(_TF_DATA),
    "num_batch_queue_threads": _skip(_TF_DATA),
    "prefetch_queue_capacity": _skip(_TF_DATA),
    "num_queue_threads": _skip(_TF_DATA),
}

_READER = {
    "tf_record_input_reader": _into({"input_path": _input_paths}),
    "shuffle": _to("shuffle", _bool),
    "shuffle_buffer": _to("shuffle_buffer_size", _int),
    "num_epochs": _reader_epochs,
    "num_readers": _skip(f"{_TF_DATA}; files read in parallel: num_parallel_reads"),
    "num_parallel_calls": _skip(f"{_TF_DATA}; fast_seg's num_parallel_calls 0 "
                                "lets tf.data tune it"),
    "queue_capacity": _skip(_TF_DATA),
    "min_after_dequeue": _skip(_TF_DATA),
    "num_examples": _skip("not needed: fast_seg counts the examples in the "
                          "dataset_info.json beside the TFRecords"),
}

_EVAL = {
    "num_examples": _to("num_examples", _int),
    "ignore_label": _hold("eval_ignore_label"),
    "eval_input_type": _into({
        "padded_eval_input": _into({"height": _to("padded_height", _int),
                                    "width": _to("padded_width", _int)}),
        "cropped_eval_input": _skip(
            "no equivalent: TF1 scored one random crop per image; fast_seg "
            "scores whole images (padded_height / padded_width) or slides a "
            "window over them (sliding_window)"),
    }),
    "num_visualizations": _to("num_visualizations", _int),
    "eval_interval_secs": _skip("no equivalent: eval.py --timeout waits for "
                                "each new checkpoint"),
    "max_evals": _skip("no equivalent: eval.py evaluates every new checkpoint "
                       "until --timeout passes without one"),
    "visualization_export_dir": _skip("no equivalent: eval.py writes its PNGs "
                                      "under --eval_dir/visualizations"),
    "visualize_groundtruth": _only(
        True, _bool, "fast_seg's eval PNGs always show the ground truth",
        "fast_seg's eval PNGs always show the ground truth"),
    "crop_height": _skip("no equivalent: if this was the padded eval size, "
                         "set eval_config.padded_height"),
    "crop_width": _skip("no equivalent: if this was the padded eval size, "
                        "set eval_config.padded_width"),
}

_PIPELINE = {
    "model": _into(_MODEL, "model"),
    "train_config": _into(_TRAIN, "train_config"),
    "train_input_reader": _into(_READER, "train_input_reader"),
    "eval_config": _into(_EVAL, "eval_config"),
    "eval_input_reader": _into(_READER, "eval_input_reader"),
}

# ----------------------------------------------------------------------------
# Finishers: TF1 fields that map together, once every block was read.

# TF1 ICNet's defaults (protos/icnet.proto), fast_seg's order of aux_weights.
_BRANCH_WEIGHTS = {"main_branch_loss_weight": 1.0,
                   "second_branch_loss_weight": 0.4,  # 1/8 head
                   "first_branch_loss_weight": 0.4}  # 1/16 head
_PSPNET_AUX_WEIGHT = 0.4  # hard-coded in TF1's model builder


def _finish_loss(m):
  """TF1 built the auxiliary heads only with use_auxiliary_loss (default
  false); fast_seg always builds them, and a weight of 0 removes one."""
  use_aux, use_fields, use_path = m.held_value("use_auxiliary_loss", _bool, False)
  weights = {name: m.held_value(name, _float, default)
             for name, default in _BRANCH_WEIGHTS.items()}
  loss = m.arch.child("loss")
  is_icnet = m.arch.path == "model.icnet"
  if use_aux and is_icnet:
    loss.set("main_weight", weights["main_branch_loss_weight"][0])
    aux = [weights["second_branch_loss_weight"][0],
           weights["first_branch_loss_weight"][0]]
  else:
    aux = [_PSPNET_AUX_WEIGHT if use_aux else 0.0] * (2 if is_icnet else 1)
  for name, (_, fields, path) in weights.items():
    if fields and not use_aux:
      m.skip(path, fields[-1], "not used: TF1 ignored it without "
             "use_auxiliary_loss: true (main weight 1, no auxiliary losses)")
  loss.message.ClearField("aux_weights")
  loss.message.aux_weights.extend(aux)
  if not use_aux:
    m.check(use_path or f"{m.arch.path}.loss.use_auxiliary_loss",
            use_fields[-1] if use_fields else None,
            f"-> {loss.path}.aux_weights: {', '.join(map(str, aux))}: no "
            "auxiliary losses, as in TF1 (a weight of 0 removes that head)")


def _finish_fine_tune(m):
  """TF1's 'classification' checkpoints were ImageNet tf-slim files, which
  fast_seg reads through feature_extractor.weights_path; its segmentation
  types restored every layer, as fast_seg's SEGMENTATION does."""
  path_value, path_fields, path_path = m.held_value("fine_tune_checkpoint", _string, "")
  kind, kind_fields, kind_path = m.held_value("fine_tune_checkpoint_type", _string, "")
  path_field = path_fields[-1] if path_fields else None
  kind_field = kind_fields[-1] if kind_fields else None
  if not path_value:
    if kind_field:
      m.skip(kind_path, kind_field, "not used: no fine_tune_checkpoint is set")
    return
  if kind == "classification":
    written = m.arch.child("feature_extractor").set("weights_path", path_value)
    m.check(path_path, path_field, f"-> {written}: TF1's 'classification' "
            "checkpoints are ImageNet tf-slim files (resnet_v1_50.ckpt, "
            "mobilenet_v2_1.0_224.ckpt), which fast_seg reads from weights_path "
            "(its fine_tune_checkpoint reads fast_seg checkpoints); check this path")
    m.skip(kind_path, kind_field, "nothing to write: weights_path restores "
           "the trunk only, as TF1's 'classification' type did")
  elif kind in ("segmentation", "segmentation-finetune"):
    train = m.config.train_config
    train.fine_tune_checkpoint = path_value
    train.fine_tune_checkpoint_type = train_pb2.TrainConfig.SEGMENTATION
    m.check(path_path, path_field, "-> train_config.fine_tune_checkpoint: fast_seg "
            "cannot read TF1 model.ckpt-N checkpoints (docs/migrating.md): point "
            "it at a fast_seg checkpoint (a run's logdir, or compress.py's output "
            "for a pruned model); an ImageNet .ckpt goes to "
            f"{m.arch.path}.feature_extractor.weights_path instead")
    m.check(kind_path, kind_field, "-> train_config.fine_tune_checkpoint_type: "
            "SEGMENTATION; fast_seg's fine-tuning starts at step 0")
  else:
    given = f"'{kind}' is" if kind_field else "is not set, and"
    note = (f"no equivalent: fine_tune_checkpoint_type {given} none of "
            "classification, segmentation, segmentation-finetune")
    m.skip(path_path, path_field, note)
    m.skip(kind_path or "train_config.fine_tune_checkpoint_type", kind_field, note)


def _finish_num_steps(m):
  if not m.config.HasField("train_config"):
    return
  steps, fields, path = m.held_value("num_steps", _int, 0)
  if steps > 0:
    m.config.train_config.num_steps = steps
  else:
    m.skip(path or "train_config.num_steps", fields[-1] if fields else None,
           "no equivalent: 0 (TF1's default) trained until stopped; fast_seg "
           "needs a length: its default num_steps 10000 applies; set num_steps "
           "or num_epochs")


def _finish_regularization(m):
  add, fields, path = m.held_value("add_regularization_loss", _bool, True)
  if not fields:
    return
  if add:
    m.skip(path, fields[-1], "nothing to write: fast_seg always adds the "
           "regularizer's loss")
    return
  hyperparams = m.arch.child("hyperparams")
  hyperparams.message.ClearField("regularizer")
  m.check(path, fields[-1], f"-> {hyperparams.path}.regularizer removed: TF1 "
          "added no regularization loss")


def _finish_ignore_label(m):
  """TF1 had one ignore label for the loss and one for eval; fast_seg one."""
  label, fields, _ = m.held_value("ignore_label", _int, None)
  if fields:
    m.arch.set("ignore_label", label)
  label = m.arch.message.ignore_label
  eval_label, eval_fields, eval_path = m.held_value("eval_ignore_label", _int, None)
  if not eval_fields:
    return
  if eval_label == label:
    m.skip(eval_path, eval_fields[-1], f"nothing to write: fast_seg evaluates "
           f"with {m.arch.path}.ignore_label ({label})")
  else:
    m.skip(eval_path, eval_fields[-1], f"no equivalent: fast_seg uses "
           f"{m.arch.path}.ignore_label ({label}) for loss and metrics")


_FINISHERS = (_finish_loss, _finish_fine_tune, _finish_num_steps,
              _finish_regularization, _finish_ignore_label)


# ----------------------------------------------------------------------------
# Whole files.


def _is_fast_seg(text):
  """A config fast_seg already reads: it parses with fast_seg's protos and
  its feature extractor is one of fast_seg's (TF1's names all differ)."""
  try:
    config = config_util.parse_pipeline_config(text)
  except config_util.ConfigError:
    return False
  which = config.model.WhichOneof("model")
  return bool(which) and (getattr(config.model, which).feature_extractor.type
                          in feature_extractors.registered_names())


def migrate(text, source):
  """Maps the TF1 config `text` onto a fast_seg PipelineConfig.

  Returns:
    (pipeline_pb2.PipelineConfig, [Entry]): the config and the report.

  Raises:
    ValueError: `text` is no TF1 pipeline config, or a value cannot be
      read; the message starts with `source`.
  """
  if _is_fast_seg(text):
    raise ValueError(f"{source}: already a fast_seg config (it parses with "
                     "protos/pipeline.proto); nothing to migrate")
  tree = parse_tf1(text, source)
  m = Migration(source)
  _apply(m, _PIPELINE, tree, _Out(m.config, ""), "")
  if m.arch is None:
    raise ValueError(f"{source}: {_NOT_TF1}: no model {{ icnet {{ ... }} }} or "
                     "model { pspnet { ... } }")
  for finish in _FINISHERS:
    finish(m)
  return m.config, m.entries


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
      train_lib.check_train_config(parsed, tf.distribute.get_strategy())
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


def config_text(config):
  """Text format with short lists on one line and empty blocks as {}."""
  text = text_format.MessageToString(config, use_short_repeated_primitives=True)
  return re.sub(r"\{\n\s*\}", "{}", text)


def report_lines(entries):
  """The report: what was not carried over, then what to check; by line."""

  def text(entry):
    where = f" (line {entry.line})" if entry.line else ""
    return f"  {entry.path}: {entry.value}{where}: {entry.note}"

  lines = []
  for carried, title in ((False, "Not carried over"), (True, "Carried over, to check")):
    chosen = sorted((e for e in entries if e.carried == carried),
                    key=lambda e: e.line)
    if chosen:
      lines.append(f"{title} ({len(chosen)}):")
      lines.extend(text(e) for e in chosen)
  return lines or ["Every field was carried over."]


def _read(path):
  if os.path.isdir(path):
    raise ValueError(f"{path}: is a folder; give the TF1 .config file")
  if not os.path.isfile(path):
    raise ValueError(f"{path}: no such file")
  with open(path, "rb") as f:
    data = f.read()
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: not a text config (byte {e.start} is not "
                     f"UTF-8); {_NOT_TF1}") from None


def _check_output(output, source):
  if not output:
    raise ValueError("--output is required (the fast_seg .config to write)")
  if os.path.isdir(output):
    raise ValueError(f"{output}: is a folder; give the file to write, e.g. "
                     f"{os.path.join(output, 'pipeline.config')}")
  if os.path.exists(output) and os.path.samefile(output, source):
    raise ValueError(f"{output}: is the input file; write the fast_seg "
                     "config to another file")
  folder = os.path.dirname(os.path.abspath(output))
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder):
    raise ValueError(f"{output}: {folder} is a file, not a folder")


def run(source, output, log=print):
  """Reads, migrates, validates and writes; logs and returns the report."""
  if not source:
    raise ValueError("--input is required (the TF1 .config to convert)")
  text = _read(source)
  _check_output(output, source)
  config, entries = migrate(text, source)
  lines = report_lines(entries)
  for line in lines:  # before validating: it names what a failure comes from
    log(line)
  validate(config, source)
  header = [f"Converted from {source} (fast-semantic-segmentation, TF1) by "
            "python -m fast_seg.tools.migrate_config."] + lines
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, "w", encoding="utf-8") as f:
    f.write("".join(f"# {line}\n" for line in header) + "\n")
    f.write(config_text(config))
  log(f"wrote {output} (it loads and its model builds in fast_seg)")
  return lines


def _define_flags():
  flags.DEFINE_string("input", None, "A fast-semantic-segmentation (TF1) "
                      "pipeline config.")
  flags.DEFINE_string("output", None, "The fast_seg pipeline config to write.")


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  run(FLAGS.input, FLAGS.output)


def command():
  """The fast-seg-migrate-config command, and python -m fast_seg.tools.migrate_config."""
  _define_flags()
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
