r"""Params, FLOPs, sizes and latency of models built from pipeline configs.

  python -m fast_seg.tools.benchmark [--configs a.config,b.config] \
      [--input_shape 1,1024,2048,3] [--batch_sizes 1,2] [--num_classes 19] \
      [--paths keras,keras_xla,frozen,tflite,tflite_int8,onnx] [--num_threads 2] \
      [--precisions float16,bfloat16] [--runs 5] [--warmup 1] \
      [--train_configs c.config] [--labels_method auto|boundary|resize|nearest] \
      [--trained_checkpoints ckpt_a,ckpt_b --image_glob 'frames/*.png'] \
      [--compare_labels_methods] --output_json bench_output/benchmark.json

Models get random weights on random pixels unless --trained_checkpoints and
--image_glob give real ones (nothing is downloaded): the network's speed does
not depend on them, the 'boundary' labels tail's does (docs/export.md). Each
model is measured as it is served, uint8 images in
and labels out (inference_graph.build_inference_function), on every path: the
tf.function (SavedModel path), the same compiled with XLA, the frozen graph in
a TF1 Session, TFLite float32 and int8 (LiteRT with XNNPACK, `num_threads`
threads) and ONNX Runtime (same thread count). The same run measures the
machine's own ceiling (dense matmul and 3x3 conv throughput) and each model's
achieved FLOP/s as a fraction of the conv ceiling; FLOPs count one
multiply-add as 2. `--train_configs` adds training throughput and peak memory
(fast_seg.tools.train_benchmark). A path or model that fails gives its error
in the row, so one failure never hides the other numbers.
"""

import collections
import datetime
import functools
import gc
import inspect
import json
import os
import platform
import shutil
import tempfile
import time

from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.export import export_lib
from fast_seg.export import full_resolution_labels
from fast_seg.export import inference_graph
from fast_seg.export import latency as latency_lib
from fast_seg.export import onnx_format
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.export import size_report
from fast_seg.tools import train_benchmark
from fast_seg.utils import cli
from fast_seg.utils import config_util
# Aliased: image_files is also the benchmark's list of --image_glob files.
from fast_seg.utils import image_files as image_reader

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# The zoo's models: the Cityscapes setups and the seed use cases.
DEFAULT_CONFIGS = tuple(
    os.path.join("configs", name) for name in (
        "icnet_resnet50_1.0_cityscapes_1024.config",
        "icnet_resnet50_0.5_cityscapes_1024.config",
        "icnet_mobilenet_v2_1.0_cityscapes_1024.config",
        "pspnet50_1.0_cityscapes_713.config",
        "deeplab_v3_plus_mobilenet_v2_os8_voc2012_513.config",
        "mobile_unet_mobilenet_v1_hair_128.config",
        "dilated_fcn_mobilenet_v1_kitti_road_half.config",
    ))
DEFAULT_INPUT_SHAPE = (1, 1024, 2048, 3)
# Latency paths, in table order.
KERAS, XLA, FROZEN = "keras", "keras_xla", "frozen"
TFLITE, TFLITE_INT8, ONNX = "tflite", "tflite_int8", "onnx"
PATHS = (KERAS, XLA, FROZEN, TFLITE, TFLITE_INT8, ONNX)
# Reduced-precision variants of the Keras paths (GPU: fp16 / bf16).
PRECISIONS = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
FLOPS_CONVENTION = "one multiply-add = 2 FLOPs, counted on the inference graph"
_ERROR_CHARS = 500


def default_config_paths():
  """DEFAULT_CONFIGS, found from the working directory or the repository."""
  paths = []
  for path in DEFAULT_CONFIGS:
    repo_path = os.path.join(_REPO_ROOT, path)
    paths.append(path if os.path.exists(path) or not os.path.exists(repo_path)
                 else repo_path)
  return paths


