"""Runs an exported model on images or a video: label PNGs, overlays, latency.

The fast-seg-predict command once fast_seg is installed; `python predict.py --help`
lists the flags (fast_seg/commands/predict.py).
"""

from fast_seg.commands import predict

if __name__ == "__main__":
  predict.command()
