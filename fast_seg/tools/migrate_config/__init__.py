"""Converts fast-semantic-segmentation (TF1) pipeline configs to fast_seg's.

  python -m fast_seg.tools.migrate_config --input old.config --output new.config

The modules, in the order a file goes through them:
  reader       the TF1 text format read into a generic tree (file:line errors)
  values       TF1 values read as numbers, integers, booleans, strings
  migration    the config being written and the report of every TF1 field
  rules        the rule language the tables are written in
  tf1_tables   the TF1 project's messages, one table each
  finishers    TF1 fields that map together, once the whole file was read
  validation   the result loaded the way fast_seg loads a config
  convert      whole files: read, migrate, validate, write
  cli          the command's flags and main

The names below are re-exported so that callers import the package only.
"""

from fast_seg.tools.migrate_config.cli import command
from fast_seg.tools.migrate_config.cli import main
from fast_seg.tools.migrate_config.convert import config_text
from fast_seg.tools.migrate_config.convert import migrate
from fast_seg.tools.migrate_config.convert import report_lines
from fast_seg.tools.migrate_config.convert import run
from fast_seg.tools.migrate_config.migration import Entry
from fast_seg.tools.migrate_config.migration import Migration
from fast_seg.tools.migrate_config.reader import Field
from fast_seg.tools.migrate_config.reader import Message
from fast_seg.tools.migrate_config.reader import Scalar
from fast_seg.tools.migrate_config.reader import parse_tf1
from fast_seg.tools.migrate_config.validation import validate