def device_description():
  """The device that runs the models: GPU name(s), else the CPU model."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    names = []
    for gpu in gpus:
      details = tf.config.experimental.get_device_details(gpu)
      names.append(details.get("device_name", gpu.name))
    return "GPU: " + ", ".join(names)
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          cpu = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return f"CPU: {cpu} ({len(os.sched_getaffinity(0))} cores)"


def environment():
  """What a timing depends on besides the model, for the JSON file."""
  return {
      "device": device_description(),
      "tensorflow": tf.__version__,
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
      "flops": FLOPS_CONVENTION,
  }


def _short_error(error):
  """One readable line: XLA and op errors can be pages long."""
  text = f"{type(error).__name__}: {cli.short_message(error)}"
  text = " ".join(text.split())
  return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."


def measure_ceiling(runs=5):
  """The machine's own dense throughput, in GFLOP/s (best of `runs`).

  Two kernels every model here is made of: a float32 matmul (2048^3) and a
  3x3 conv of 256 -> 256 channels on a 128 x 256 map (ResNet's block-3
  shape), both in a tf.function on the default device.
  """
  def best_gflops(function, flops):
    function()  # trace and warm up
    best = min(latency_lib.time_function(function, runs, 0)["runs"])
    return flops / (best / 1000.0) / 1e9

  rng = np.random.default_rng(0)
  a = tf.constant(rng.standard_normal((2048, 2048)), tf.float32)
  matmul = tf.function(lambda: tf.reduce_sum(tf.matmul(a, a)))
  images = tf.constant(rng.standard_normal((1, 128, 256, 256)), tf.float32)
  kernel = tf.constant(rng.standard_normal((3, 3, 256, 256)) * 0.01, tf.float32)
  conv = tf.function(lambda: tf.reduce_sum(
      tf.nn.conv2d(images, kernel, 1, "SAME")))
  return {
      "matmul_gflops": best_gflops(lambda: matmul().numpy(), 2 * 2048 ** 3),
      "conv3x3_gflops": best_gflops(lambda: conv().numpy(),
                                    2 * 9 * 256 * 256 * 128 * 256),
  }


def _served(serve, inputs):
  """One run of a served function, waited for (numpy)."""
  return serve(inputs)[serving.OUTPUT_NAME].numpy()


def _override_num_classes(config, num_classes):
  """Sets num_classes for a size/speed benchmark of another label set.

  The loss is never evaluated here, so per-class weights are dropped and an
  ignore label that would now be a class id is moved to 255.
  """
  arch = config_util.get_model_config(config.model)
  arch.num_classes = num_classes
  arch.loss.ClearField("class_weights")
  arch.loss.ClearField("auxiliary_target")
  if arch.HasField("binary_output"):
    arch.binary_output.ClearField("foreground_class_ids")
  if 0 <= arch.ignore_label < num_classes:
    arch.ignore_label = 255


class _PathTimer:
  """Times one path into `latency`, keeping a failure as that path's error."""

  def __init__(self, latency, runs, warmup):
    self.latency, self.runs, self.warmup = latency, runs, warmup

  def __call__(self, path, make_function):
    try:
      self.latency[path] = latency_lib.time_function(make_function(), self.runs,
                                         self.warmup)
    except Exception as e:  # pylint: disable=broad-except
      self.latency[path] = {"error": _short_error(e)}


# Where one config's measurements leave their files, their sizes
# ({format_bN: bytes}) and the close() of what stays open (Sessions).
_Scratch = collections.namedtuple("_Scratch", ["workdir", "sizes", "cleanup"])
# How every config is timed: benchmark_config's arguments of that name.
_Timing = collections.namedtuple(
    "_Timing", ["paths", "runs", "warmup", "num_threads", "precisions",
                "labels_method", "profile", "image_files", "compare_labels"])


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


def _time_batch(model, shape, timing, scratch):
  """(latency of every requested path, the optimized frozen graph)."""
  latency = {}
  timer = _PathTimer(latency, timing.runs, timing.warmup)
  images = _images(timing, shape)
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


# The labels methods compared with 'resize', and the runtime each timed
# path's file runs on (latency.Exported).
_COMPARED_METHODS = (full_resolution_labels.BOUNDARY,
                     full_resolution_labels.NEAREST)
_PATH_RUNTIMES = {FROZEN: latency_lib.TF, TFLITE: latency_lib.TFLITE,
                  ONNX: latency_lib.ONNX}


