"""One pipeline config measured into its row of the benchmark report.

A row is built so that it always comes back: a config that cannot be built
or a path that cannot run leaves its error in the row, with whatever was
measured before it, and the next config is measured as usual. The model
(random weights unless a checkpoint is given) is measured as it is served:
its parameters and FLOPs, then every batch size on every path, and the
model and its files are released before the next config is built.
"""

import gc
import os
import shutil
import tempfile

import tf_keras as keras

from fast_seg.export import export_lib
from fast_seg.export import full_resolution_labels
from fast_seg.export import inference_graph
from fast_seg.export import latency as latency_lib
from fast_seg.tools.benchmark import labels_methods
from fast_seg.tools.benchmark import path_timing
from fast_seg.utils import config_util

DEFAULT_INPUT_SHAPE = (1, 1024, 2048, 3)


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
    latency, graph_def = path_timing.time_batch(model, batch_shape, timing,
                                                scratch)
    if batch == batch_sizes[0] and timing.profile:
      row["op_profile"] = latency_lib.op_profile(
          graph_def, path_timing.batch_images(timing, batch_shape))
    if batch == batch_sizes[0] and timing.compare_labels:
      row["labels_methods"] = labels_methods.compare(model, batch_shape,
                                                     timing)
    if batch == batch_sizes[0]:
      for precision in timing.precisions:
        latency.update(path_timing.time_precision(config, model, precision,
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


def interleaved_fractions(row, batch, before, after):
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


def _new_row(config_path, shape):
  """A row before anything is measured: what a failure leaves unset."""
  return {"config": config_path, "name": _config_name(config_path),
          "input_shape": list(shape), "params": None, "flops": None,
          "gflops": None, "sizes": {}, "latency_ms": {}, "fps": {},
          "achieved_fraction": {}, "error": None}


def benchmark_config(config_path, input_shape=DEFAULT_INPUT_SHAPE,
                     num_classes=None, runs=3, warmup=1,
                     paths=path_timing.PATHS, batch_sizes=None, num_threads=2,
                     precisions=(), ceiling=None,
                     labels_method=full_resolution_labels.AUTO, profile=False,
                     checkpoint=None, image_files=(),
                     compare_labels_methods=False):
  """Measures one config; never raises for a model that fails.

  Args:
    config_path: a pipeline config.
    input_shape: (N, H, W, 3) of the uint8 input; N is the first batch size.
    num_classes: overrides the config's num_classes; None keeps it.
    runs: timed runs per path.
    warmup: untimed runs before them (the first also traces/compiles).
    paths: names from path_timing.PATHS.
    batch_sizes: batch sizes to time; None: input_shape's N only.
    num_threads, precisions: threads of the TFLite and ONNX runtimes; keys
      of path_timing.PRECISIONS: also time Keras / XLA in that precision.
    ceiling: machine.measure_ceiling()'s dict, for the achieved fractions.
    labels_method: how labels reach the input size, as export.py
      --labels_method (auto: per path's runtime, as export.py gives it).
    profile: add `op_profile` (latency.op_profile of the frozen graph at
      the first batch size: time per op type).
    checkpoint: the trained weights to time (a checkpoint prefix or train
      dir); None: random weights.
    image_files: images to time on (resized to input_shape); empty: random
      pixels. A trained model on real images is what the 'boundary' labels
      tail's cost depends on.
    compare_labels_methods: add `labels_methods` (labels_methods.compare
      at the first batch size): 'boundary' and 'nearest' against 'resize'
      on each of the frozen, tflite and onnx paths requested.

  Returns:
    A row dict: config, name, architecture, params, flops (batch 1), gflops,
    sizes {format_bN: bytes}, latency_ms {batch: {path: {median, min, max,
    runs, first_call} or {error}}}, fps {batch: {path: images/s}},
    achieved_fraction {path: FLOP/s / conv ceiling} (batch 1), and `error`
    when the model could not be built (the fields measured before stay).
  """
  path_timing.check_paths(paths)
  shape, batch_sizes = tuple(input_shape), list(batch_sizes or [input_shape[0]])
  row = _new_row(config_path, shape)
  timing = path_timing.Timing(paths, runs, warmup, num_threads, precisions,
                              labels_method, profile, list(image_files),
                              compare_labels_methods)
  scratch = path_timing.Scratch(tempfile.mkdtemp(prefix="fast_seg_bench_"),
                                row["sizes"], [])
  try:
    config, model = _build(config_path, num_classes, shape, row, checkpoint)
    _time_batches(row, config, model, shape, batch_sizes, timing, scratch)
    if ceiling:
      row["achieved_fraction"] = _achieved_fractions(row, batch_sizes[0],
                                                     ceiling)
  except Exception as e:  # pylint: disable=broad-except
    row["error"] = path_timing.short_error(e)
  finally:
    _release(scratch)
  return row
