"""Sensitivity analysis and budgeted pruning (compress.py --analyze, budgets)."""

import copy
import json
import math
import os
import statistics
import subprocess
import sys

from PIL import Image
import pytest

from fast_seg.builders import model_builder
from fast_seg.compression import budget
from fast_seg.compression import compress_lib
from fast_seg.compression import cost as cost_lib
from fast_seg.compression import report as report_lib
from fast_seg.compression import sensitivity
from fast_seg.evaluation import eval_lib
from fast_seg.export import latency
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers

SHAPE = (1, 64, 64, 3)
EXAMPLES = 6  # the whole tiny val set


def _flops(config, group_scales=None):
  model = model_builder.build(compress_lib.with_scale(
      config, compress_lib.current_scale(config), group_scales).model)
  return model, compress_lib.count_flops(model, SHAPE) / 1e9


def _eval_miou(config, checkpoint, eval_dir):
  """eval.py's figure for a written checkpoint, on the same eval images."""
  config = copy.deepcopy(config)
  config.eval_config.num_examples = EXAMPLES
  return 100 * eval_lib.Evaluator(config).evaluate(checkpoint, eval_dir)["miou"]


@pytest.fixture(name="analysis", scope="module")
def _analysis(trained_run, tmp_path_factory):
  """The shared ICNet-MobileNetV2 0.25 run, every group at 0.5, FLOPs."""
  config, logdir = trained_run
  lines = []
  result = sensitivity.analyze(config, logdir, (0.5,), EXAMPLES,
                               cost_lib.Cost(cost_lib.FLOPS, SHAPE),
                               log=lines.append)
  output_dir = str(tmp_path_factory.mktemp("sensitivity"))
  paths = sensitivity.write(result, output_dir, log=lines.append)
  return result, paths, lines


def test_each_row_is_the_config_model_with_one_group_narrowed(
    analysis, trained_run):
  result, _, lines = analysis
  config, _ = trained_run
  groups = compress_lib.group_names(config)
  assert [(r["group"], r["ratio"]) for r in result["rows"]] == [
      (g, 0.5) for g in groups]
  for row in result["rows"]:
    assert "error" not in row, row
    assert row["scale"] == 0.125
    assert row["drop"] == pytest.approx(result["baseline"]["miou"] - row["miou"])
  for row in result["rows"][-2:]:  # stage5 and head, rebuilt from the config
    model, flops = _flops(config, {row["group"]: 0.125})
    assert row["params"] == model.keras_model.count_params()
    assert row["cost"] == pytest.approx(flops, rel=1e-9)
  assert result["baseline"]["cost"] == pytest.approx(_flops(config)[1])
  head = result["rows"][-1]
  assert head["params"] < 0.7 * result["baseline"]["params"]
  assert f"head x0.5: mIoU {head['miou']:.2f}" in "\n".join(lines)
  # Every model's line says how far the table is, with train.py's ETA.
  count = len(groups)
  assert lines[0] == (f"sensitivity: the unpruned model, then {count} pruned "
                      f"ones ({count} groups x 1 ratios; fewer with --groups "
                      "/ --ratios)")
  row_lines = [line for line in lines if " x0.5: " in line]
  assert [line.split("  [")[1].split(" models")[0] for line in row_lines] == [
      f"{k}/{count}" for k in range(1, count + 1)]
  assert row_lines[-1].endswith(f"[{count}/{count} models, ETA 0:00:00]")
  assert result["groups"] == list(groups)


def test_scores_are_eval_figures_of_the_pruned_checkpoint(
    analysis, trained_run, tmp_path):
  """The in-memory rows score what compress.py writes and eval.py reads."""
  result, _, _ = analysis
  config, logdir = trained_run
  assert result["num_examples"] == EXAMPLES
  assert result["baseline"]["miou"] == pytest.approx(
      _eval_miou(config, checkpoint_util.resolve_checkpoint(
          logdir), str(tmp_path / "base")), abs=1e-6)
  report = compress_lib.prune(config, logdir, str(tmp_path / "head"), None,
                              log=lambda line: None,
                              new_group_scales={"head": 0.125})
  written = compress_lib.written_config(str(tmp_path / "head"))
  assert result["rows"][-1]["miou"] == pytest.approx(_eval_miou(
      written, report["output_checkpoint"], str(tmp_path / "eval")), abs=1e-6)


