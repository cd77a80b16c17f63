"""Parameters, FLOPs and latency of models built from pipeline configs.

  python -m fast_seg.tools.benchmark [--configs a.config,b.config] \
      [--input_shape 1,1024,2048,3] [--num_classes 19] [--runs 3] [--warmup 1] \
      --output_json bench_output/benchmark.json

Models get random weights (nothing is loaded or downloaded): speed and size do
not depend on the weights. Each model is measured as it is served, on uint8
images in and labels out (export_lib.build_inference_function), three ways:
the tf.function (the SavedModel path), the same function compiled with XLA,
and the frozen graph (frozen_inference_graph.pb) in a TF1-style Session. A
model that fails gives a row with its error, so one bad config does not hide
the others' numbers.
"""

import datetime
import gc
import json
import os
import platform
import statistics
import time

from absl import flags
import numpy as np
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.export import export_lib
from fast_seg.utils import cli
from fast_seg.utils import config_util

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
# The published Cityscapes setups, the ones the model zoo table compares.
DEFAULT_CONFIGS = tuple(
    os.path.join("configs", name) for name in (
        "icnet_resnet50_1.0_cityscapes_1024.config",
        "icnet_resnet50_0.5_cityscapes_1024.config",
        "icnet_mobilenet_v2_1.0_cityscapes_1024.config",
        "pspnet50_1.0_cityscapes_713.config",
    ))
DEFAULT_INPUT_SHAPE = (1, 1024, 2048, 3)
# Latency paths, in table order.
KERAS, XLA, FROZEN = "keras", "keras_xla", "frozen"
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
  return f"CPU: {cpu} ({os.cpu_count()} cores)"


def environment():
  """What a timing depends on besides the model, for the JSON file."""
  return {
      "device": device_description(),
      "tensorflow": tf.__version__,
      "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
  }


def _short_error(error):
  """One readable line: XLA and op errors can be pages long."""
  text = f"{type(error).__name__}: {cli._short_message(error)}"  # pylint: disable=protected-access
  text = " ".join(text.split())
  return text if len(text) <= _ERROR_CHARS else text[:_ERROR_CHARS] + "..."


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


def _frozen_runner(graph_def, images):
  """A callable that runs the frozen graph in a Session, and the Session."""
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
  session = tf.compat.v1.Session(graph=graph)
  feed = {f"{export_lib.INPUT_NAME}:0": images}
  fetch = f"{export_lib.OUTPUT_NAME}:0"
  return (lambda: session.run(fetch, feed_dict=feed)), session


def _override_num_classes(config, num_classes):
  """Sets num_classes for a size/speed benchmark of another label set.

  The loss is never evaluated here, so per-class weights are dropped and an
  ignore label that would now be a class id is moved to 255.
  """
  arch = config_util.get_model_config(config.model)
  arch.num_classes = num_classes
  arch.loss.ClearField("class_weights")
  if 0 <= arch.ignore_label < num_classes:
    arch.ignore_label = 255


def benchmark_config(config_path, input_shape=DEFAULT_INPUT_SHAPE,
                     num_classes=None, runs=3, warmup=1, xla=True):
  """Measures one config; never raises for a model that fails.

  Args:
    config_path: a pipeline config.
    input_shape: (N, H, W, 3) of the uint8 input.
    num_classes: overrides the config's num_classes; None keeps it.
    runs: timed runs per path.
    warmup: untimed runs before them (the first also traces/compiles).
    xla: also time the function compiled with XLA (jit_compile=True).

  Returns:
    A row dict: config, name, architecture, params, flops, gflops,
    latency_ms {path: {median, min, max, runs, first_call} or {error}}, fps
    (from the keras path's median), input_shape, and `error` when the model
    could not be built or measured (the fields measured before stay).
  """
  name = os.path.splitext(os.path.basename(config_path))[0]
  row = {"config": config_path, "name": name, "input_shape": list(input_shape),
         "params": None, "flops": None, "gflops": None, "latency_ms": {},
         "fps": None, "error": None}
  sessions = []
  try:
    config = config_util.load_pipeline_config(config_path)
    if num_classes is not None:
      _override_num_classes(config, num_classes)
    arch = config_util.get_model_config(config.model)
    row.update(architecture=config.model.WhichOneof("model"),
               feature_extractor=arch.feature_extractor.type,
               filter_scale=round(arch.feature_extractor.filter_scale, 4),
               num_classes=arch.num_classes)
    model = model_builder.build(config.model)
    row["params"] = int(model.inference_model.count_params())
    serve = export_lib.build_inference_function(model, tuple(input_shape))
    concrete = serve.get_concrete_function()
    graph_def = export_lib.freeze(concrete)
    row["flops"] = export_lib.count_flops(graph_def)
    row["gflops"] = row["flops"] / 1e9

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=input_shape, dtype=np.uint8)
    inputs = tf.constant(images)
    latency = row["latency_ms"]
    latency[KERAS] = time_function(
        lambda: serve(inputs)[export_lib.OUTPUT_NAME].numpy(), runs, warmup)
    row["fps"] = 1000.0 * input_shape[0] / latency[KERAS]["median"]
    if xla:
      # XLA support differs by device and op; its failure is a result too.
      try:
        compiled = tf.function(serve.python_function,
                               input_signature=serve.input_signature,
                               jit_compile=True)
        latency[XLA] = time_function(
            lambda: compiled(inputs)[export_lib.OUTPUT_NAME].numpy(), runs,
            warmup)
      except Exception as e:  # pylint: disable=broad-except
        latency[XLA] = {"error": _short_error(e)}
    run_frozen, session = _frozen_runner(graph_def, images)
    sessions.append(session)
    latency[FROZEN] = time_function(run_frozen, runs, warmup)
  except Exception as e:  # pylint: disable=broad-except
    row["error"] = _short_error(e)
  finally:
    for session in sessions:
      session.close()
    # Drop this model before the next one is built (memory, layer names).
    keras.backend.clear_session()
    gc.collect()
  return row


