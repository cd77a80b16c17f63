"""Prunes filters (L1 norm, Li et al. 2016) to a smaller filter_scale.

The fast-seg-compress command once fast_seg is installed; `python compress.py --help`
lists the flags (fast_seg/commands/compress.py).
"""

from fast_seg.commands import compress

if __name__ == "__main__":
  compress.command()
