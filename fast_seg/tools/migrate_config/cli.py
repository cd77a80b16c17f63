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

from absl import flags

from fast_seg.tools.migrate_config import convert
from fast_seg.utils import cli

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_string("input", None, "A fast-semantic-segmentation (TF1) "
                      "pipeline config.")
  flags.DEFINE_string("output", None, "The fast_seg pipeline config to write.")


def main(argv):
  if len(argv) > 1:
    raise ValueError(f"unexpected arguments: {argv[1:]}")
  convert.run(FLAGS.input, FLAGS.output)


def command():
  """The fast-seg-migrate-config command, and python -m fast_seg.tools.migrate_config.

  The flags are defined here, not at import, so that importing the package
  (as tests and other tools do) defines no flags that could clash with theirs.
  """
  _define_flags()
  cli.run(main, usage=__doc__)