def run_benchmark(config_paths=None, input_shape=DEFAULT_INPUT_SHAPE,
                  num_classes=None, runs=3, warmup=1, xla=True,
                  output_json=None, log=print):
  """Benchmarks each config in turn and writes the JSON report.

  Args:
    config_paths: pipeline configs; None: DEFAULT_CONFIGS.
    input_shape: (N, H, W, 3).
    num_classes: overrides every config's num_classes; None keeps them.
    runs: timed runs per path.
    warmup: untimed runs first.
    xla: also time the XLA-compiled function.
    output_json: where the report goes; None: not written.
    log: called with a progress line per config (None: silent).

  Returns:
    The report: environment fields, settings and `rows` (benchmark_config's).
  """
  config_paths = list(config_paths or default_config_paths())
  report = dict(environment(), input_shape=list(input_shape), runs=runs,
                warmup=warmup, num_classes=num_classes, rows=[])
  for path in config_paths:
    if log:
      log(f"benchmarking {path} at {'x'.join(map(str, input_shape))} ...")
    start = time.perf_counter()
    row = benchmark_config(path, input_shape, num_classes, runs, warmup, xla)
    row["wall_s"] = time.perf_counter() - start
    report["rows"].append(row)
    if output_json:  # Written after every model, so a killed run keeps some.
      write_report(report, output_json)
  return report


def write_report(report, path):
  """Writes the report as indented JSON, creating the folder."""
  directory = os.path.dirname(path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(report, f, indent=2)


def _cell(latency, path):
  entry = latency.get(path)
  if entry is None:
    return "-"
  if "error" in entry:
    return "error"
  return f"{entry['median']:.1f}"


def format_table(report):
  """Plain-text table of the report's rows, with the device and TF version."""
  header = ("config", "params M", "GFLOPs", "keras ms", "xla ms", "frozen ms",
            "fps")
  lines = []
  for row in report["rows"]:
    latency = row.get("latency_ms") or {}
    lines.append((
        row["name"],
        f"{row['params'] / 1e6:.2f}" if row.get("params") else "-",
        f"{row['gflops']:.2f}" if row.get("gflops") else "-",
        _cell(latency, KERAS), _cell(latency, XLA), _cell(latency, FROZEN),
        f"{row['fps']:.2f}" if row.get("fps") else "-",
    ))
  widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]

  def fmt(cells):
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                     for i, (c, w) in enumerate(zip(cells, widths)))

  out = [f"{report['device']}, TensorFlow {report['tensorflow']}, "
         f"{report['date']}, input {'x'.join(map(str, report['input_shape']))}, "
         f"median of {report['runs']} runs (fps from keras ms)",
         fmt(header), fmt(["-" * w for w in widths])]
  out += [fmt(line) for line in lines]
  for row in report["rows"]:
    if row.get("error"):
      out.append(f"{row['name']}: error: {row['error']}")
    xla_entry = (row.get("latency_ms") or {}).get(XLA) or {}
    if "error" in xla_entry:
      out.append(f"{row['name']}: XLA error: {xla_entry['error']}")
  return "\n".join(out)


flags.DEFINE_list("configs", [],
                  "Pipeline configs, comma separated; default: "
                  + ", ".join(DEFAULT_CONFIGS))
flags.DEFINE_string("input_shape", ",".join(map(str, DEFAULT_INPUT_SHAPE)),
                    "N,H,W,3 of the uint8 input.")
flags.DEFINE_integer("num_classes", None,
                     "Overrides each config's num_classes; default: keep it.")
flags.DEFINE_integer("runs", 3, "Timed runs per model and path.")
flags.DEFINE_integer("warmup", 1,
                     "Untimed runs first (the first traces / compiles).")
flags.DEFINE_bool("xla", True, "Also time the XLA-compiled (jit) function.")
flags.DEFINE_string("output_json", "bench_output/benchmark.json",
                    "Where the JSON report goes.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  input_shape = export_lib.parse_shape(FLAGS.input_shape, 4, "--input_shape")
  if FLAGS.num_classes is not None and FLAGS.num_classes < 1:
    raise ValueError(f"--num_classes must be >= 1, got {FLAGS.num_classes}")
  if FLAGS.runs < 1 or FLAGS.warmup < 0:
    raise ValueError("--runs must be >= 1 and --warmup >= 0")
  for path in FLAGS.configs:
    if not os.path.exists(path):
      raise FileNotFoundError(f"config file not found: {path}")
  report = run_benchmark(FLAGS.configs or None, input_shape, FLAGS.num_classes,
                         FLAGS.runs, FLAGS.warmup, FLAGS.xla,
                         FLAGS.output_json)
  print(format_table(report))
  print(f"Wrote {FLAGS.output_json}")


if __name__ == "__main__":
  cli.run(main)