def _compare_labels_methods(model, shape, timing):
  """{runtime: {method: {'median_ms', 'resize_ms', 'ratio'}}} per runtime
  of the timed paths: each method's export timed run for run alongside the
  'resize' one in a fresh process (the two medians of that process; ratio:
  the median of the per-run ratios, which a drifting host leaves nearly
  unchanged); {'error'} if it fails."""
  images = _images(timing, shape)
  result = {}
  for path, runtime in _PATH_RUNTIMES.items():
    if path not in timing.paths:
      continue
    exports = []
    try:
      for method in (full_resolution_labels.RESIZE, *_COMPARED_METHODS):
        exports.append(latency_lib.Exported(
            model, runtime, shape, timing.num_threads, labels_method=method,
            images=images))
      entry = {}
      for method, exported in zip(_COMPARED_METHODS, exports[1:]):
        timed = exported.time(timing.runs, timing.warmup,
                              alongside=exports[0])
        entry[method] = {"median_ms": timed["median"],
                         "resize_ms": timed["alongside"]["median"],
                         "ratio": timed["ratio"]}
      result[runtime] = entry
    except Exception as e:  # pylint: disable=broad-except
      result[runtime] = {"error": _short_error(e)}
    finally:
      for exported in exports:
        exported.close()
  return result


def _time_precision(config, model, precision, shape, timing):
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
  images = tf.constant(_images(timing, shape))
  serve = inference_graph.build_inference_function(
      mixed, tuple(shape),
      labels_method=full_resolution_labels.resolve(timing.labels_method))
  timer(f"{KERAS}_{precision}",
        lambda: functools.partial(_served, serve, images))
  timer(f"{XLA}_{precision}", lambda: functools.partial(
      _served, inference_graph.with_xla(serve), images))
  return latency


def _check_paths(paths):
  unknown = set(paths) - set(PATHS)
  if unknown:
    raise ValueError(f"--paths: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(PATHS)}")


def _images(timing, shape):
  """uint8 images of `shape`: the files' (resized, cycled over the batch),
  else random pixels."""
  if not timing.image_files:
    return latency_lib.random_images(shape)
  files = [timing.image_files[i % len(timing.image_files)]
           for i in range(shape[0])]
  return np.stack([_read_image(f, shape[1:3]) for f in files])


def _read_image(path, size):
  image = tf.image.resize(image_reader.read_rgb(path), size)
  return tf.cast(tf.round(image), tf.uint8).numpy()


def _build(config_path, num_classes, shape, row, checkpoint=None):
  """(config, model) of a config; fills in the row's model fields and cost.

  The model's weights are the checkpoint's when one is given (what a
  trained model's labels tail costs depends on its predictions), random
  otherwise.
  """
  config = config_util.load_pipeline_config(config_path)
  if num_classes is not None:
    _override_num_classes(config, num_classes)
  arch = config_util.get_model_config(config.model)
  row.update(architecture=config.model.WhichOneof("model"),
             feature_extractor=arch.feature_extractor.type,
             filter_scale=round(arch.feature_extractor.filter_scale, 4),
             num_classes=arch.num_classes)
  model = export_lib.load_model(config, checkpoint,
                                random_weights=not checkpoint)[0]
  row["params"] = int(model.inference_model.count_params())
  single = inference_graph.build_inference_function(model, (1,) + shape[1:])
  row["flops"] = inference_graph.count_flops(
      inference_graph.freeze(single.get_concrete_function()))
  row["gflops"] = row["flops"] / 1e9
  return config, model


def _time_batches(row, config, model, shape, batch_sizes, timing, scratch):
  """row['latency_ms'] and row['fps'] of every batch size (and precision)."""
  for batch in batch_sizes:
    batch_shape = (batch,) + shape[1:]
    latency, graph_def = _time_batch(model, batch_shape, timing, scratch)
    if batch == batch_sizes[0] and timing.profile:
      row["op_profile"] = latency_lib.op_profile(
          graph_def, _images(timing, batch_shape))
    if batch == batch_sizes[0] and timing.compare_labels:
      row["labels_methods"] = _compare_labels_methods(model, batch_shape,
                                                      timing)
    if batch == batch_sizes[0]:
      for precision in timing.precisions:
        latency.update(_time_precision(config, model, precision,
                                       batch_shape, timing))
    row["latency_ms"][str(batch)] = latency
    row["fps"][str(batch)] = {
        path: 1000.0 * batch / entry["median"]
        for path, entry in latency.items() if "median" in entry}


