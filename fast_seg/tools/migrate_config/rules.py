"""The rule language the TF1 tables are written in.

A table maps the field names of one TF1 message to rules. A rule is called
as rule(m, fields, out, path): it maps the TF1 fields of one name (every
occurrence) onto `out`, an OutMessage, and `path` is their dotted TF1 path.
The helpers below build the common rules, so a table reads as what happens
to each field: written to a new name, mapped as a block, dropped with a
reason, fixed in fast_seg, or held for a finisher.
"""

from fast_seg.tools.migrate_config import migration
from fast_seg.tools.migrate_config import reader
from fast_seg.tools.migrate_config import values


def apply_table(m, table, node, out, path):
  """Maps one TF1 message with its table; fields not in it are reported.

  A rule with a `default` runs with TF1's default when the field is unset:
  set only where fast_seg's default differs, so the old behaviour is kept.
  """
  for name, rule in table.items():
    fields, field_path = node.all(name), migration.join(path, name)
    default = getattr(rule, "default", None)
    if not fields and default is not None:
      fields = [reader.Field(name, reader.Scalar(str(default), False), node.line)]
      m.check(field_path, None, f"not set: TF1's default {default} written "
              "(fast_seg's default differs)", line=node.line)
    if fields:
      rule(m, fields, out, field_path)
  for field in node.fields:
    if field.name not in table:
      m.skip(migration.join(path, field.name), field,
             "unknown field: not in the fast-semantic-segmentation schema this "
             "tool knows; nothing written")


def write_to(new, parse, default=None, convert=None, note=None):
  """Rule: the value, parsed (and converted), written to `new` under out."""

  def rule(m, fields, out, path):
    field = values.last(m, fields, path)
    value = parse(m, field, path)
    value = convert(value) if convert else value
    written = out.set(new, value)
    if note:
      m.check(path, field, f"-> {written}: {value}, {note}")

  rule.default = default
  return rule


def map_block(table, into=""):
  """Rule: each TF1 block mapped with `table` into the message at `into`
  (the message being written itself when empty: the block is flattened)."""

  def rule(m, fields, out, path):
    for field in fields:
      apply_table(m, table, values.block(m, field, path), out.child(into), path)

  return rule


def drop(note):
  """Rule: the field is reported, with `note` saying why, and not written."""

  def rule(m, fields, out, path):
    for field in fields:
      m.skip(path, field, note)

  return rule


def fixed_at(expected, parse, same, other):
  """Rule: a TF1 option fast_seg has fixed at `expected`: nothing to write
  when it matches, reported as lost when it does not."""

  def rule(m, fields, out, path):
    for field in fields:
      if parse(m, field, path) == expected:
        m.skip(path, field, f"nothing to write: {same}")
      else:
        m.skip(path, field, f"no equivalent: {other}")

  return rule


def hold(key):
  """Rule: kept as m.held[key] for a finisher, where fields that map
  together meet."""

  def rule(m, fields, out, path):
    m.held[key] = (fields, path)

  return rule
