"""The export formats: one Registry of writers, which each format module fills.

A format is one module that defines `write(job)` and calls `register` at
import; export_lib imports the format modules, and writes the formats in the
order they registered (the SavedModel first: the converters start from it).
A format defined elsewhere, e.g. a test's toy one, registers the same way and
is removed again with `unregister`.
"""

import collections

from fast_seg.core import registry

# What a format writes: write(job) -> {report name: entry}, and the names of
# its files in the export folder (removed before an export and after a
# failed one).
FormatWriter = collections.namedtuple(
    "FormatWriter", ["write", "file_names", "flexible_input"])

# --formats name -> FormatWriter, in the order they are written.
FORMATS = registry.Registry("--formats")


def register(name, write, file_names, flexible_input=False):
  """Makes `name` a value of --formats.

  Args:
    name: the --formats name.
    write: write(job: export_lib.ExportJob) -> {report name: entry}; writes
      the files into job.output_dir, runs them on job.check_input and reports
      job.agreement(output) with the sizes (size_report.file_sizes).
    file_names: the names it writes in the export folder.
    flexible_input: its files can take an input without a batch axis or of
      dynamic size (-1 in --input_shape).

  Raises:
    ValueError: `name` is taken by another writer.
  """
  FORMATS.add(name, FormatWriter(write, tuple(file_names), flexible_input))


def unregister(name):
  """Undoes register(name), e.g. after a test's toy format."""
  FORMATS.remove(name)


def names():
  """The --formats choices, in the order they are written."""
  return tuple(FORMATS)


def writer(name):
  """The FormatWriter of `name` (ValueError naming the choices if unknown)."""
  return FORMATS.get(name)
