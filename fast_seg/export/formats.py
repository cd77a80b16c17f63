"""The export formats: one Registry of writers, which each format module fills.

A format is one module that defines `write(job)` and calls `register` at
import; export_request imports the format modules (a request's --formats
are checked against them), and export_lib writes the formats by their
`rank` (the SavedModel first: the converters start from it), whatever order
the modules happened to be imported in.
A format defined elsewhere, e.g. a test's toy one, registers the same way and
is removed again with `unregister`.
"""

import collections

from fast_seg.core import registry

# What a format writes: write(job) -> {report name: entry}, and the names of
# its files in the export folder (removed before an export and after a
# failed one).
FormatWriter = collections.namedtuple(
    "FormatWriter", ["write", "file_names", "flexible_input", "rank"])

# --formats name -> FormatWriter.
FORMATS = registry.Registry("--formats")


def register(name, write, file_names, flexible_input=False, rank=100):
  """Makes `name` a value of --formats.

  Args:
    name: the --formats name.
    write: write(job: export_lib.ExportJob) -> {report name: entry}; writes
      the files into job.output_dir, runs them on job.check_input and reports
      job.agreement(output) with the sizes (size_report.file_sizes).
    file_names: the names it writes in the export folder.
    flexible_input: its files can take an input without a batch axis or of
      dynamic size (-1 in --input_shape).
    rank: where it is written and listed: lower first (the SavedModel 0,
      the frozen graph 1, TFLite 2, ONNX 3, Core ML 4; a new format after).

  Raises:
    ValueError: `name` is taken by another writer.
  """
  FORMATS.add(name, FormatWriter(write, tuple(file_names), flexible_input,
                                 rank))


def unregister(name):
  """Undoes register(name), e.g. after a test's toy format."""
  FORMATS.remove(name)


def in_order():
  """(name, FormatWriter) of every format, in the order they are written."""
  items = FORMATS.items()
  return sorted(items, key=lambda item: (item[1].rank, items.index(item)))


def names():
  """The --formats choices, in the order they are written."""
  return tuple(name for name, _ in in_order())


def writer(name):
  """The FormatWriter of `name` (ValueError naming the choices if unknown)."""
  return FORMATS.get(name)