def test_analysis_files(analysis):
  result, paths, lines = analysis
  assert [os.path.basename(p) for p in paths] == [
      "sensitivity.json", "sensitivity.md", "sensitivity.png"]
  assert sensitivity.read(paths[0]) == json.loads(json.dumps(result))
  text = open(paths[1], encoding="utf-8").read()
  row = result["rows"][0]
  assert (f"| {row['group']} | 0.5 | 0.125 | {row['params'] / 1e6:.2f} M | "
          f"{row['miou']:.2f} | {row['drop']:.2f} | {row['cost']:.3f} |") in text
  assert text.splitlines()[0] in lines
  with Image.open(paths[2]) as image:
    assert image.size == (1100, 400)


def _table(rows):
  """A hand-made analysis: baseline cost 10; rows (group, ratio, drop, cost)."""
  return {"baseline": {"miou": 50.0, "cost": 10.0}, "rows": [
      {"group": g, "ratio": r, "drop": d, "cost": c} if c is not None else
      {"group": g, "ratio": r, "error": "cannot narrow"}
      for g, r, d, c in rows]}


def test_greedy_path_takes_the_least_drop_per_cost_saved():
  path = budget.greedy_path(_table([
      ("a", 0.5, 1.0, 8.0), ("a", 0.25, 4.0, 7.0),  # 0.5 / unit, then 3
      ("b", 0.5, 0.6, 9.0), ("b", 0.25, 2.4, 4.0),  # 0.6 / unit, then 0.36
      ("c", 0.5, None, None)]))
  assert [s["ratios"] for s in path] == [
      {"a": 1.0, "b": 1.0, "c": 1.0},
      {"a": 0.5, "b": 1.0, "c": 1.0},  # 0.5 < 0.6
      {"a": 0.5, "b": 0.5, "c": 1.0},  # 0.6 < 3
      {"a": 0.5, "b": 0.25, "c": 1.0},  # 1.8 / 5 = 0.36
      {"a": 0.25, "b": 0.25, "c": 1.0}]
  assert [s["estimated_cost"] for s in path] == [10.0, 8.0, 7.0, 2.0, 1.0]
  assert [s["estimated_drop"] for s in path] == pytest.approx(
      [0.0, 1.0, 1.6, 3.4, 6.4])


def test_greedy_path_skips_ratios_that_measured_no_saving():
  path = budget.greedy_path(_table([
      ("a", 0.75, 0.1, 10.2), ("a", 0.5, 0.5, 9.5),  # 0.75 costs more
      ("b", 0.5, 3.0, 5.0)]))
  assert [s["ratios"] for s in path] == [{"a": 1.0, "b": 1.0},
                                         {"a": 1.0, "b": 0.5},  # 3 / 5
                                         {"a": 0.5, "b": 0.5}]  # 0.5 / 0.5


class _Costs:
  """Measured costs of a path's states, counting the measurements."""

  def __init__(self, costs):
    self.costs, self.calls = costs, []

  def __call__(self, index):
    self.calls.append(index)
    return self.costs[index]


def test_search_bisects_for_the_first_state_within_the_budget():
  costs = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0.5]
  # The table's estimates are off by 2: measurements decide.
  path = [{"estimated_cost": c - 2.0, "ratios": {"a": i}}
          for i, c in enumerate(costs)]
  measured = _Costs(costs)
  assert budget.search(path, measured, 5.5, 0.0) == 5
  assert len(set(measured.calls)) <= 2 + math.ceil(math.log2(len(costs)))
  # The table's guess first (estimated 5.0 <= 5.5 at index 3), never the
  # thinnest state: the search does not start at the path's end.
  assert measured.calls[:2] == [0, 3] and 10 not in measured.calls
  assert budget.search(path, _Costs(costs), 5.0, 0.1) == 5  # 5 <= 5.5
  assert budget.search(path, _Costs(costs), 4.9, 0.0) == 6
  with pytest.raises(ValueError, match="already meets the budget"):
    budget.search(path, _Costs(costs), 10.0, 0.0)
  with pytest.raises(ValueError, match="cannot be met.*thinnest model"):
    budget.search(path, _Costs(costs), 0.4, 0.05)


