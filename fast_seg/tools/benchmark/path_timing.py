"""One model timed on every latency path at one batch size.

A path is one way the served model (uint8 images in, labels out:
inference_graph.build_inference_function) runs: the tf.function (the
SavedModel path), the same compiled with XLA, the frozen graph in a TF1
Session, TFLite float32 and int8 (LiteRT with XNNPACK) and ONNX Runtime, and
the Keras paths again under a mixed precision policy. Each path is timed on
its own and a failure is kept as that path's error, so one path that cannot
run never hides the others' numbers.
"""

import collections
import functools
import os

import numpy as np
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.export import full_resolution_labels
from fast_seg.export import inference_graph
from fast_seg.export import latency as latency_lib
from fast_seg.export import onnx_format
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.export import size_report
from fast_seg.utils import cli
from fast_seg.utils import image_files

# Latency paths, in table order.
KERAS, XLA, FROZEN = "keras", "keras_xla", "frozen"
TFLITE, TFLITE_INT8, ONNX = "tflite", "tflite_int8", "onnx"
PATHS = (KERAS, XLA, FROZEN, TFLITE, TFLITE_INT8, ONNX)
# Reduced-precision variants of the Keras paths (GPU: fp16 / bf16).
PRECISIONS = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
_ERROR_CHARS = 500

# Where one config's measurements leave their files, their sizes
# ({format_bN: bytes}) and the close() of what stays open (Sessions).
Scratch = collections.namedtuple("Scratch", ["workdir", "sizes", "cleanup"])
# How every config is timed: benchmark_config's arguments of that name.
Timing = collections.namedtuple(
    "Timing", ["paths", "runs", "warmup", "num_threads", "precisions",
               "labels_method", "profile", "image_files", "compare_labels"])


def short_error(error):
  """One readable line: XLA and op errors can be pages long."""
  text = f"{type(error).__name__}: {cli.short_message(error)}"
  text = " ".join(text.split())
  return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."


def check_paths(paths):
  unknown = set(paths) - set(PATHS)
  if unknown:
    raise ValueError(f"--paths: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(PATHS)}")


def batch_images(timing, shape):
  """uint8 images of `shape`: the files' (resized, cycled over the batch),
  else random pixels."""
  if not timing.image_files:
    return latency_lib.random_images(shape)
  files = [timing.image_files[i % len(timing.image_files)]
           for i in range(shape[0])]
  return np.stack([_read_image(f, shape[1:3]) for f in files])


def _read_image(path, size):
  image = tf.image.resize(image_files.read_rgb(path), size)
  return tf.cast(tf.round(image), tf.uint8).numpy()


def _served(serve, inputs):
  """One run of a served function, waited for (numpy)."""
  return serve(inputs)[serving.OUTPUT_NAME].numpy()


class _PathTimer:
  """Times one path into `latency`, keeping a failure as that path's error."""

  def __init__(self, latency, runs, warmup):
    self.latency, self.runs, self.warmup = latency, runs, warmup

  def __call__(self, path, make_function):
    try:
      self.latency[path] = latency_lib.time_function(make_function(),
                                                     self.runs, self.warmup)
    except Exception as e:  # pylint: disable=broad-except
      self.latency[path] = {"error": short_error(e)}


def _frozen_runner(graph_def, images, scratch):
  """One timed run of the frozen graph, in a Session open until cleanup."""
  model = runtimes.FrozenGraph(graph_def)
  scratch.cleanup.append(model.close)
  return lambda: model(images)


def _time_graph_paths(timer, serve, graph_def, images, paths, scratch):
  """The TensorFlow paths: the tf.function, with XLA, the frozen graph."""
  inputs = tf.constant(images)
  if KERAS in paths:
    timer(KERAS, lambda: functools.partial(_served, serve, inputs))
  if XLA in paths:
    timer(XLA, lambda: functools.partial(
        _served, inference_graph.with_xla(serve), inputs))
  if FROZEN in paths:
    timer(FROZEN, functools.partial(_frozen_runner, graph_def, images,
                                    scratch))