def _achieved_gflops(row, batch):
  """{path: the model's achieved GFLOP/s} at a batch size."""
  return {path: row["flops"] * batch / (entry["median"] / 1000.0) / 1e9
          for path, entry in row["latency_ms"].get(str(batch), {}).items()
          if "median" in entry}


def _achieved_fractions(row, batch, ceiling):
  """{path: achieved FLOP/s / conv ceiling} at the first batch size."""
  return {path: gflops / ceiling["conv3x3_gflops"]
          for path, gflops in _achieved_gflops(row, batch).items()}


def _interleaved_fractions(row, batch, before, after):
  """Fractions against the mean of the ceilings measured before and after
  the model, and the range the two ceilings allow.

  A shared host's speed drifts during a run; the ceiling next to the
  model describes its hour, not the run's start.
  """
  ceilings = [before["conv3x3_gflops"], after["conv3x3_gflops"]]
  mean = sum(ceilings) / 2.0
  achieved = _achieved_gflops(row, batch)
  row["ceiling"] = {"before": before, "after": after}
  row["achieved_fraction"] = {p: g / mean for p, g in achieved.items()}
  row["achieved_fraction_range"] = {
      p: [g / max(ceilings), g / min(ceilings)] for p, g in achieved.items()}


def _release(scratch):
  """Closes what the timings left open and drops the model before the next."""
  for close in scratch.cleanup:
    close()
  shutil.rmtree(scratch.workdir, ignore_errors=True)
  # Drop this model before the next one is built (memory, layer names).
  keras.backend.clear_session()
  gc.collect()


def _config_name(config_path):
  """A row's name: the config file's, or its folder's for a pipeline.config
  (a train dir, an export, a model_zoo entry)."""
  name = os.path.splitext(os.path.basename(config_path))[0]
  if name == "pipeline":
    return os.path.basename(os.path.dirname(os.path.abspath(config_path)))
  return name


def benchmark_config(config_path, input_shape=DEFAULT_INPUT_SHAPE,
                     num_classes=None, runs=3, warmup=1, paths=PATHS,
                     batch_sizes=None, num_threads=2, precisions=(),
                     ceiling=None, labels_method=full_resolution_labels.AUTO,
                     profile=False, checkpoint=None, image_files=(),
                     compare_labels_methods=False):
  """Measures one config; never raises for a model that fails.

  Args:
    config_path: a pipeline config.
    input_shape: (N, H, W, 3) of the uint8 input; N is the first batch size.
    num_classes: overrides the config's num_classes; None keeps it.
    runs: timed runs per path.
    warmup: untimed runs before them (the first also traces/compiles).
    paths: names from PATHS.
    batch_sizes: batch sizes to time; None: input_shape's N only.
    num_threads, precisions: threads of the TFLite and ONNX runtimes; keys
      of PRECISIONS: also time Keras / XLA in that precision.
    ceiling: measure_ceiling()'s dict, for the achieved fractions.
    labels_method: how labels reach the input size, as export.py
      --labels_method (auto: per path's runtime, as export.py gives it).
    profile: add `op_profile` (latency.op_profile of the frozen graph at
      the first batch size: time per op type).
    checkpoint: the trained weights to time (a checkpoint prefix or train
      dir); None: random weights.
    image_files: images to time on (resized to input_shape); empty: random
      pixels. A trained model on real images is what the 'boundary' labels
      tail's cost depends on.
    compare_labels_methods: add `labels_methods` (_compare_labels_methods
      at the first batch size): 'boundary' and 'nearest' against 'resize'
      on each of the frozen, tflite and onnx paths requested.

  Returns:
    A row dict: config, name, architecture, params, flops (batch 1), gflops,
    sizes {format_bN: bytes}, latency_ms {batch: {path: {median, min, max,
    runs, first_call} or {error}}}, fps {batch: {path: images/s}},
    achieved_fraction {path: FLOP/s / conv ceiling} (batch 1), and `error`
    when the model could not be built (the fields measured before stay).
  """
  _check_paths(paths)
  shape, batch_sizes = tuple(input_shape), list(batch_sizes or [input_shape[0]])
  row = {"config": config_path, "name": _config_name(config_path),
         "input_shape": list(shape), "params": None, "flops": None,
         "gflops": None, "sizes": {}, "latency_ms": {}, "fps": {},
         "achieved_fraction": {}, "error": None}
  timing = _Timing(paths, runs, warmup, num_threads, precisions, labels_method,
                   profile, list(image_files), compare_labels_methods)
  scratch = _Scratch(tempfile.mkdtemp(prefix="fast_seg_bench_"), row["sizes"],
                     [])
  try:
    config, model = _build(config_path, num_classes, shape, row, checkpoint)
    _time_batches(row, config, model, shape, batch_sizes, timing, scratch)
    if ceiling:
      row["achieved_fraction"] = _achieved_fractions(row, batch_sizes[0],
                                                     ceiling)
  except Exception as e:  # pylint: disable=broad-except
    row["error"] = _short_error(e)
  finally:
    _release(scratch)
  return row


