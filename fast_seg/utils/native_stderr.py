"""Lines TensorFlow's C++ side writes straight to stderr, kept off the console.

Python's logging filters (utils/cli.py) never see these: C++ code writes to
file descriptor 2 itself, some of it unconditionally, whatever
TF_CPP_MIN_LOG_LEVEL says. `quiet()` captures descriptor 2 around such a
call and writes back every line except the known, harmless ones below, so
the console keeps any error and warning word for word (written when the
call ends, in order). Only what would mislead or tell a user nothing is
listed here, each with where it comes from.
"""

import contextlib
import os
import re
import sys
import tempfile

NOISE = re.compile("|".join((
    # Importing TensorFlow on a machine without a GPU, before its log level
    # applies (two of its libraries print them each).
    r"All log messages before absl::InitializeLog",
    r"port\.cc:\d+\] oneDNN custom",
    r"cudart_stub\.cc:\d+\] Could not find cuda drivers",
    r"cpu_feature_guard\.cc",
    r"^To enable the following instructions",
    r"failed call to cuInit: .*UNKNOWN ERROR \(303\)",
    # The TFLite quantizer's debug print (llvm::dbgs(), which release builds
    # send to stderr) at every int8 conversion. Its FLOAT32 input and output
    # types mean "keep the model's interface", which for our models is
    # uint8 pixels in and int32 labels out; read as "this int8 model takes
    # floats" it is wrong (tflite_format.write says what the file takes).
    r"^fully_quantize: \d+, inference_type: \d+, input_inference_type: ",
)))


@contextlib.contextmanager
def quiet(noise=NOISE):
  """Runs the body with stderr (descriptor 2) captured; then writes back to
  stderr every line of it that `noise` does not match.

  Python's own writes to sys.stderr in the body are captured too and come
  back in order; an exception still propagates after they are written.
  """
  if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
    yield  # the user asked for TensorFlow's C++ log: all of it
    return
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile() as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      for line in captured.read().decode("utf-8", "replace").splitlines():
        if line.strip() and not noise.search(line):
          print(line, file=sys.stderr)
      sys.stderr.flush()
