"""Whole files: a TF1 config read, migrated, checked and written.

migrate() walks the TF1 tree with tf1_tables.PIPELINE and then runs the
finishers; run() adds the file handling around it, and writes the output
only once validation.validate() has loaded it, so a failed migration leaves
no file behind.
"""

import os
import re

from google.protobuf import text_format

from fast_seg import feature_extractors
from fast_seg.protos import pipeline_pb2
from fast_seg.tools.migrate_config import finishers
from fast_seg.tools.migrate_config import migration
from fast_seg.tools.migrate_config import reader
from fast_seg.tools.migrate_config import rules
from fast_seg.tools.migrate_config import tf1_tables
from fast_seg.tools.migrate_config import validation


def _is_fast_seg(text):
  """A config fast_seg already reads: it parses with fast_seg's protos and
  its feature extractor is one of fast_seg's (TF1's names all differ).

  The bare protobuf parse: a fast_seg config that config_util would refuse
  (say, deprecated and current fields that disagree) is still one: the
  user is told it needs no migration, not a TF1 parse error.
  """
  config = pipeline_pb2.PipelineConfig()
  try:
    text_format.Parse(text, config)
  except text_format.ParseError:
    return False
  which = config.model.WhichOneof("model")
  return bool(which) and (getattr(config.model, which).feature_extractor.type
                          in feature_extractors.registered_names())


def migrate(text, source):
  """Maps the TF1 config `text` onto a fast_seg PipelineConfig.

  Returns:
    (pipeline_pb2.PipelineConfig, [migration.Entry]): the config and the report.

  Raises:
    ValueError: `text` is no TF1 pipeline config, or a value cannot be
      read; the message starts with `source`.
  """
  if _is_fast_seg(text):
    raise ValueError(f"{source}: already a fast_seg config (it parses with "
                     "protos/pipeline.proto); nothing to migrate")
  tree = reader.parse_tf1(text, source)
  m = migration.Migration(source)
  top = migration.OutMessage(m.config, "")
  rules.apply_table(m, tf1_tables.PIPELINE, tree, top, "")
  if m.arch is None:
    raise ValueError(f"{source}: {reader.NOT_TF1}: no model {{ icnet {{ ... }} }} "
                     "or model { pspnet { ... } }")
  for finish in finishers.FINISHERS:
    finish(m)
  return m.config, m.entries


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
                     f"UTF-8); {reader.NOT_TF1}") from None


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
  validation.validate(config, source)
  header = [f"Converted from {source} (fast-semantic-segmentation, TF1) by "
            "python -m fast_seg.tools.migrate_config."] + lines
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  with open(output, "w", encoding="utf-8") as f:
    f.write("".join(f"# {line}\n" for line in header) + "\n")
    f.write(config_text(config))
  log(f"wrote {output} (it loads and its model builds in fast_seg)")
  return lines
