"""Exports a trained checkpoint for servers and phones, each format checked.

The fast-seg-export command once fast_seg is installed; `python export.py --help`
lists the flags (fast_seg/commands/export.py).
"""

from fast_seg.commands import export

if __name__ == "__main__":
  export.command()