def _measure_between_ceilings(report, config_path, measure, before):
  """Appends the config's row, its fractions against the ceilings measured
  before and after it; returns the one after (the next row's before)."""
  start = time.perf_counter()
  row = measure(config_path)
  row["wall_s"] = time.perf_counter() - start
  after = measure_ceiling()
  if row["latency_ms"]:
    _interleaved_fractions(row, report["batch_sizes"][0], before, after)
  report["rows"].append(row)
  return after


def _settings(options):
  """benchmark_config's keyword arguments in `options`, defaults filled."""
  bound = inspect.signature(benchmark_config).bind(None, **options)
  bound.apply_defaults()
  settings = dict(bound.arguments)
  del settings["config_path"]
  return settings


def run_benchmark(config_paths=None, train_configs=(), train_steps=10,
                  train_input_path=None, output_json=None, log=print,
                  checkpoints=None, **options):
  """Measures the machine and each config in turn; writes the JSON report.

  The ceiling is measured again after every model: each row's achieved
  fractions are against the mean of the ceilings just before and after it
  (row['ceiling']), with the range the two allow.

  Args:
    config_paths: pipeline configs; None: DEFAULT_CONFIGS.
    train_configs, train_steps: configs whose training throughput and memory
      are measured (fast_seg.tools.train_benchmark), in that many steps.
    train_input_path: training TFRecord glob for every train config instead
      of its own (None: the config's).
    output_json: where the report goes; None: not written.
    log: called with a progress line per step (None: silent).
    checkpoints: {config path: its trained weights}; others random.
    **options: benchmark_config's keyword arguments (input_shape, runs,
      paths, labels_method, ...), the same for every config.

  Returns:
    The report: environment fields, settings, `ceiling`, `rows` and
    `training` (a list of train_benchmark results).
  """
  settings = _settings(options)
  config_paths = list(config_paths or default_config_paths())
  log = log or (lambda line: None)
  shape = settings["input_shape"]
  report = dict(environment(), input_shape=list(shape),
                runs=settings["runs"], warmup=settings["warmup"],
                num_classes=settings["num_classes"],
                paths=list(settings["paths"]),
                batch_sizes=list(settings["batch_sizes"] or [shape[0]]),
                num_threads=settings["num_threads"],
                precisions=list(settings["precisions"]),
                labels_method=settings["labels_method"],
                image_files=len(settings["image_files"]),
                trained=dict(checkpoints or {}), rows=[], training=[])
  log("measuring the machine's matmul and conv throughput ...")
  report["ceiling"] = measure_ceiling()

  def save():  # After every model, so a killed run keeps what it measured.
    if output_json:
      write_report(report, output_json)
  save()
  before = report["ceiling"]
  for path in config_paths:
    log(f"benchmarking {path} at {'x'.join(map(str, shape[1:3]))} ...")
    before = _measure_between_ceilings(
        report, path, functools.partial(
            benchmark_config, **{**settings, "checkpoint": report[
                "trained"].get(path)}), before)
    save()
  for path in train_configs:
    log(f"training throughput and memory of {path} ...")
    report["training"].append(train_benchmark.measure_all(
        path, steps=train_steps, input_path=train_input_path))
    save()
  return report


def write_report(report, path):
  """Writes the report as indented JSON, creating the folder."""
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(report, f, indent=2)


def _markdown(header, lines):
  out = ["| " + " | ".join(header) + " |",
         "|" + "|".join("---" if i == 0 else "---:"
                        for i in range(len(header))) + "|"]
  return out + ["| " + " | ".join(line) + " |" for line in lines]


