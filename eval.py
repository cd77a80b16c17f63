"""Evaluates checkpoints: mIoU, per-class IoU, pixel and mean accuracy.

The fast-seg-eval command once fast_seg is installed; `python eval.py --help`
lists the flags (fast_seg/commands/eval.py).
"""

from fast_seg.commands import eval as eval_command

if __name__ == "__main__":
  eval_command.command()
