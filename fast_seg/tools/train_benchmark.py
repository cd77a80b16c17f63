r"""Training throughput and peak memory of a config, one mode per process.

  python -m fast_seg.tools.train_benchmark --config_path C [--steps 10] \
      [--input_path 'data/x/train-*.tfrecord'] [--modes synthetic,pipeline,...]

Modes (each in a fresh process, so its peak memory is its own):
  synthetic             the train step on one batch held in memory (no input
                        pipeline): what the model alone can do;
  pipeline              the tf.data input pipeline alone (read, decode,
                        augment, batch): what it can feed;
  together              the train step fed by the pipeline;
  train_py              train.py's own loop (Trainer.train: class weights,
                        logging, summaries, checkpoints and validation at the
                        config's intervals, the last step included) in a
                        temporary logdir: the rate of its steps after the
                        first call, and where its wall time went;
  synthetic_memory_saving  synthetic with train_config.memory_saving.
Peak memory is the process's peak RSS on a CPU, the allocator's peak on a GPU.
The pipeline is not the bottleneck when `together` is close to `synthetic`.
"""

import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from absl import flags
import tensorflow as tf

from fast_seg.core import standard_fields as fields
from fast_seg.training import time_profile
from fast_seg.training import run_settings
from fast_seg.training import trainer as trainer_lib
from fast_seg.utils import cli
from fast_seg.utils import config_util

SYNTHETIC, PIPELINE, TOGETHER = "synthetic", "pipeline", "together"
SYNTHETIC_MEMORY_SAVING = "synthetic_memory_saving"
TRAIN_PY = "train_py"
MODES = (SYNTHETIC, PIPELINE, TOGETHER, SYNTHETIC_MEMORY_SAVING, TRAIN_PY)
_RESULT_PREFIX = "TRAIN_BENCHMARK_RESULT "


def _peak_memory_mb():
  """GPU allocator peak if a GPU ran the step, else this process's peak RSS."""
  if tf.config.list_logical_devices("GPU"):
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_config(config_path, input_path=None, memory_saving=False):
  """The config with an optional training-data glob and memory saving."""
  config = config_util.load_pipeline_config(config_path)
  if input_path:
    reader = config.train_input_reader
    del reader.tf_record_input_path[:]
    reader.tf_record_input_path.append(input_path)
  if memory_saving:
    config.train_config.memory_saving = True
  return config


def _time_pipeline(dataset, steps, warmup_calls):
  """(seconds, batches) of `steps` batches of the input pipeline alone."""
  iterator = iter(dataset)
  for _ in range(warmup_calls):
    next(iterator)
  start = time.perf_counter()
  for _ in range(steps):
    batch = next(iterator)
  batch[fields.InputFields.image].numpy()
  return time.perf_counter() - start, steps