def _latency_cell(entry):
  if entry is None:
    return "-"
  if "error" in entry:
    return "error"
  return f"{entry['median']:.1f}"


def _labels_text(report):
  method = report.get("labels_method", full_resolution_labels.AUTO)
  if method != full_resolution_labels.AUTO:
    return method
  return "auto (" + ", ".join(
      f"{runtime}: {chosen}"
      for runtime, chosen in full_resolution_labels.AUTO_METHODS.items()
      if runtime != full_resolution_labels.COREML) + ")"


def _setting_lines(report):
  """The machine, the versions and how the numbers were taken."""
  out = [f"{report['device']}, TensorFlow {report['tensorflow']}, "
         f"{report['date']}; input {'x'.join(map(str, report['input_shape'][1:3]))}; "
         f"median of {report['runs']} runs after {report['warmup']} warm-up; "
         f"TFLite (XNNPACK) and ONNX Runtime on {report['num_threads']} "
         f"threads; {report['flops']}"
         + f"; labels: {_labels_text(report)}"
         + (f"; {report['image_files']} real images" if report.get(
             "image_files") else "; random pixels")
         + (f"; trained weights: {', '.join(report['trained'].values())}."
            if report.get("trained") else "; random weights.")]
  ceiling = report.get("ceiling") or {}
  if ceiling:
    out.append(f"Machine ceiling: matmul {ceiling['matmul_gflops']:.1f} "
               f"GFLOP/s, 3x3 conv {ceiling['conv3x3_gflops']:.1f} GFLOP/s.")
  return out


def _latency_tables(report):
  """One table per batch size: a row per config, a column per path."""
  rows = report["rows"]
  paths = []
  for row in rows:
    for latency in row.get("latency_ms", {}).values():
      paths += [p for p in latency if p not in paths]
  out = []
  for batch in report["batch_sizes"]:
    header = ["config", "params M", "GFLOPs"] + [f"{p} ms" for p in paths]
    lines = []
    for row in rows:
      latency = row.get("latency_ms", {}).get(str(batch), {})
      lines.append([row["name"],
                    f"{row['params'] / 1e6:.2f}" if row.get("params") else "-",
                    f"{row['gflops']:.2f}" if row.get("gflops") else "-"]
                   + [_latency_cell(latency.get(p)) for p in paths])
    out += ["", f"Latency, batch {batch}:"] + _markdown(header, lines)
  return out


def _throughput_line(row, first):
  """A config's best fps, achieved fractions and sizes; None: no timing."""
  fps = row.get("fps", {}).get(first, {})
  if not fps:
    return None
  best = max(fps, key=fps.get)
  fraction = row.get("achieved_fraction", {})
  ceiling = row.get("ceiling")
  return [row["name"], f"{fps[best]:.2f} ({best})",
          f"{100 * fraction[KERAS]:.1f}%" if KERAS in fraction else "-",
          f"{100 * max(fraction.values()):.1f}%" if fraction else "-",
          f"{ceiling['before']['conv3x3_gflops']:.0f} / "
          f"{ceiling['after']['conv3x3_gflops']:.0f}" if ceiling else "-",
          ", ".join(f"{k} {v / 1e6:.1f}" for k, v in
                    sorted(row.get("sizes", {}).items())
                    if k.endswith(f"_b{first}"))]


def _throughput_table(report):
  first = str(report["batch_sizes"][0])
  lines = [line for line in (_throughput_line(row, first)
                             for row in report["rows"]) if line]
  if not lines:
    return []
  return (["", f"Throughput at batch {first} (achieved = FLOP/s / 3x3-conv "
           "ceiling, the mean of those measured just before and after the "
           "model; sizes in MB):"]
          + _markdown(["config", "best fps", "achieved keras", "achieved best",
                       "ceiling before / after GFLOP/s", "sizes MB"], lines))


def _profile_lines(report, top=8):
  """Each profiled model's most expensive op types in the frozen graph."""
  out = []
  for row in report["rows"]:
    profile = row.get("op_profile")
    if not profile:
      continue
    out += ["", f"{row['name']}: time per op type, frozen graph "
            f"({profile['total_ms']:.1f} ms of op time per run):"]
    out += _markdown(["op", "ms", "share", "nodes"], [
        [op["op"], f"{op['ms']:.1f}", f"{100 * op['share']:.1f}%",
         str(op["nodes"])] for op in profile["ops"][:top]])
  return out


