"""python -m fast_seg.tools.import_weights: runs the command (see cli.py)."""

from fast_seg.tools.import_weights import cli

if __name__ == "__main__":
  cli.command()