def test_search_measures_at_most_its_bound_for_any_budget():
  costs = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0.5]
  path = [{"estimated_cost": c, "ratios": {"a": i}}
          for i, c in enumerate(costs)]
  for target in (9.5, 7.2, 5.0, 2.5, 1.0, 0.5):
    for skew in (0.5, 1.0, 2.0):  # the table low, right, high
      for state, c in zip(path, costs):
        state["estimated_cost"] = c * skew
      measured = _Costs(costs)
      chosen = budget.search(path, measured, target, 0.0)
      assert chosen == costs.index(max(c for c in costs if c <= target))
      assert len(set(measured.calls) - {0}) <= budget.max_measurements(path)
  with pytest.raises(ValueError, match="thinnest model.*measures 0.500"):
    budget.search(path, _Costs(costs), 0.3, 0.0)


def test_a_ratio_budget_is_a_fraction_of_the_unpruned_cost():
  ratio = budget.Budget(0.7, ratio=True, flag="--target_latency_ratio")
  assert ratio.given == "ratio" and ratio.target is None
  assert ratio.resolve(129.0) == pytest.approx(90.3)
  absolute = budget.Budget(92.4)
  assert absolute.resolve(129.0) == 92.4 and absolute.given == "absolute"
  with pytest.raises(ValueError, match=r"--target_flops_ratio must be in "
                     r"\(0, 1\), a fraction of the unpruned model's cost, "
                     "got 1.2"):
    budget.Budget(1.2, ratio=True, flag="--target_flops_ratio")
  with pytest.raises(ValueError, match="the budget must be > 0, got -1"):
    budget.Budget(-1)


def test_groups_narrow_the_table_and_the_path(analysis):
  result, _, _ = analysis
  groups = [row["group"] for row in result["rows"]]
  narrowed = sensitivity.only_groups(result, ["head", groups[0]])
  assert [r["group"] for r in narrowed["rows"]] == [groups[0], "head"]
  assert narrowed["groups"] == [groups[0], "head"]
  assert len(result["rows"]) == len(groups)  # the table itself is kept
  path = budget.greedy_path(narrowed)
  assert {g for s in path for g, r in s["ratios"].items() if r < 1} <= {
      groups[0], "head"}
  with pytest.raises(ValueError, match="--groups must be a comma-separated "
                     "subset of the width groups .*head, got 'nope'"):
    sensitivity.only_groups(result, ["nope"])


@pytest.fixture(name="budgeted", scope="module")
def _budgeted(analysis, trained_run, tmp_path_factory):
  """A FLOPs budget of 0.6 x the unpruned model's, from the fixture's table,
  1 step of fine-tuning."""
  config, logdir = trained_run
  result, _, _ = analysis
  output_dir = str(tmp_path_factory.mktemp("budget"))
  lines = []
  target = 0.6 * result["baseline"]["cost"]
  report = budget.prune_to_budget(
      config, logdir, output_dir, cost_lib.Cost(cost_lib.FLOPS, SHAPE),
      budget.Budget(0.6, ratio=True), finetune_steps=1, log=lines.append,
      analysis=result)
  return report, output_dir, lines, target


def test_budgeted_model_meets_the_budget_and_loads(budgeted, trained_run):
  report, output_dir, lines, target = budgeted
  config, _ = trained_run
  assert report["cost_after"] <= target * 1.05
  assert report["cost_before"] > target
  narrowed = {g: 0.25 * r for g, r in report["ratios"].items() if r < 1}
  assert narrowed and report["group_scales_after"] == {
      g: narrowed.get(g, 0.25) for g in compress_lib.group_names(config)}
  written = compress_lib.written_config(output_dir)
  model = helpers.restore_every_weight(written, report["output_checkpoint"])
  assert report["cost_after"] == pytest.approx(
      compress_lib.count_flops(model, SHAPE) / 1e9)
  assert report["params_after"] == model.keras_model.count_params()
  extractor = config_util.get_model_config(written.model).feature_extractor
  assert {w.group: w.scale for w in extractor.group_widths} == narrowed
  assert f"= {report['cost_after'] / target:.3f} x the budget" in "\n".join(
      lines)


