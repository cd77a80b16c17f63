"""The state of one migration: the config being written and the report.

Rules and finishers write through OutMessage, which carries the dotted
fast_seg path of what it writes, so that every report entry can say where a
TF1 value went; Migration collects those entries and the TF1 values held
for a finisher.
"""

import collections

from fast_seg.protos import pipeline_pb2
from fast_seg.tools.migrate_config import reader
from fast_seg.tools.migrate_config import values

Entry = collections.namedtuple("Entry", "path value line note carried")


def join(path, name):
  """`path.name`, or `name` at the top of the config (empty `path`)."""
  return f"{path}.{name}" if path else name


class OutMessage:
  """A fast_seg message being written, with its dotted path for the report."""

  def __init__(self, message, path):
    self.message, self.path = message, path

  def child(self, dotted):
    message, path = self.message, self.path
    for name in filter(None, dotted.split(".")):
      message = getattr(message, name)
      message.SetInParent()
      path = join(path, name)
    return OutMessage(message, path)

  def add(self, name):
    items = getattr(self.message, name)
    return OutMessage(items.add(), f"{join(self.path, name)}[{len(items) - 1}]")

  def set(self, dotted, value):
    """Sets (or appends to, if repeated) a field; returns its full path."""
    parent, _, name = dotted.rpartition(".")
    target = self.child(parent)
    if target.message.DESCRIPTOR.fields_by_name[name].is_repeated:
      getattr(target.message, name).append(value)
    else:
      setattr(target.message, name, value)
    return join(target.path, name)


class Migration:
  """The config being written, the report, and the TF1 values that only
  map together (loss weights, the fine-tune checkpoint and its type), held
  until the walk is done."""

  def __init__(self, source):
    self.source = source
    self.config = pipeline_pb2.PipelineConfig()
    self.entries = []
    self.arch = None  # OutMessage of the fast_seg ICNet / PSPNet message
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
    value = parse(self, values.last(self, fields, path), path) if fields else default
    return value, fields, path


def _shown(field):
  """A TF1 value as the report shows it: as written, blocks elided."""
  if field is None:
    return "(not set)"
  if isinstance(field.value, reader.Message):
    return "{...}"
  return f'"{field.value.text}"' if field.value.quoted else field.value.text


def _line(field):
  return field.line if field is not None else 0
