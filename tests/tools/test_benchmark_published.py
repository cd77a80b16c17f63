"""The docs' latencies scaled to this machine, and the ceiling's drift.

Ceilings are injected: these tests check the arithmetic and the words, never
how fast anything ran.
"""

import json

import pytest

from fast_seg.tools.benchmark import cli
from fast_seg.tools.benchmark import machine
from fast_seg.tools.benchmark import path_timing
from fast_seg.tools.benchmark import published
from fast_seg.tools.benchmark import runner
from fast_seg.tools.benchmark import tables
from tests import helpers

DEMO_CONFIG = str(helpers.REPO_ROOT / "configs" /
                  "icnet_mobilenet_v2_synthetic_128.config")
ZOO_RESULTS = str(helpers.REPO_ROOT / "docs" / "camvid_zoo.json")


def _ceiling(conv):
  return {"matmul_gflops": conv + 1.0, "conv3x3_gflops": conv}


def _row(ceilings=(44.0, 52.0), size=(360, 480)):
  """A measured row: int8 109.9 ms, keras 50 ms, frozen failed."""
  return {"name": "m", "input_shape": [1, *size, 3],
          "latency_ms": {"1": {path_timing.TFLITE_INT8: {"median": 109.9},
                               path_timing.KERAS: {"median": 50.0},
                               path_timing.FROZEN: {"error": "boom"}}},
          "ceiling": {"before": _ceiling(ceilings[0]),
                      "after": _ceiling(ceilings[1])}}


def _models(ceiling=(244, 286), note=None):
  return {"m": {"latency_ms": {"tflite_int8_360x480": 15.9,
                               "tf_360x480": 64.1},
                "ceiling": list(ceiling) if ceiling else None, "note": note,
                "source": "zoo.json"}}


def test_a_published_latency_is_scaled_by_the_two_ceilings():
  # 15.9 ms at 244 GFLOP/s on a machine of 48: 15.9 x 244 / 48 = 80.825.
  assert published.scale(15.9, 244, 48) == pytest.approx(80.825)
  assert published.scale(15.9, 286, 48) == pytest.approx(94.7375)
  compared = published.compare(_row(), _models())
  # keras is not published and the frozen path failed: int8 alone.
  assert list(compared) == [path_timing.TFLITE_INT8]
  entry = compared[path_timing.TFLITE_INT8]
  assert entry["machine_ceiling"] == 48.0  # the mean of 44 and 52
  assert entry["expected_ms"] == pytest.approx([80.825, 94.7375])
  assert entry["measured_ms"] == 109.9 and entry["key"] == "tflite_int8_360x480"
  # 109.9 / 94.74 = 1.16, 109.9 / 80.83 = 1.36.
  assert published.comparison_text("m", entry) == (
      "m tflite_int8 at 360x480: docs 15.9 ms at 244-286 GFLOP/s = "
      "80.8-94.7 ms at this machine's 48 GFLOP/s; measured 109.9 ms "
      "(1.16-1.36x that)")
  one = published.compare(_row(), _models(ceiling=(244, 244)))
  assert published.comparison_text("m", one[path_timing.TFLITE_INT8]) == (
      "m tflite_int8 at 360x480: docs 15.9 ms at 244 GFLOP/s = 80.8 ms at "
      "this machine's 48 GFLOP/s; measured 109.9 ms (1.36x that)")


def test_a_latency_without_its_ceiling_says_so():
  entry = published.compare(_row(), _models(
      ceiling=None, note="ceiling not recorded; one run with the 1.0"))[
          path_timing.TFLITE_INT8]
  assert entry["expected_ms"] is None
  assert published.comparison_text("m", entry) == (
      "m tflite_int8 at 360x480: docs 15.9 ms (ceiling not recorded; one run "
      "with the 1.0); measured 109.9 ms")
  # Another input size, an unpublished model, no ceiling around the row.
  assert published.compare(_row(size=(1024, 2048)), _models()) == {}
  assert published.compare(dict(_row(), name="other"), _models()) == {}
  assert published.compare(dict(_row(), ceiling=None), _models()) == {}


