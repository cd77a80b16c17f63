"""The labels tails of export.py --labels_method timed against each other.

What the 'boundary' and 'nearest' tails save over 'resize' is a few percent
of a run, smaller than a shared host's drift between two separate
benchmarks. So each method's export is timed run for run alongside the
'resize' one in one process, and the median of the per-run ratios is kept:
a drift slows both alike and leaves the ratio nearly unchanged.
"""

from fast_seg.export import full_resolution_labels
from fast_seg.export import latency as latency_lib
from fast_seg.tools.benchmark import path_timing

# The labels methods compared with 'resize', and the runtime each timed
# path's file runs on (latency.Exported).
COMPARED_METHODS = (full_resolution_labels.BOUNDARY,
                    full_resolution_labels.NEAREST)
_PATH_RUNTIMES = {path_timing.FROZEN: latency_lib.TF,
                  path_timing.TFLITE: latency_lib.TFLITE,
                  path_timing.ONNX: latency_lib.ONNX}


def compare(model, shape, timing):
  """{runtime: {method: {'median_ms', 'resize_ms', 'ratio'}}} per runtime
  of the timed paths: each method's export timed run for run alongside the
  'resize' one in a fresh process (the two medians of that process; ratio:
  the median of the per-run ratios, which a drifting host leaves nearly
  unchanged); {'error'} if it fails."""
  images = path_timing.batch_images(timing, shape)
  result = {}
  for path, runtime in _PATH_RUNTIMES.items():
    if path not in timing.paths:
      continue
    exports = []
    try:
      for method in (full_resolution_labels.RESIZE, *COMPARED_METHODS):
        exports.append(latency_lib.Exported(
            model, runtime, shape, timing.num_threads, labels_method=method,
            images=images))
      entry = {}
      for method, exported in zip(COMPARED_METHODS, exports[1:]):
        timed = exported.time(timing.runs, timing.warmup,
                              alongside=exports[0])
        entry[method] = {"median_ms": timed["median"],
                         "resize_ms": timed["alongside"]["median"],
                         "ratio": timed["ratio"]}
      result[runtime] = entry
    except Exception as e:  # pylint: disable=broad-except
      result[runtime] = {"error": path_timing.short_error(e)}
    finally:
      for exported in exports:
        exported.close()
  return result
