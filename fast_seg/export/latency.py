"""A model's latency on the runtime it ships on, measured on this machine.

The benchmark tool times every path of a model; compress.py's budgeted
pruning times each candidate width on one runtime. Both export the model
the way export.py does (the serving function, frozen and optimized for
TensorFlow, converted for LiteRT) and time real runs here: a budget is a
measured number, never one estimated from FLOPs.
"""

import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import tensorflow as tf

from fast_seg.export import full_resolution_labels
from fast_seg.export import inference_graph
from fast_seg.export import onnx_format
from fast_seg.export import runtimes
from fast_seg.export import tflite_format

# Runtime names of --runtime: how each is exported and run.
TF = full_resolution_labels.TF  # the optimized frozen graph in a TF Session
TFLITE = full_resolution_labels.TFLITE  # float32 LiteRT
# LiteRT, int8 weights and activations
TFLITE_INT8 = full_resolution_labels.TFLITE_INT8
ONNX = full_resolution_labels.ONNX  # onnxruntime
RUNTIMES = (TF, TFLITE, TFLITE_INT8, ONNX)
_RESULT_PREFIX = "FAST_SEG_LATENCY "


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


def _write_runtime_file(model, runtime, input_shape, workdir, labels_method):
  """The model exported for `runtime` into workdir, with the labels tail
  export.py's --labels_method gives that runtime; returns its path."""
  serve = inference_graph.build_inference_function(
      model, tuple(input_shape), labels_method=full_resolution_labels.resolve(
          labels_method, runtime))
  if runtime == TF:
    graph_def = inference_graph.optimize_frozen_graph(
        inference_graph.freeze(serve.get_concrete_function()))
    path = os.path.join(workdir, "frozen_graph.pb")
    with open(path, "wb") as f:
      f.write(graph_def.SerializeToString())
    return path
  saved_model_dir = os.path.join(workdir, "saved_model")
  inference_graph.save_saved_model(model, serve, saved_model_dir)
  if runtime == ONNX:
    path = os.path.join(workdir, "model.onnx")
    onnx_format.convert(saved_model_dir, path)
    return path
  quantize = "int8" if runtime == TFLITE_INT8 else "none"
  path = os.path.join(workdir, f"model_{quantize}.tflite")
  convert_for_timing(saved_model_dir, path, quantize,
                     random_images(input_shape))
  return path


def convert_for_timing(saved_model_dir, output_path, quantize, images):
  """tflite_format.convert for a timing run; returns its info dict.

  int8 is calibrated on `images` (random pixels do for timing: the
  quantized graph's kernels and shapes do not depend on the ranges).
  """
  return tflite_format.convert(
      saved_model_dir, output_path, quantize=quantize,
      representative_images=([images[:1], images[:1][:, ::-1]]
                             if quantize == "int8" else None))


def _time_in_fresh_process(paths, runtime, input_shape, runs, warmup,
                           num_threads, images_path=None):
  """[time_function-like dict per file], timed interleaved by a new process.

  A process that has built and evaluated many models (a pruning search)
  holds their memory, threads and graphs; timing the exports in a process
  of their own keeps one measurement from slowing the next.
  """
  command = [sys.executable, "-m", "fast_seg.export.latency", runtime,
             ",".join(str(v) for v in input_shape), images_path or "-",
             str(runs), str(warmup), str(num_threads), *paths]
  # The child imports this very package, wherever the parent runs from
  # (`-m` puts the working directory first on the path).
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  done = subprocess.run(command, capture_output=True, text=True, check=False,
                        cwd=root)
  for line in done.stdout.splitlines():
    if line.startswith(_RESULT_PREFIX):
      return json.loads(line[len(_RESULT_PREFIX):])
  tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
  # A runtime that cannot run the export (an op it lacks, memory) is the
  # user's --runtime choice to revisit: one line, not a traceback.
  raise ValueError(f"--runtime {runtime}: timing {', '.join(paths)} failed "
                   f"in its process: {tail[-500:]}")


def _check_images(images, input_shape):
  if (np.ndim(images) != 4 or tuple(np.shape(images)[1:]) != input_shape[1:]
      or len(images) < input_shape[0]):
    raise ValueError(f"timing images must be [K >= {input_shape[0]}, "
                     f"{', '.join(map(str, input_shape[1:]))}], got "
                     f"{list(np.shape(images))}")


