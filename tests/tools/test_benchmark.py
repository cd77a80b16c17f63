"""The benchmark reports sane, complete rows and survives a broken config.

Timings are machine-dependent: only their consistency is checked.
"""

import json

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.export import latency as latency_lib
from fast_seg.tools.benchmark import cli
from fast_seg.tools.benchmark import config_row
from fast_seg.tools.benchmark import path_timing
from fast_seg.tools.benchmark import runner
from fast_seg.tools.benchmark import tables
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers

DEMO_CONFIG = str(helpers.REPO_ROOT / "configs" /
                  "icnet_mobilenet_v2_synthetic_128.config")
# Every path but XLA, whose compile is slow on a CPU (timed in a test below).
_PATHS = tuple(p for p in path_timing.PATHS if p != path_timing.XLA)


def _check_latency(entry, runs):
  assert entry["min"] > 0
  assert entry["min"] <= entry["median"] <= entry["max"]
  assert len(entry["runs"]) == runs
  assert entry["first_call"] > 0


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  output = tmp_path_factory.mktemp("bench") / "out" / "benchmark.json"
  broken = tmp_path_factory.mktemp("broken") / "broken.config"
  broken.write_text("model { icnet { num_classes: 3 } }")
  result = runner.run_benchmark(
      [DEMO_CONFIG, str(broken)], input_shape=(1, 64, 64, 3), runs=2,
      warmup=1, paths=_PATHS, batch_sizes=[1],
      output_json=str(output), log=None, profile=True)
  assert json.loads(output.read_text()) == result
  return result


def test_every_path_with_sizes(report):
  for key in ("device", "tensorflow", "date", "flops"):
    assert report[key]
  assert "multiply-add = 2" in report["flops"]
  good = report["rows"][0]
  assert good["error"] is None
  assert good["name"] == "icnet_mobilenet_v2_synthetic_128"
  assert good["num_classes"] == 6 and good["params"] > 0
  assert good["flops"] > 0 and good["gflops"] == good["flops"] / 1e9
  latency = good["latency_ms"]["1"]
  assert set(latency) == set(_PATHS)
  for path, entry in latency.items():
    _check_latency(entry, 2)
    assert good["fps"]["1"][path] == pytest.approx(1000.0 / entry["median"])
  sizes = good["sizes"]
  for name in ("frozen_graph_b1", "saved_model_b1", "tflite_b1",
               "tflite_int8_b1", "onnx_b1"):
    assert sizes[name] > 0, name
  # int8 weights: about a quarter of the float32 file.
  assert sizes["tflite_int8_b1"] < 0.5 * sizes["tflite_b1"]


def test_xla_and_a_larger_batch():
  row = config_row.benchmark_config(
      DEMO_CONFIG, input_shape=(1, 32, 32, 3), runs=1, warmup=1,
      paths=(path_timing.KERAS, path_timing.XLA), batch_sizes=[1, 3])
  assert row["error"] is None and set(row["latency_ms"]) == {"1", "3"}
  for batch in ("1", "3"):
    for path in (path_timing.KERAS, path_timing.XLA):
      entry = row["latency_ms"][batch][path]
      if "error" in entry:  # XLA may be unavailable; it never sinks the row
        assert path == path_timing.XLA and entry["error"]
      else:
        _check_latency(entry, 1)
  fps = row["fps"]["3"][path_timing.KERAS]
  assert fps == pytest.approx(3000.0 / row["latency_ms"]["3"]["keras"]["median"])


def test_ceiling_and_achieved_fraction(report):
  """Fractions are against the ceilings measured just before and after."""
  ceiling = report["ceiling"]
  assert ceiling["matmul_gflops"] > 0 and ceiling["conv3x3_gflops"] > 0
  good = report["rows"][0]
  assert good["ceiling"]["before"] == ceiling  # the first model's
  convs = [good["ceiling"][k]["conv3x3_gflops"] for k in ("before", "after")]
  keras_ms = good["latency_ms"]["1"][path_timing.KERAS]["median"]
  achieved = good["flops"] / (keras_ms / 1000.0) / 1e9
  assert good["achieved_fraction"][path_timing.KERAS] == pytest.approx(
      achieved / (sum(convs) / 2))
  assert good["achieved_fraction_range"][path_timing.KERAS] == pytest.approx(
      [achieved / max(convs), achieved / min(convs)])
  assert "ceiling" not in report["rows"][1]  # the broken one timed nothing
  # One reading before the run and one after each config, the broken one's
  # too; the drift is of those readings.
  readings = report["ceiling_readings"]
  assert readings[:2] == convs and len(readings) == 3
  assert report["ceiling_drift"]["readings"] == readings
  assert good["published"] == {}  # the demo model is not in the docs


