"""python -m fast_seg.tools.migrate_config: runs the command (see cli.py)."""

from fast_seg.tools.migrate_config import cli

if __name__ == "__main__":
  cli.command()