def test_the_report_says_what_a_ratio_budget_meant(budgeted):
  report, output_dir, _, target = budgeted
  before = report["cost_before"]
  assert report["target"] == pytest.approx(target)
  assert report["target_given"] == "ratio"
  assert report["target_ratio"] == pytest.approx(0.6)
  text = open(os.path.join(output_dir, "budget_report.md"),
              encoding="utf-8").read()
  assert (f"budget: 0.6 x the unpruned model's {before:.3f} GFLOPs = "
          f"{target:.3f} GFLOPs (GFLOPs at 64x64") in text
  absolute = dict(report, target_given="absolute", target=2.0,
                  target_ratio=2.0 / before)
  assert (f"budget: 2 GFLOPs = {2.0 / before:.3f} x the unpruned model's "
          f"{before:.3f} GFLOPs") in report_lib.budget_markdown(absolute)


def test_search_lines_count_measurements_apart_from_path_steps(budgeted):
  """Bisection visits the path out of order: the lines count measurements,
  name the path step as a place, and end with the steps in path order."""
  report, _, lines, target = budgeted
  searched = [line for line in lines if line.startswith("search ")]
  most = budget.max_measurements(report["path"])
  last = len(report["path"]) - 1
  guess = next(i for i, s in enumerate(report["path"])
               if s["estimated_cost"] <= target)
  assert searched[0].startswith(f"search 1 (of at most {most}, ETA at most ")
  assert f"): path step {guess} of 0..{last} (" in searched[0]
  assert [line.split(" (of")[0] for line in searched] == [
      f"search {k}" for k in range(1, len(searched) + 1)]
  steps = sorted(int(i) for i in report["measured_steps"])
  summary = next(line for line in lines if line.startswith("measured on"))
  assert summary == "measured on the path: " + "; ".join(
      f"step {i} {report['measured_steps'][str(i)]:.3f} GFLOPs"
      + (" (unpruned)" if i == 0 else
         " (chosen)" if i == report["chosen_step"] else "") for i in steps)


def test_budgeted_model_scores_and_fine_tunes(budgeted, tmp_path):
  report, output_dir, _, _ = budgeted
  written = compress_lib.written_config(output_dir)
  assert report["miou_pruned"] == pytest.approx(_eval_miou(
      written, report["output_checkpoint"], str(tmp_path)), abs=1e-6)
  # pipeline.config trains on from the fine-tuned weights, named relative
  # to its folder (which can then be moved).
  assert written.train_config.fine_tune_checkpoint == os.path.join(
      output_dir, "train", "ckpt-1")
  assert 'fine_tune_checkpoint: "train/ckpt-1"' in open(
      os.path.join(output_dir, "pipeline.config"), encoding="utf-8").read()
  assert report["finetune"]["steps"] == 1
  assert 0.0 <= report["miou_finetuned"] <= 100.0
  stored = json.load(open(os.path.join(output_dir, "budget_report.json"),
                          encoding="utf-8"))
  assert stored["chosen_step"] == report["chosen_step"]
  assert os.path.exists(os.path.join(output_dir, "sensitivity.png"))


def test_a_table_of_another_cost_is_refused(analysis, trained_run, tmp_path):
  config, logdir = trained_run
  result, _, _ = analysis
  with pytest.raises(ValueError, match="--sensitivity: the table measured"):
    budget.prune_to_budget(
        config, logdir, str(tmp_path), cost_lib.Cost(
            cost_lib.FLOPS, (1, 96, 96, 3)), 0.01, analysis=result)


@pytest.mark.parametrize("runtime", [latency.TF, latency.TFLITE_INT8,
                                     latency.ONNX])
def test_latency_is_measured_on_the_exported_model(runtime):
  model = model_builder.build(helpers.model_config(filter_scale=0.25))
  timing = latency.measure(model, runtime, SHAPE, runs=2, warmup=1)
  assert len(timing["runs"]) == 2 and timing["median"] > 0
  assert cost_lib.Cost(cost_lib.LATENCY, SHAPE, runtime, runs=1).unit == "ms"