def test_op_profile_of_the_frozen_graph(report):
  profile = report["rows"][0]["op_profile"]
  ops = {op["op"]: op for op in profile["ops"]}
  assert sum(op["share"] for op in profile["ops"]) == pytest.approx(1.0)
  assert profile["total_ms"] == pytest.approx(
      sum(op["ms"] for op in profile["ops"]))
  assert [op["ms"] for op in profile["ops"]] == sorted(
      (op["ms"] for op in profile["ops"]), reverse=True)
  # Every batch norm is folded; the convs are there, and the labels tail's
  # two arg-maxes: the cell corners', and the mixed cells' or (more than
  # full_resolution_labels.MAX_MIXED_FRACTION mixed) the resized map's.
  assert not {"FusedBatchNormV3", "FusedBatchNorm"} & set(ops)
  assert ops["Conv2D"]["nodes"] > 10 and ops["ArgMax"]["nodes"] == 2
  assert ops["ResizeBilinear"]["nodes"] >= 1
  assert "time per op type, frozen graph" in tables.format_table(report)


def test_broken_config_is_a_row_and_tables_render(report):
  bad = report["rows"][1]
  assert "feature_extractor" in bad["error"]
  assert bad["params"] is None and bad["latency_ms"] == {}
  table = tables.format_table(report)
  assert "icnet_mobilenet_v2_synthetic_128" in table
  assert "broken: error:" in table
  assert "Latency, batch 1:" in table and "| config | params M |" in table
  assert "Machine ceiling" in table


def test_num_classes_override_keeps_config_valid():
  """CamVid's class weights and ignore label 11 must not block 19 classes."""
  camvid = str(helpers.REPO_ROOT / "configs" /
               "icnet_mobilenet_v2_1.0_camvid_360.config")
  row = config_row.benchmark_config(camvid, input_shape=(1, 32, 32, 3),
                                    num_classes=19, runs=1, warmup=0,
                                    paths=(path_timing.KERAS,))
  assert row["error"] is None
  assert row["num_classes"] == 19
  assert set(row["latency_ms"]["1"]) == {path_timing.KERAS}
  assert row["latency_ms"]["1"][path_timing.KERAS]["first_call"] is None


def test_unknown_path_is_refused():
  with pytest.raises(ValueError, match="--paths: unknown"):
    config_row.benchmark_config(DEMO_CONFIG, paths=("tensorrt",))


def test_trained_weights_and_real_images(trained_run, tmp_path):
  """--trained_checkpoints times the checkpoint's weights, --image_glob the
  files (resized, cycled over the batch)."""
  config, logdir = trained_run
  config_path = config_util.save_pipeline_config(config, str(tmp_path))
  row = {}
  _, model = config_row._build(config_path, None, (1, 64, 64, 3), row, logdir)
  reference = model_builder.build(config.model)
  checkpoint_util.restore_layers(
      [l for l in reference.inference_model.layers if l.weights],
      checkpoint_util.resolve_checkpoint(logdir))
  _, untrained = config_row._build(config_path, None, (1, 64, 64, 3), {})
  kernels = lambda m: [w.numpy() for w in m.inference_model.weights
                       if "kernel" in w.name]
  for got, want in zip(kernels(model), kernels(reference)):
    np.testing.assert_array_equal(got, want)
  assert any((w != r).any() for w, r in zip(kernels(reference),
                                            kernels(untrained)))
  files = []
  for i, colour in enumerate(((255, 0, 0), (0, 0, 255))):
    files.append(str(tmp_path / f"{i}.png"))
    Image.new("RGB", (40, 30), colour).save(files[-1])
  timing = path_timing.Timing((), 1, 0, 2, (), "auto", False, files, False)
  images = path_timing.batch_images(timing, (3, 12, 16, 3))
  assert images.shape == (3, 12, 16, 3) and images.dtype == np.uint8
  np.testing.assert_array_equal(images[:, 0, 0], [[255, 0, 0], [0, 0, 255],
                                                  [255, 0, 0]])
  with pytest.raises(ValueError, match="one entry per --configs entry"):
    cli._checkpoints(["a.config", "b.config"], ["ckpt"])
  assert cli._checkpoints(["a", "b"], ["x", ""]) == {"a": "x"}


def test_labels_methods_timed_alongside_resize():
  row = config_row.benchmark_config(
      DEMO_CONFIG, input_shape=(1, 64, 64, 3), runs=3, warmup=1,
      paths=(path_timing.FROZEN,), compare_labels_methods=True)
  assert row["error"] is None
  for method in ("boundary", "nearest"):
    entry = row["labels_methods"]["tf"][method]
    assert entry["median_ms"] > 0 and entry["resize_ms"] > 0
    assert entry["ratio"] > 0
  report = {"rows": [row]}
  lines = tables._labels_methods_lines(report)
  assert lines[-1].startswith("| icnet_mobilenet_v2_synthetic_128 | tf | ")
  assert "| config | runtime | boundary | nearest |" in lines


def test_latency_runs_cycle_through_the_given_images(tmp_path):
  images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
  np.save(tmp_path / "images.npy", images)
  batches = latency_lib._batches((2, 2, 2, 3), str(tmp_path / "images.npy"))
  assert len(batches) == 2
  np.testing.assert_array_equal(batches[1], images[2:4])
  assert latency_lib._batches((1, 2, 2, 3), None)[0].shape == (1, 2, 2, 3)