def _training_notes(entry):
  """A training entry's pipeline overhead, memory saving and errors."""
  out = []
  if "pipeline_overhead" in entry:
    out.append(f"{entry['name']}: the pipeline costs "
               f"{100 * entry['pipeline_overhead']:.1f}% of synthetic "
               "images/s")
  if "memory_saving_ratio" in entry:
    out.append(f"{entry['name']}: memory saving peak x"
               f"{entry['memory_saving_ratio']:.2f}")
  for result in entry["results"]:
    if "error" in result:
      out.append(f"{entry['name']} {result['mode']}: {result['error']}")
  return out


def _training_table(report):
  training = report.get("training") or []
  if not training:
    return []
  lines = [[entry["name"], result["mode"],
            f"{result['images_per_second']:.2f}"
            if "images_per_second" in result else "error",
            f"{result['peak_memory_mb']:.0f}"
            if "peak_memory_mb" in result else "-"]
           for entry in training for result in entry["results"]]
  out = ["", "Training (the config's global batch; peak memory = process "
         "peak RSS on a CPU, allocator peak on a GPU):"]
  out += _markdown(["config", "mode", "images/s", "peak MB"], lines)
  for entry in training:
    out += _training_notes(entry)
  return out


def _error_lines(report):
  """Every config and path that failed, with its error."""
  out = []
  for row in report["rows"]:
    if row.get("error"):
      out.append(f"{row['name']}: error: {row['error']}")
    for batch, latency in row.get("latency_ms", {}).items():
      for path, entry in latency.items():
        if "error" in entry:
          out.append(f"{row['name']} batch {batch} {path}: {entry['error']}")
  return out


def _labels_methods_lines(report):
  """The labels methods' times against 'resize', per model and runtime."""
  lines = []
  for row in report["rows"]:
    for runtime, entry in (row.get("labels_methods") or {}).items():
      if "error" in entry:
        cells = [f"error: {entry['error']}"] * len(_COMPARED_METHODS)
      else:
        cells = [f"**{entry[m]['ratio']:.3f}x** ({entry[m]['median_ms']:.1f} "
                 f"vs {entry[m]['resize_ms']:.1f} ms)" for m in _COMPARED_METHODS]
      lines.append([row["name"], runtime, *cells])
  if not lines:
    return []
  return ["", "Labels tail, each method timed run for run alongside resize in "
          "one process (median per-run ratio; the medians of both):"] + (
              _markdown(["config", "runtime", *_COMPARED_METHODS], lines))


def format_table(report):
  """Markdown tables of the report: machine, models, latency, training."""
  return "\n".join(_setting_lines(report) + _latency_tables(report)
                   + _throughput_table(report) + _labels_methods_lines(report)
                   + _profile_lines(report)
                   + _training_table(report)
                   + _error_lines(report))


flags.DEFINE_list("configs", [],
                  "Pipeline configs, comma separated; default: "
                  + ", ".join(DEFAULT_CONFIGS))
flags.DEFINE_string("input_shape", ",".join(map(str, DEFAULT_INPUT_SHAPE)),
                    "N,H,W,3 of the uint8 input.")
flags.DEFINE_list("batch_sizes", [],
                  "Batch sizes to time; default: N of --input_shape.")
flags.DEFINE_integer("num_classes", None,
                     "Overrides each config's num_classes; default: keep it.")
flags.DEFINE_list("paths", list(PATHS), "Latency paths: " + ", ".join(PATHS))
flags.DEFINE_integer("num_threads", 2,
                     "Threads of the TFLite (XNNPACK) and ONNX runtimes.")
flags.DEFINE_list("precisions", [],
                  "Also time Keras / XLA in these precisions: float16, "
                  "bfloat16 (default: both on a GPU, none on a CPU).")
flags.DEFINE_integer("runs", 3, "Timed runs per model and path.")
flags.DEFINE_integer("warmup", 1,
                     "Untimed runs first (the first traces / compiles).")
flags.DEFINE_list("train_configs", [],
                  "Configs whose training images/s (synthetic batches, "
                  "tf.data alone, both) and peak memory are measured.")
flags.DEFINE_integer("train_steps", 10, "Timed training steps per mode.")
flags.DEFINE_string("train_input_path", None,
                    "Training TFRecord glob for the train configs instead of "
                    "their own.")