def _tflite_runner(saved_model_dir, images, path, quantize, num_threads,
                   scratch):
  """Converts to TFLite, records its size; returns one timed run."""
  name = f"{path}_b{images.shape[0]}"
  output = os.path.join(scratch.workdir, f"{name}.tflite")
  info = latency_lib.convert_for_timing(saved_model_dir, output, quantize,
                                       images)
  scratch.sizes[name] = info["bytes"]
  model = runtimes.TFLite(output, num_threads=num_threads)
  return lambda: model(images)


def _onnx_runner(saved_model_dir, images, num_threads, scratch):
  """Converts to ONNX, records its size; returns one timed run."""
  batch = images.shape[0]
  output = os.path.join(scratch.workdir, f"model_b{batch}.onnx")
  scratch.sizes[f"onnx_b{batch}"] = onnx_format.convert(
      saved_model_dir, output)["bytes"]
  model = runtimes.Onnx(output, num_threads=num_threads)
  return lambda: model(images)


def _time_converted_paths(timer, functions, images, paths, num_threads,
                          scratch):
  """The runtimes converted from a SavedModel: TFLite, int8 and ONNX, each
  from one of the labels tail that export.py gives its runtime."""
  batch = images.shape[0]

  def saved_model(path):
    directory = os.path.join(scratch.workdir,
                             f"saved_model_{functions.method(path)}_b{batch}")
    if not os.path.exists(directory):
      inference_graph.save_saved_model(functions.model,
                                        functions.function(path), directory)
      served = functions.method(path) == functions.method(latency_lib.TF)
      scratch.sizes[f"saved_model_b{batch}" if served else
                    f"saved_model_{functions.method(path)}_b{batch}"] = (
                        size_report.byte_size(directory))
    return directory

  for path, quantize in ((TFLITE, "none"), (TFLITE_INT8, "int8")):
    if path in paths:
      timer(path, lambda path=path, quantize=quantize: _tflite_runner(
          saved_model(path), images, path, quantize, num_threads, scratch))
  if ONNX in paths:
    timer(ONNX, lambda: _onnx_runner(saved_model(ONNX), images, num_threads,
                                     scratch))


class _Serving:
  """A model's serving functions at one shape, one per labels tail that the
  timed runtimes get (full_resolution_labels.resolve), each built once."""

  def __init__(self, model, shape, labels_method):
    self.model = model
    self._shape = tuple(shape)
    self._labels_method = labels_method
    self._functions = {}

  def method(self, runtime):
    return full_resolution_labels.resolve(self._labels_method, runtime)

  def function(self, runtime=full_resolution_labels.TF):
    method = self.method(runtime)
    if method not in self._functions:
      self._functions[method] = inference_graph.build_inference_function(
          self.model, self._shape, labels_method=method)
    return self._functions[method]


def time_batch(model, shape, timing, scratch):
  """(latency of every requested path, the optimized frozen graph)."""
  latency = {}
  timer = _PathTimer(latency, timing.runs, timing.warmup)
  images = batch_images(timing, shape)
  functions = _Serving(model, shape, timing.labels_method)
  serve = functions.function()
  graph_def = inference_graph.optimize_frozen_graph(
      inference_graph.freeze(serve.get_concrete_function()))
  _time_graph_paths(timer, serve, graph_def, images, timing.paths, scratch)
  scratch.sizes[f"frozen_graph_b{shape[0]}"] = graph_def.ByteSize()
  if {TFLITE, TFLITE_INT8, ONNX} & set(timing.paths):
    _time_converted_paths(timer, functions, images, timing.paths,
                          timing.num_threads, scratch)
  return latency, graph_def


def time_precision(config, model, precision, shape, timing):
  """Keras and XLA latency of `model` rebuilt under a mixed policy, with its
  weights (trained or random) and the row's images."""
  latency = {}
  timer = _PathTimer(latency, timing.runs, timing.warmup)
  keras.mixed_precision.set_global_policy(PRECISIONS[precision])
  try:
    mixed = model_builder.build(config.model)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  mixed.inference_model.set_weights(model.inference_model.get_weights())
  images = tf.constant(batch_images(timing, shape))
  serve = inference_graph.build_inference_function(
      mixed, tuple(shape),
      labels_method=full_resolution_labels.resolve(timing.labels_method))
  timer(f"{KERAS}_{precision}",
        lambda: functools.partial(_served, serve, images))
  timer(f"{XLA}_{precision}", lambda: functools.partial(
      _served, inference_graph.with_xla(serve), images))
  return latency