def _time_training(trainer, dataset, steps, warmup_calls, steps_per_call):
  """(seconds, steps) of training calls fed by `dataset`."""
  iterator = trainer.distribute(dataset)
  per_call = max(steps_per_call, 1)
  for _ in range(warmup_calls):
    losses = trainer.train_function(iterator)
  float(losses[fields.LossFields.total])
  calls = -(-steps // per_call)
  start = time.perf_counter()
  for _ in range(calls):
    losses = trainer.train_function(iterator)
  float(losses[fields.LossFields.total])  # waits for the last step
  return time.perf_counter() - start, calls * per_call


def _measure_train_py(trainer, steps):
  """train.py's loop for `steps` steps (first call excluded from the rate)."""
  trainer.train(steps)
  summary = trainer.time_profile.summary()
  return {"mode": TRAIN_PY,
          "images_per_second": summary["step_images_per_second"],
          "end_to_end_images_per_second": summary["images_per_second"],
          "seconds": summary["phases"][time_profile.STEPS],
          "steps": summary["steps"], "batch_size": summary["batch_size"],
          "time": summary, "peak_memory_mb": _peak_memory_mb()}


def measure(config, mode, steps, warmup_calls=2):
  """Images per second of one mode in this process.

  Args:
    config: a pipeline config whose training data exists.
    mode: one of MODES.
    steps: timed training steps (rounded up to whole calls of
      train_config.steps_per_call) or pipeline batches.
    warmup_calls: untimed calls first (tracing, allocation).

  Returns:
    dict: mode, images_per_second, seconds, steps, batch_size, peak_memory_mb.
  """
  if mode not in MODES:
    raise ValueError(f"--modes: unknown '{mode}'; allowed: {', '.join(MODES)}")
  batch_size = config.train_config.batch_size
  logdir = tempfile.mkdtemp(prefix="fast_seg_train_bench_")
  trainer = trainer_lib.Trainer(config, logdir,
                                run_settings.build_strategy("one_device"))
  if mode == TRAIN_PY:
    return _measure_train_py(trainer, steps)
  dataset = trainer.build_dataset()
  if mode == PIPELINE:
    seconds, done = _time_pipeline(dataset, steps, warmup_calls)
  else:
    if mode in (SYNTHETIC, SYNTHETIC_MEMORY_SAVING):
      # One batch, held in memory: no decode, no augmentation.
      batch = next(iter(dataset))
      dataset = tf.data.Dataset.from_tensors(batch).repeat()
    seconds, done = _time_training(trainer, dataset, steps, warmup_calls,
                                   config.train_config.steps_per_call)
  return {"mode": mode, "images_per_second": done * batch_size / seconds,
          "seconds": seconds, "steps": done, "batch_size": batch_size,
          "peak_memory_mb": _peak_memory_mb()}


def measure_in_subprocess(config_path, mode, steps, input_path=None,
                          timeout=1800):
  """`measure` in a fresh Python process (its own peak memory); never raises.

  Returns:
    measure's dict, or {'mode', 'error'} when the process failed.
  """
  argv = [sys.executable, "-m", "fast_seg.tools.train_benchmark",
          "--config_path", config_path, "--modes", mode,
          "--steps", str(steps), "--emit_result"]
  if input_path:
    argv += ["--input_path", input_path]
  try:
    done = subprocess.run(argv, capture_output=True, text=True,
                          timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    return {"mode": mode, "error": f"timed out after {timeout} s"}
  for line in done.stdout.splitlines():
    if line.startswith(_RESULT_PREFIX):
      return json.loads(line[len(_RESULT_PREFIX):])
  tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
  return {"mode": mode, "error": " ".join(tail)[-500:] or f"exit {done.returncode}"}


def measure_all(config_path, steps=10, input_path=None, modes=MODES):
  """Every mode of one config, each in its own process.

  Returns:
    dict: config, name, results (one per mode) and, when both ran,
    pipeline_overhead (1 - together / synthetic images/s) and
    memory_saving_ratio (peak with / peak without).
  """
  results = [measure_in_subprocess(config_path, mode, steps, input_path)
             for mode in modes]
  by_mode = {r["mode"]: r for r in results if "error" not in r}
  entry = {"config": config_path,
           "name": os.path.splitext(os.path.basename(config_path))[0],
           "steps": steps, "results": results}
  if SYNTHETIC in by_mode and TOGETHER in by_mode:
    entry["pipeline_overhead"] = 1.0 - (
        by_mode[TOGETHER]["images_per_second"]
        / by_mode[SYNTHETIC]["images_per_second"])
  if SYNTHETIC in by_mode and SYNTHETIC_MEMORY_SAVING in by_mode:
    entry["memory_saving_ratio"] = (
        by_mode[SYNTHETIC_MEMORY_SAVING]["peak_memory_mb"]
        / by_mode[SYNTHETIC]["peak_memory_mb"])
  return entry


def _define_flags():
  """The command line, defined only when this module runs as a program:
  benchmark.py imports it, and must not get its flags (--config_path is
  required here and defined by other entry points too)."""
  flags.DEFINE_string("config_path", None, "Pipeline config to train.")
  flags.DEFINE_string("input_path", None,
                      "Training TFRecord glob instead of the config's.")
  flags.DEFINE_list("modes", list(MODES), "Modes: " + ", ".join(MODES))
  flags.DEFINE_integer("steps", 10,
                       "Timed steps (or pipeline batches) per mode.")
  flags.DEFINE_bool("emit_result", False,
                    "Measure the one mode in this process and print its JSON "
                    "(what measure_in_subprocess runs).")
  flags.mark_flag_as_required("config_path")


FLAGS = flags.FLAGS


def main(argv):
  del argv
  if FLAGS.steps < 1:
    raise ValueError(f"--steps must be >= 1, got {FLAGS.steps}")
  unknown = set(FLAGS.modes) - set(MODES)
  if unknown:
    raise ValueError(f"--modes: unknown {sorted(unknown)}; allowed: "
                     f"{', '.join(MODES)}")
  if FLAGS.emit_result:
    if len(FLAGS.modes) != 1:
      raise ValueError("--emit_result measures one mode; give one --modes")
    (mode,) = FLAGS.modes
    config = load_config(FLAGS.config_path, FLAGS.input_path,
                         memory_saving=mode == SYNTHETIC_MEMORY_SAVING)
    print(_RESULT_PREFIX + json.dumps(measure(config, mode, FLAGS.steps)),
          flush=True)
    return
  entry = measure_all(FLAGS.config_path, FLAGS.steps, FLAGS.input_path,
                      FLAGS.modes)
  for result in entry["results"]:
    if "error" in result:
      print(f"{result['mode']:<24} error: {result['error']}")
    else:
      print(f"{result['mode']:<24} {result['images_per_second']:8.2f} img/s  "
            f"peak {result['peak_memory_mb']:.0f} MB")
      if "time" in result:
        print(f"{'':<24} {time_profile.describe(result['time'])}")
  if "pipeline_overhead" in entry:
    print(f"pipeline overhead: {100 * entry['pipeline_overhead']:.1f}%")
  if "memory_saving_ratio" in entry:
    print(f"memory saving: peak x{entry['memory_saving_ratio']:.2f}")


def command():
  """The fast-seg-train-benchmark command, and python -m fast_seg.tools.train_benchmark."""
  _define_flags()
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