flags.DEFINE_enum("labels_method", full_resolution_labels.AUTO,
                  [full_resolution_labels.AUTO, *full_resolution_labels.METHODS],
                  "How labels reach the input size (export.py "
                  "--labels_method).")
flags.DEFINE_bool("fast_labels", False, "Same as --labels_method nearest.")
flags.DEFINE_bool("compare_labels_methods", False,
                  "Also time each labels method (boundary, nearest) against "
                  "resize, run for run in one process, on each of the "
                  "frozen, tflite and onnx paths requested; best with "
                  "--trained_checkpoints and --image_glob.")
flags.DEFINE_list("trained_checkpoints", [],
                  "Trained weights to time, one per --configs entry (a "
                  "checkpoint prefix or train dir; empty entry: random "
                  "weights). Default: random weights for every config.")
flags.DEFINE_string("image_glob", None,
                    "Time on these images (resized to --input_shape) instead "
                    "of random pixels.")
flags.DEFINE_bool("profile", False,
                  "Add each model's time per op type in the frozen graph "
                  "(traced runs) to the JSON and the tables.")
flags.DEFINE_string("output_json", "bench_output/benchmark.json",
                    "Where the JSON report goes.")
FLAGS = flags.FLAGS


def _checkpoints(configs, checkpoints):
  """{config: checkpoint} of --configs and --trained_checkpoints."""
  if checkpoints and not configs:
    raise ValueError("--trained_checkpoints needs --configs (one checkpoint "
                     "per config)")
  if checkpoints and len(checkpoints) != len(configs):
    raise ValueError(f"--trained_checkpoints needs one entry per --configs "
                     f"entry ({len(configs)}), got {len(checkpoints)}")
  return {c: p for c, p in zip(configs, checkpoints) if p}


def main(argv):
  del argv
  input_shape = cli.parse_shape(FLAGS.input_shape, 4, "--input_shape")
  if FLAGS.num_classes is not None and FLAGS.num_classes < 1:
    raise ValueError(f"--num_classes must be >= 1, got {FLAGS.num_classes}")
  if FLAGS.runs < 1 or FLAGS.warmup < 0:
    raise ValueError("--runs must be >= 1 and --warmup >= 0")
  try:
    batch_sizes = [int(b) for b in FLAGS.batch_sizes]
  except ValueError:
    batch_sizes = [0]
  if any(b < 1 for b in batch_sizes):
    raise ValueError(f"--batch_sizes must be positive integers, got "
                     f"{','.join(FLAGS.batch_sizes)}")
  unknown = set(FLAGS.paths) - set(PATHS)
  if unknown:
    raise ValueError(f"--paths: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(PATHS)}")
  precisions = FLAGS.precisions
  if not precisions and tf.config.list_physical_devices("GPU"):
    precisions = list(PRECISIONS)
  unknown = set(precisions) - set(PRECISIONS)
  if unknown:
    raise ValueError(f"--precisions: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(PRECISIONS)}")
  for path in list(FLAGS.configs) + list(FLAGS.train_configs):
    if not os.path.exists(path):
      raise FileNotFoundError(f"config file not found: {path}")
  report = run_benchmark(
      FLAGS.configs or None, FLAGS.train_configs, FLAGS.train_steps,
      FLAGS.train_input_path, FLAGS.output_json,
      checkpoints=_checkpoints(FLAGS.configs, FLAGS.trained_checkpoints),
      input_shape=input_shape, num_classes=FLAGS.num_classes,
      runs=FLAGS.runs, warmup=FLAGS.warmup, paths=FLAGS.paths,
      batch_sizes=batch_sizes or None, num_threads=FLAGS.num_threads,
      precisions=precisions, profile=FLAGS.profile,
      labels_method=full_resolution_labels.from_flags(FLAGS.labels_method,
                                                      FLAGS.fast_labels),
      image_files=(cli.glob_files(FLAGS.image_glob, "--image_glob")
                   if FLAGS.image_glob else ()),
      compare_labels_methods=FLAGS.compare_labels_methods)
  print(format_table(report))
  print(f"Wrote {FLAGS.output_json}")


def command():
  """The fast-seg-benchmark command, and python -m fast_seg.tools.benchmark."""
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
