"""The benchmark reports sane, complete rows and survives a broken config.

Timings are machine-dependent: only their consistency is checked.
"""

import json

from fast_seg.tools import benchmark
from tests import helpers

DEMO_CONFIG = str(helpers.REPO_ROOT / "configs" /
                  "icnet_mobilenet_v2_synthetic_128.config")


def _check_latency(entry):
  assert entry["min"] > 0
  assert entry["min"] <= entry["median"] <= entry["max"]
  assert len(entry["runs"]) == 2
  assert entry["first_call"] > 0


def test_benchmark_writes_rows(tmp_path):
  output = tmp_path / "out" / "benchmark.json"
  broken = tmp_path / "broken.config"
  broken.write_text("model { icnet { num_classes: 3 } }")
  report = benchmark.run_benchmark(
      [DEMO_CONFIG, str(broken)], input_shape=(1, 64, 64, 3), runs=2,
      warmup=1, output_json=str(output), log=None)

  assert json.loads(output.read_text()) == report
  for key in ("device", "tensorflow", "date"):
    assert report[key]
  good, bad = report["rows"]

  assert good["error"] is None
  assert good["name"] == "icnet_mobilenet_v2_synthetic_128"
  assert good["num_classes"] == 6
  assert good["params"] > 0
  assert good["flops"] > 0 and good["gflops"] > 0
  assert good["fps"] > 0
  latency = good["latency_ms"]
  _check_latency(latency[benchmark.KERAS])
  _check_latency(latency[benchmark.FROZEN])
  # XLA either ran or left its error; it never sinks the row.
  xla = latency[benchmark.XLA]
  if "error" in xla:
    assert xla["error"]
  else:
    _check_latency(xla)

  # A config that cannot be built is a row with the error, not a crash.
  assert "feature_extractor" in bad["error"]
  assert bad["params"] is None and bad["latency_ms"] == {}

  table = benchmark.format_table(report)
  assert "icnet_mobilenet_v2_synthetic_128" in table
  assert "broken: error:" in table


def test_num_classes_override_keeps_config_valid():
  """CamVid's class weights and ignore label 11 must not block 19 classes."""
  camvid = str(helpers.REPO_ROOT / "configs" /
               "icnet_mobilenet_v2_camvid_360.config")
  row = benchmark.benchmark_config(camvid, input_shape=(1, 32, 32, 3),
                                   num_classes=19, runs=1, warmup=0, xla=False)
  assert row["error"] is None
  assert row["num_classes"] == 19
  assert benchmark.XLA not in row["latency_ms"]
  assert row["latency_ms"][benchmark.KERAS]["first_call"] is None
