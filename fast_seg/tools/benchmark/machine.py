"""The machine a benchmark runs on: what it is and how fast it can be.

A latency means little without the device, the TensorFlow version and the
date, so they go into every report. The machine's own ceiling (the dense
throughput of the two kernels these models are made of) turns a model's
FLOP/s into a fraction: how much of the hardware it uses.
"""

import datetime
import os
import platform

import numpy as np
import tensorflow as tf

from fast_seg.export import latency as latency_lib

FLOPS_CONVENTION = "one multiply-add = 2 FLOPs, counted on the inference graph"


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
      "date": datetime.datetime.now().astimezone().isoformat(
          timespec="seconds"),
      "flops": FLOPS_CONVENTION,
      # oneDNN's kernels or Eigen's: a different speed on the same CPU.
      "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""),
  }


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
