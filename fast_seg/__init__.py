"""fast_seg: real-time semantic segmentation in TensorFlow 2, configured by protobuf text files."""

__version__ = "0.1.0"

import os as _os
import re as _re
import sys as _sys
import tempfile as _tempfile

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

# Lines TensorFlow's C++ side prints while it loads on a machine without a
# GPU, before its log level applies (so TF_CPP_MIN_LOG_LEVEL cannot hide
# them, and two of its libraries print them each): nothing a user acts on.
_STARTUP_NOISE = _re.compile(
    r"All log messages before absl::InitializeLog|port\.cc:\d+\] oneDNN custom"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cpu_feature_guard\.cc|^To enable the following instructions"
    r"|failed call to cuInit: .*UNKNOWN ERROR \(303\)")


def _import_tensorflow_quietly():
  """Imports TensorFlow (and lets it probe for GPUs) with stderr captured,
  then prints what it wrote except the known start-up noise."""
  if _os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" or "tensorflow" in _sys.modules:
    return
  saved = _os.dup(2)
  with _tempfile.TemporaryFile() as captured:
    _os.dup2(captured.fileno(), 2)
    try:
      import tensorflow  # imported here, under the start-up filter
      tensorflow.config.list_physical_devices()  # the CUDA probe
    finally:
      _os.dup2(saved, 2)
      _os.close(saved)
      captured.seek(0)
      for line in captured.read().decode("utf-8", "replace").splitlines():
        if line.strip() and not _STARTUP_NOISE.search(line):
          print(line, file=_sys.stderr)


_import_tensorflow_quietly()