def test_a_candidate_is_timed_run_for_run_alongside_the_reference():
  small = model_builder.build(helpers.model_config(filter_scale=0.25))
  large = model_builder.build(helpers.model_config(filter_scale=0.5))
  reference = latency.Exported(large, latency.TF, SHAPE)
  candidate = latency.Exported(small, latency.TF, SHAPE)
  try:
    timing = candidate.time(runs=3, warmup=1, alongside=reference)
  finally:
    reference.close()
    candidate.close()
  assert len(timing["runs"]) == len(timing["alongside"]["runs"]) == 3
  assert timing["ratio"] == pytest.approx(statistics.median(
      a / b for a, b in zip(timing["runs"], timing["alongside"]["runs"])))
  assert not os.path.exists(candidate.path)  # close() removed the export


def test_cost_refuses_unknown_runtimes():
  with pytest.raises(ValueError, match="--runtime must be one of tf, tflite, "
                     "tflite_int8, onnx, got 'gpu'"):
    cost_lib.Cost(cost_lib.LATENCY, SHAPE, "gpu")
  with pytest.raises(ValueError, match="--ratios must be numbers in"):
    sensitivity.parse_ratios("0.5,1.5")
  assert sensitivity.parse_ratios("0.5,0.75,0.5") == (0.75, 0.5)


def _compress(*args):
  return subprocess.run([sys.executable, "compress.py", *args],
                        capture_output=True, text=True, cwd=helpers.REPO_ROOT,
                        timeout=600)


def test_cli_budget_from_a_saved_table(analysis, trained_run, tmp_path):
  result, paths, _ = analysis
  _, logdir = trained_run
  common = ["--config_path", os.path.join(logdir, "pipeline.config"),
            "--checkpoint", logdir]
  target = 0.6 * result["baseline"]["cost"] * 1e9
  done = _compress(*common, "--output_dir", str(tmp_path / "out"),
                   "--target_flops", str(target), "--input_shape", "1,64,64,3",
                   "--sensitivity", paths[0], "--eval_examples", "6")
  assert done.returncode == 0, done.stderr
  report = json.load(open(tmp_path / "out" / "budget_report.json",
                          encoding="utf-8"))
  assert report["cost_after"] * 1e9 <= target * 1.05
  assert "x the budget" in done.stdout
  both = _compress(*common, "--output_dir", str(tmp_path / "bad"),
                   "--analyze", "--filter_scale", "0.1")
  assert both.returncode == 2
  assert ("error: pass exactly one of --filter_scale (and/or --group_scales), "
          "--schedule, --analyze, --target_latency_ms, --target_latency_ratio, "
          "--target_flops and --target_flops_ratio; got --analyze"
          ) in both.stderr


def test_cli_ratio_budget_on_one_group(analysis, trained_run, tmp_path):
  """--target_flops_ratio with --groups head: only the head is narrowed, to
  the one ratio that the budget (just above its table cost) allows."""
  result, paths, _ = analysis
  _, logdir = trained_run
  head = result["rows"][-1]
  ratio = round(head["cost"] / result["baseline"]["cost"] + 0.01, 4)
  done = _compress("--config_path", os.path.join(logdir, "pipeline.config"),
                   "--checkpoint", logdir, "--output_dir", str(tmp_path),
                   "--target_flops_ratio", str(ratio), "--groups", "head",
                   "--input_shape", "1,64,64,3", "--sensitivity", paths[0],
                   "--eval_examples", "6")
  assert done.returncode == 0, done.stderr
  report = json.load(open(tmp_path / "budget_report.json", encoding="utf-8"))
  assert report["target"] == pytest.approx(ratio * report["cost_before"])
  assert {g: r for g, r in report["ratios"].items() if r < 1} == {"head": 0.5}
  assert (f"budget: {ratio:g} x the unpruned model's "
          f"{report['cost_before']:.3f} GFLOPs = {report['target']:.3f} "
          "GFLOPs") in done.stdout
