"""python -m fast_seg.tools.benchmark: runs the command (see cli.py)."""

from fast_seg.tools.benchmark import cli

if __name__ == "__main__":
  cli.command()