class Exported:
  """A model exported for a runtime once, then timed as often as needed."""

  def __init__(self, model, runtime, input_shape, num_threads=2,
               labels_method=full_resolution_labels.AUTO, images=None):
    """images: uint8 [N, H, W, 3] the runs take (a trained model's labels
    tail costs what its predictions make it); None: random pixels."""
    self.runtime = check_runtime(runtime)
    self.input_shape = tuple(input_shape)
    self.num_threads = num_threads
    self._workdir = tempfile.mkdtemp(prefix="fast_seg_latency_")
    self.path = _write_runtime_file(model, runtime, self.input_shape,
                                    self._workdir, labels_method)
    self.images_path = None
    if images is not None:
      _check_images(images, self.input_shape)
      self.images_path = os.path.join(self._workdir, "images.npy")
      np.save(self.images_path, np.asarray(images, np.uint8))

  def time(self, runs=5, warmup=2, alongside=None):
    """time_function's dict of this export, in a fresh process.

    alongside: another Exported of the same runtime and shape, timed in
    the same process run for run (this, it, this, it, ...): the result then
    also has `alongside` (its dict) and `ratio`, the median of the per-run
    ratios this / it, which a host's drift during the measurement leaves
    nearly unchanged.
    """
    paths = [self.path] + ([alongside.path] if alongside else [])
    results = _time_in_fresh_process(paths, self.runtime, self.input_shape,
                                     runs, warmup, self.num_threads,
                                     self.images_path)
    result = results[0]
    if alongside:
      result["alongside"] = results[1]
      result["ratio"] = statistics.median(
          a / b for a, b in zip(result["runs"], results[1]["runs"]))
    return result

  def close(self):
    shutil.rmtree(self._workdir, ignore_errors=True)


def measure(model, runtime, input_shape, runs=5, warmup=2, num_threads=2):
  """Latency in ms of `model` exported to `runtime`, timed on this machine.

  The model is exported as export.py serves it (uint8 images in, labels
  out): the optimized frozen graph for TF, a .tflite (int8: calibrated on
  random pixels) for LiteRT; the file is timed in a fresh process.

  Returns:
    time_function's dict (median, min, max, runs, first_call) in ms.
  """
  exported = Exported(model, runtime, input_shape, num_threads)
  try:
    return exported.time(runs, warmup)
  finally:
    exported.close()


def _milliseconds(function):
  start = time.perf_counter()
  function()
  return 1000.0 * (time.perf_counter() - start)


def _batches(input_shape, images_path):
  """The input batches the runs cycle through: of the saved images, else
  one of random pixels."""
  if not images_path:
    return [random_images(input_shape)]
  images, batch = np.load(images_path), input_shape[0]
  return [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)]


def _time_files(paths, runtime, input_shape, runs, warmup, num_threads,
                images_path=None):
  """time_function's dicts of the files, timed in turn run after run."""
  batches = _batches(input_shape, images_path)
  models = [runtimes.open_model(p, num_threads) for p in paths]
  timed = lambda model, i: _milliseconds(
      lambda: model(batches[i % len(batches)]))
  try:
    firsts = [None] * len(models)
    for step in range(warmup):
      for i, model in enumerate(models):
        elapsed = timed(model, step)
        firsts[i] = elapsed if firsts[i] is None else firsts[i]
    times = [[timed(model, step) for model in models] for step in range(runs)]
    times = [list(column) for column in zip(*times)]
  finally:
    for model in models:
      model.close()
  return [{"median": statistics.median(t), "min": min(t), "max": max(t),
           "runs": t, "first_call": first} for t, first in zip(times, firsts)]


def op_profile(graph_def, images, runs=2):
  """Time per op type of a frozen graph, from TensorFlow's step stats.

  Each run is traced (RunOptions FULL_TRACE) after one untraced run; a
  node's time is its start-to-end span, summed per op type (node_def.op)
  and averaged over the runs. Ops that run in parallel overlap, so the sum
  can exceed the wall time: read the shares, which say where the work is.

  Returns:
    {'runs', 'total_ms', 'ops': [{'op', 'ms', 'share', 'nodes'}]}, the most
    expensive op type first.
  """
  op_types = {node.name: node.op for node in graph_def.node}
  options = tf.compat.v1.RunOptions(
      trace_level=tf.compat.v1.RunOptions.FULL_TRACE)
  milliseconds, nodes = collections.Counter(), collections.Counter()
  with runtimes.FrozenGraph(graph_def) as run:
    run(images)
    for _ in range(runs):
      metadata = tf.compat.v1.RunMetadata()
      run(images, options=options, run_metadata=metadata)
      for device in metadata.step_stats.dev_stats:
        for node in device.node_stats:
          op = op_types.get(node.node_name.split(":")[0])
          if op is not None:
            milliseconds[op] += node.all_end_rel_micros / 1000.0 / runs
            nodes[op] += 1.0 / runs
  total = sum(milliseconds.values())
  return {"runs": runs, "total_ms": total, "ops": [
      {"op": op, "ms": ms, "share": ms / max(total, 1e-9),
       "nodes": int(round(nodes[op]))}
      for op, ms in milliseconds.most_common()]}


def _main(argv):
  """python -m fast_seg.export.latency RUNTIME N,H,W,3 IMAGES.npy|- RUNS
  WARMUP THREADS FILE..."""
  runtime, shape, images_path, runs, warmup, num_threads, *paths = argv
  results = _time_files(paths, check_runtime(runtime),
                        tuple(int(v) for v in shape.split(",")), int(runs),
                        int(warmup), int(num_threads),
                        None if images_path == "-" else images_path)
  print(_RESULT_PREFIX + json.dumps(results), flush=True)


if __name__ == "__main__":
  _main(sys.argv[1:])
