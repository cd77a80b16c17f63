r"""Params, FLOPs, sizes and latency of models built from pipeline configs.

  python -m fast_seg.tools.benchmark [--configs a.config,b.config] \
      [--input_shape 1,1024,2048,3] [--batch_sizes 1,2] [--num_classes 19] \
      [--paths keras,keras_xla,frozen,tflite,tflite_int8,onnx] [--num_threads 2] \
      [--precisions float16,bfloat16] [--runs 5] [--warmup 1] \
      [--train_configs c.config] [--labels_method auto|boundary|resize|nearest] \
      [--trained_checkpoints ckpt_a,ckpt_b --image_glob 'frames/*.png'] \
      [--compare_labels_methods] [--published docs/camvid_zoo.json] \
      --output_json bench_output/benchmark.json
  python -m fast_seg.tools.benchmark --ceiling_only

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

Latencies do not transfer between machines; ceilings roughly do. Each row
whose model the docs publish (--published: a results JSON with the ceiling
each latency was measured at) prints the docs' figure scaled to the
ceiling measured around it, beside the measured one, and the run warns when
the ceiling moved by more than 15% between its readings. --ceiling_only
measures the ceiling and prints every published latency scaled to it,
timing no model (a few seconds).
"""

import os

from absl import flags
import tensorflow as tf

from fast_seg.export import full_resolution_labels
from fast_seg.tools.benchmark import config_row
from fast_seg.tools.benchmark import machine
from fast_seg.tools.benchmark import path_timing
from fast_seg.tools.benchmark import published
from fast_seg.tools.benchmark import runner
from fast_seg.tools.benchmark import tables
from fast_seg.utils import cli

FLAGS = flags.FLAGS


def _define_flags():
  flags.DEFINE_list("configs", [],
                    "Pipeline configs, comma separated; default: "
                    + ", ".join(runner.DEFAULT_CONFIGS))
  flags.DEFINE_string("input_shape",
                      ",".join(map(str, config_row.DEFAULT_INPUT_SHAPE)),
                      "N,H,W,3 of the uint8 input.")
  flags.DEFINE_list("batch_sizes", [],
                    "Batch sizes to time; default: N of --input_shape.")
  flags.DEFINE_integer("num_classes", None, "Overrides each config's "
                       "num_classes; default: keep it.")
  flags.DEFINE_list("paths", list(path_timing.PATHS),
                    "Latency paths: " + ", ".join(path_timing.PATHS))
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
                      "Training TFRecord glob for the train configs "
                      "instead of their own.")
  flags.DEFINE_enum("labels_method", full_resolution_labels.AUTO,
                    [full_resolution_labels.AUTO,
                     *full_resolution_labels.METHODS],
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
                      "Time on these images (resized to --input_shape) "
                      "instead of random pixels.")
  flags.DEFINE_bool("profile", False,
                    "Add each model's time per op type in the frozen graph "
                    "(traced runs) to the JSON and the tables.")
  flags.DEFINE_string("output_json", "bench_output/benchmark.json",
                      "Where the JSON report goes.")
  flags.DEFINE_list("published", None,
                    "Results JSONs of the docs' latencies and the ceilings "
                    "they were measured at; default: "
                    + ", ".join(runner.DEFAULT_RESULTS)
                    + " of the repository.")
  flags.DEFINE_bool("ceiling_only", False,
                    "Measure the machine's ceiling and print the published "
                    "latencies scaled to it; time no model.")


def _checkpoints(configs, checkpoints):
  """{config: checkpoint} of --configs and --trained_checkpoints."""
  if checkpoints and not configs:
    raise ValueError("--trained_checkpoints needs --configs (one checkpoint "
                     "per config)")
  if checkpoints and len(checkpoints) != len(configs):
    raise ValueError(f"--trained_checkpoints needs one entry per --configs "
                     f"entry ({len(configs)}), got {len(checkpoints)}")
  return {c: p for c, p in zip(configs, checkpoints) if p}


def _ceiling_only(published_paths):
  """The ceiling, and what every published latency means at it."""
  ceiling = machine.measure_ceiling()
  print(f"Machine ceiling: matmul {ceiling['matmul_gflops']:.1f} GFLOP/s, "
        f"3x3 conv {ceiling['conv3x3_gflops']:.1f} GFLOP/s.")
  lines = published.scaled_lines(published.load(published_paths),
                                 ceiling["conv3x3_gflops"])
  if lines:
    print("The docs' figures on this machine (published ms x published "
          "3x3-conv ceiling / this machine's; first order):")
    print("\n".join(f"- {line}" for line in lines))


def main(argv):
  del argv
  published_paths = (FLAGS.published if FLAGS.published is not None
                     else runner.default_results_paths())
  if FLAGS.ceiling_only:
    _ceiling_only(published_paths)
    return
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
  unknown = set(FLAGS.paths) - set(path_timing.PATHS)
  if unknown:
    raise ValueError(f"--paths: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(path_timing.PATHS)}")
  precisions = FLAGS.precisions
  if not precisions and tf.config.list_physical_devices("GPU"):
    precisions = list(path_timing.PRECISIONS)
  unknown = set(precisions) - set(path_timing.PRECISIONS)
  if unknown:
    raise ValueError(f"--precisions: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(path_timing.PRECISIONS)}")
  for path in list(FLAGS.configs) + list(FLAGS.train_configs):
    if not os.path.exists(path):
      raise FileNotFoundError(f"config file not found: {path}")
  report = runner.run_benchmark(
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
      compare_labels_methods=FLAGS.compare_labels_methods,
      published_paths=published_paths)
  print(tables.format_table(report))
  print(f"Wrote {FLAGS.output_json}")


def command():
  """The fast-seg-benchmark command, and python -m fast_seg.tools.benchmark.

  The flags are defined here, not at import, so that importing the package
  (as tests and other tools do) defines no flags that could clash with theirs.
  """
  _define_flags()
  cli.run(main, usage=__doc__)
