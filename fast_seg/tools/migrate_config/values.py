"""Reading TF1 values: parse(m, field, path) -> the Python value.

Each parser is named by the kind of value it reads, so that a table says
`write_to("batch_size", values.integer)`. A value of the wrong kind raises
the Migration's error, which names the file, the line and the TF1 path.
"""

from fast_seg.tools.migrate_config import reader

_TRUE = ("true", "True", "t", "1")
_FALSE = ("false", "False", "f", "0")


def scalar(m, field, path):
  """The Scalar of a `name: value` field; a `{ }` block is an error."""
  if isinstance(field.value, reader.Message):
    raise m.bad(field, path, "a value, not a { } block")
  return field.value


def block(m, field, path):
  """The Message of a `name { ... }` field; a value is an error."""
  if not isinstance(field.value, reader.Message):
    raise m.bad(field, path, "a { } block")
  return field.value


def number(m, field, path):
  value = scalar(m, field, path)
  try:
    parsed = float(value.text)
  except ValueError:
    parsed = None
  if parsed is None or value.quoted:
    raise m.bad(field, path, "a number")
  return parsed


def integer(m, field, path):
  value = number(m, field, path)
  if not value.is_integer():
    raise m.bad(field, path, "an integer")
  return int(value)


def boolean(m, field, path):
  text = scalar(m, field, path).text
  if text not in _TRUE + _FALSE:
    raise m.bad(field, path, "true or false")
  return text in _TRUE


def string(m, field, path):
  return scalar(m, field, path).text


def last(m, fields, path):
  """The value that counts: TF1 merged its configs, so the last one won."""
  if len(fields) > 1:
    lines = ", ".join(str(f.line) for f in fields)
    m.check(path, fields[-1], f"given {len(fields)} times (lines {lines}); the "
            "last one is used, as TF1 did")
  return fields[-1]
