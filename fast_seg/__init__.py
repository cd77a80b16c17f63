"""fast_seg: real-time semantic segmentation in TensorFlow 2, configured by protobuf text files."""

__version__ = "0.1.0"
