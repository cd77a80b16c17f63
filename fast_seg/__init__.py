"""fast_seg: real-time semantic segmentation in TensorFlow 2, configured by protobuf text files."""

__version__ = "0.1.0"

import os as _os

# Keep TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) out of
# the console; export TF_CPP_MIN_LOG_LEVEL=0 to see it again.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