def test_drift_warns_only_past_the_threshold():
  quiet = published.drift([100.0, 95.0, 105.0])  # 105 / 95 = 1.105
  assert quiet["warning"] is None
  assert quiet["moved"] == pytest.approx(105.0 / 95.0 - 1.0)
  assert published.drift([100.0, 115.0])["warning"] is None  # 15%: not more
  assert published.drift([50.0])["moved"] == 0.0
  moved = published.drift([100.0, 80.0, 95.0])
  assert (moved["start"], moved["end"], moved["low"], moved["high"]) == (
      100.0, 95.0, 80.0, 100.0)
  assert moved["warning"] == (
      "warning: the machine's ceiling moved from 100 to 95 GFLOP/s during "
      "the run (readings 80-100, 25% apart, more than 15%): other jobs share "
      "the cores; latencies measured at different times of this run are not "
      "comparable, and each row's scaled docs figure holds only for its own "
      "ceiling")
  assert published.drift([100.0, 115.1])["warning"] is not None


def test_the_docs_results_carry_their_ceilings(monkeypatch, capsys):
  """Every model of docs/camvid_zoo.json with latencies names the ceiling
  they were measured at, or says it was not recorded; --ceiling_only
  prints them at this machine's ceiling."""
  entries = json.loads(open(ZOO_RESULTS, encoding="utf-8").read())["models"]
  for entry in entries:
    if entry.get("latency_ms"):
      assert "latency_ceiling_gflops" in entry and entry["latency_note"]
      assert (entry["latency_ceiling_gflops"] is not None
              or "not recorded" in entry["latency_note"])
  models = published.load([ZOO_RESULTS])
  assert models["icnet_mobilenet_v2_1.0_camvid_360"]["ceiling"] == [244, 286]
  monkeypatch.setattr(machine, "measure_ceiling", lambda: _ceiling(48.0))
  cli._ceiling_only([ZOO_RESULTS])
  out = capsys.readouterr().out
  assert out.startswith("Machine ceiling: matmul 49.0 GFLOP/s, 3x3 conv 48.0 "
                        "GFLOP/s.\n")
  assert ("- icnet_mobilenet_v2_1.0_camvid_360 tflite_int8 at 360x480: docs "
          "15.9 ms at 244-286 GFLOP/s = 80.8-94.7 ms at this machine's 48 "
          "GFLOP/s\n") in out
  # A model without a recorded ceiling: one line that says so.
  assert ("- deeplab_v3_plus_mobilenet_v2_camvid_360: 4 latencies, ceiling not "
          "recorded; ") in out
  assert "deeplab_v3_plus_mobilenet_v2_camvid_360 frozen" not in out


def test_load_refuses_a_file_that_is_not_results(tmp_path):
  path = tmp_path / "x.json"
  path.write_text('{"rows": []}')
  with pytest.raises(ValueError, match=r"--published .*x.json: not a results "
                     "JSON with 'models'"):
    published.load([str(path)])


def test_a_run_scales_its_rows_and_warns_with_injected_ceilings(
    tmp_path, monkeypatch):
  """Readings 100 (start), 100 (after the model), 60 (after the broken
  config): the model's docs figure is scaled at 100, the run warns."""
  readings = iter([_ceiling(100.0), _ceiling(100.0), _ceiling(60.0)])
  monkeypatch.setattr(machine, "measure_ceiling", lambda: next(readings))
  results = tmp_path / "zoo.json"
  results.write_text(json.dumps({"models": [{
      "name": "icnet_mobilenet_v2_synthetic_128",
      "latency_ms": {"tf_32x32": 10.0}, "latency_ceiling_gflops": [200, 200],
      "latency_note": "made up for the test"}]}))
  broken = tmp_path / "broken.config"
  broken.write_text("model { icnet { num_classes: 3 } }")
  lines = []
  report = runner.run_benchmark(
      [DEMO_CONFIG, str(broken)], input_shape=(1, 32, 32, 3), runs=1,
      warmup=0, paths=(path_timing.FROZEN,), log=lines.append,
      published_paths=[str(results)])
  assert report["ceiling_readings"] == [100.0, 100.0, 60.0]
  assert report["ceiling_drift"]["moved"] == pytest.approx(100.0 / 60.0 - 1)
  entry = report["rows"][0]["published"][path_timing.FROZEN]
  assert entry["expected_ms"] == [20.0, 20.0]  # 10 x 200 / 100
  assert lines[-1] == report["ceiling_drift"]["warning"]
  table = tables.format_table(report)
  measured = entry["measured_ms"]
  assert (f"- icnet_mobilenet_v2_synthetic_128 frozen at 32x32: docs 10.0 ms "
          f"at 200 GFLOP/s = 20.0 ms at this machine's 100 GFLOP/s; measured "
          f"{measured:.1f} ms") in table
  assert ("3x3 conv 100.0 GFLOP/s at the start; 60.0-100.0 over the run's 3 "
          "readings.\nwarning: the machine's ceiling moved from 100 to 60 "
          "GFLOP/s") in table
