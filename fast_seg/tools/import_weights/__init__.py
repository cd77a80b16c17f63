"""Imports a model trained by another project as a fast_seg checkpoint.

The command and what it writes: cli.py's docstring. The modules:
  source     what a project must provide (Source) and the --from registry
  projects/  one module per project: the config fields and name map
  importer   the plan (every variable mapped by name and shape) and writing
  cli        the command's flags and main

The names below are re-exported so that callers import the package only.
"""

from fast_seg.tools.import_weights.cli import command
from fast_seg.tools.import_weights.importer import PREFIX
from fast_seg.tools.import_weights.importer import import_checkpoint
from fast_seg.tools.import_weights.importer import open_weights
from fast_seg.tools.import_weights.importer import plan
from fast_seg.tools.import_weights.source import SOURCES
