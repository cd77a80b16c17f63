"""fast_seg: real-time semantic segmentation in TensorFlow 2, configured by protobuf text files."""

__version__ = "0.1.0"

import os as _os
import sys as _sys

from fast_seg.utils import native_stderr as _native_stderr

# Keep TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) out of
# the console; export TF_CPP_MIN_LOG_LEVEL=0 to see it again.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# TensorFlow's CPU tensors come from malloc by default, and glibc maps and
# unmaps every large one, so each training step zero-fills fresh pages: on
# two cores a third of the time went to the kernel (ICNet-MobileNetV2 0.25 at
# 8x360x480: 9.1 img/s, 18 s of 51 s in the kernel). TensorFlow's own
# best-fit allocator keeps its memory and reuses it: 17.3 img/s, 4 s in the
# kernel (docs/training_eval.md "Training speed on a CPU"). Export
# TF_CPU_ALLOCATOR_USE_BFC=false to go back to malloc.
_os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")


def _import_tensorflow_quietly():
  """Imports TensorFlow (and lets it probe for GPUs) with stderr filtered:
  the lines its C++ side prints while it loads on a machine without a GPU
  come before its log level applies, so TF_CPP_MIN_LOG_LEVEL cannot hide
  them (utils/native_stderr.py lists them)."""
  if "tensorflow" in _sys.modules:
    return
  with _native_stderr.quiet():
    import tensorflow  # imported here, under the start-up filter
    tensorflow.config.list_physical_devices()  # the CUDA probe


_import_tensorflow_quietly()
