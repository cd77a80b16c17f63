"""Trains a segmentation model from a pipeline config.

The fast-seg-train command once fast_seg is installed; `python train.py --help`
lists the flags (fast_seg/commands/train.py).
"""

from fast_seg.commands import train

if __name__ == "__main__":
  train.command()
