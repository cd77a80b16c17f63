"""A model's latency on the runtime it ships on, measured on this machine.

The benchmark tool times every path of a model; compress.py's budgeted
pruning times each candidate width on one runtime. Both export the model
the way export.py does (the serving function, frozen and optimized for
TensorFlow, converted for LiteRT) and time real runs here: a budget is a
measured number, never one estimated from FLOPs.
"""

import os
import statistics
import tempfile
import time

import numpy as np

from fast_seg.export import inference_graph
from fast_seg.export import tflite_format

# Runtime names of --runtime: how each is exported and run.
TF = "tf"  # the optimized frozen graph in a TF Session
TFLITE = "tflite"  # float32 LiteRT
TFLITE_INT8 = "tflite_int8"  # LiteRT, int8 weights and activations
RUNTIMES = (TF, TFLITE, TFLITE_INT8)


def check_runtime(runtime, flag="--runtime"):
  if runtime not in RUNTIMES:
    raise ValueError(f"{flag} must be one of {', '.join(RUNTIMES)}, got "
                     f"'{runtime}'")
  return runtime


def time_function(function, runs, warmup):
  """Latency of `function()` in ms: first call, then median/min/max of `runs`.

  The first call is timed on its own because it includes tracing (and XLA
  compilation), which a server pays once; the `warmup` calls (first one
  included) are not counted in the statistics.
  """
  if runs < 1:
    raise ValueError(f"--runs must be >= 1, got {runs}")
  if warmup < 0:
    raise ValueError(f"--warmup must be >= 0, got {warmup}")
  first_ms = None
  for i in range(warmup):
    start = time.perf_counter()
    function()
    if i == 0:
      first_ms = 1000.0 * (time.perf_counter() - start)
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    function()
    times.append(1000.0 * (time.perf_counter() - start))
  return {
      "median": statistics.median(times),
      "min": min(times),
      "max": max(times),
      "runs": times,
      "first_call": first_ms,
  }


def random_images(input_shape, seed=0):
  """uint8 pixels of `input_shape`: what the timing runs on."""
  return np.random.default_rng(seed).integers(0, 256, size=input_shape,
                                              dtype=np.uint8)


def _tflite_runner(model, serve, images, quantize, num_threads, workdir):
  """Exports to .tflite in workdir; returns one run of the loaded model."""
  saved_model_dir = os.path.join(workdir, "saved_model")
  inference_graph.save_saved_model(model, serve, saved_model_dir)
  output = os.path.join(workdir, f"model_{quantize}.tflite")
  # Random pixels calibrate int8 well enough for timing.
  calibration = [images[:1], images[:1][:, ::-1]]
  tflite_format.convert(
      saved_model_dir, output, quantize=quantize,
      representative_images=calibration if quantize == "int8" else None)
  run = tflite_format.Model(output, num_threads=num_threads)
  return lambda: run(images)


def measure(model, runtime, input_shape, runs=5, warmup=2, num_threads=2):
  """Median latency in ms of `model` exported to `runtime`, batch of labels.

  Args:
    model: a fast_seg SegmentationModel (its inference model is exported).
    runtime: one of RUNTIMES.
    input_shape: (N, H, W, 3) of the exported input.
    runs, warmup: timed and untimed runs (time_function).
    num_threads: LiteRT's threads.

  Returns:
    time_function's dict (median, min, max, runs, first_call) in ms.
  """
  check_runtime(runtime)
  images = random_images(input_shape)
  serve = inference_graph.build_inference_function(model, tuple(input_shape))
  with tempfile.TemporaryDirectory(prefix="fast_seg_latency_") as workdir:
    if runtime == TF:
      graph_def = inference_graph.optimize_frozen_graph(
          inference_graph.freeze(serve.get_concrete_function()))
      run, close = inference_graph.frozen_graph_runner(graph_def)
      try:
        return time_function(lambda: run(images), runs, warmup)
      finally:
        close()
    quantize = "int8" if runtime == TFLITE_INT8 else "none"
    function = _tflite_runner(model, serve, images, quantize, num_threads,
                              workdir)
    return time_function(function, runs, warmup)
