"""A whole benchmark run: the machine, then each config in turn.

The machine's ceiling is measured again after every model, so that each
row's achieved fractions are against the ceilings just before and after it
(a shared host drifts during a long run), each row says what the docs'
latency for its model means at that ceiling (published.py), and the run
warns when the readings moved. The JSON report is rewritten after every
model, so a run that is killed keeps what it measured.
"""

import functools
import inspect
import json
import os
import time

import tensorflow as tf

from fast_seg.tools import train_benchmark
from fast_seg.tools.benchmark import config_row
from fast_seg.tools.benchmark import machine
from fast_seg.tools.benchmark import published

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))
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
# Where the docs' latencies live, with the ceilings they were measured at.
DEFAULT_RESULTS = (os.path.join("docs", "camvid_zoo.json"),)


def default_config_paths():
  """DEFAULT_CONFIGS, found from the working directory or the repository."""
  paths = []
  for path in DEFAULT_CONFIGS:
    repo_path = os.path.join(_REPO_ROOT, path)
    paths.append(path if os.path.exists(path) or not os.path.exists(repo_path)
                 else repo_path)
  return paths


def default_results_paths():
  """DEFAULT_RESULTS in the repository, those that exist (an installed
  package has no docs/)."""
  paths = [os.path.join(_REPO_ROOT, p) for p in DEFAULT_RESULTS]
  return [p for p in paths if os.path.exists(p)]


def _measure_between_ceilings(report, config_path, measure, before,
                              published_models):
  """Appends the config's row, its fractions against the ceilings measured
  before and after it and the docs' figures at them; returns the one after
  (the next row's before)."""
  start = time.perf_counter()
  row = measure(config_path)
  row["wall_s"] = time.perf_counter() - start
  after = machine.measure_ceiling()
  report["ceiling_readings"].append(after["conv3x3_gflops"])
  if row["latency_ms"]:
    config_row.interleaved_fractions(row, report["batch_sizes"][0], before,
                                     after)
    row["published"] = published.compare(row, published_models)
  report["rows"].append(row)
  return after


def _settings(options):
  """benchmark_config's keyword arguments in `options`, defaults filled."""
  bound = inspect.signature(config_row.benchmark_config).bind(None, **options)
  bound.apply_defaults()
  settings = dict(bound.arguments)
  del settings["config_path"]
  return settings


def _started_report(settings, checkpoints, published_paths, log):
  """The report of the machine, its ceiling before the first model and the
  settings."""
  shape = settings["input_shape"]
  report = dict(machine.environment(), input_shape=list(shape),
                runs=settings["runs"], warmup=settings["warmup"],
                num_classes=settings["num_classes"],
                paths=list(settings["paths"]),
                batch_sizes=list(settings["batch_sizes"] or [shape[0]]),
                num_threads=settings["num_threads"],
                precisions=list(settings["precisions"]),
                labels_method=settings["labels_method"],
                image_files=len(settings["image_files"]),
                trained=dict(checkpoints or {}), rows=[], training=[],
                published=list(published_paths))
  log("measuring the machine's matmul and conv throughput ...")
  report["ceiling"] = machine.measure_ceiling()
  report["ceiling_readings"] = [report["ceiling"]["conv3x3_gflops"]]
  report["ceiling_drift"] = published.drift(report["ceiling_readings"])
  return report


def run_benchmark(config_paths=None, train_configs=(), train_steps=10,
                  train_input_path=None, output_json=None, log=print,
                  checkpoints=None, published_paths=None, **options):
  """Measures the machine and each config in turn; writes the JSON report.

  The ceiling is measured again after every model: each row's achieved
  fractions are against the mean of the ceilings just before and after it
  (row['ceiling']), with the range the two allow, and so are the docs'
  figures for it (row['published']); `ceiling_drift` warns when the
  readings moved during the run (published.drift).

  Args:
    config_paths: pipeline configs; None: DEFAULT_CONFIGS.
    train_configs, train_steps: configs whose training throughput and memory
      are measured (fast_seg.tools.train_benchmark), in that many steps.
    train_input_path: training TFRecord glob for every train config instead
      of its own (None: the config's).
    output_json: where the report goes; None: not written.
    log: called with a progress line per step (None: silent).
    checkpoints: {config path: its trained weights}; others random.
    published_paths: results JSONs of the docs' latencies (None:
      DEFAULT_RESULTS; () for none).
    **options: benchmark_config's keyword arguments (input_shape, runs,
      paths, labels_method, ...), the same for every config.

  Returns:
    The report: environment fields, settings, `ceiling`, `rows`,
    `ceiling_readings`, `ceiling_drift`, `training` (train_benchmark's).
  """
  settings = _settings(options)
  if published_paths is None:
    published_paths = default_results_paths()
  published_models = published.load(published_paths)
  config_paths = list(config_paths or default_config_paths())
  log = log or (lambda line: None)
  shape = settings["input_shape"]
  report = _started_report(settings, checkpoints, published_paths, log)

  def save():  # After every model, so a killed run keeps what it measured.
    if output_json:
      write_report(report, output_json)
  save()
  before = report["ceiling"]
  for path in config_paths:
    log(f"benchmarking {path} at {'x'.join(map(str, shape[1:3]))} ...")
    before = _measure_between_ceilings(report, path, functools.partial(
        config_row.benchmark_config,
        **{**settings, "checkpoint": report["trained"].get(path)}), before,
        published_models)
    report["ceiling_drift"] = published.drift(report["ceiling_readings"])
    save()
  if report["ceiling_drift"]["warning"]:
    log(report["ceiling_drift"]["warning"])
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
