"""Sensitivity analysis: what pruning each width group alone costs in accuracy.

Li et al. (2017, "Pruning Filters for Efficient ConvNets", section 4.2) prune
each layer alone, evaluate without retraining and read off which layers
tolerate pruning. Here the unit is a width group (a backbone stage, or
'head': everything after the backbone), the same unit
`feature_extractor.group_widths` sets, so every row of the table is a model
the config can build. For each group and each ratio the checkpoint is
pruned to `ratio` x the group's current scale, the other groups untouched,
and a validation subset is evaluated (no fine-tuning). With a `Cost`, each
row is also measured (latency on the runtime, or FLOPs): the lookup table
that budget.py's search starts from.

A table costs one model per group and ratio (about a minute each for the
CamVid ICNet-MobileNetV2 1.0 timed at 1024x2048 on 2 shared cores:
docs/compression.md), so each row's line says how far the table is and when
it should end, and `groups` narrows it.
"""

import copy
import json
import os
import tempfile

from fast_seg.compression import compress_lib
from fast_seg.compression import report as report_lib
from fast_seg.evaluation import eval_lib
from fast_seg.training import progress
from fast_seg.utils import checkpoint_util

DEFAULT_RATIOS = (0.75, 0.5, 0.25)
ANALYSIS_NAME = "sensitivity"


def parse_ratios(text):
  """'0.75,0.5' -> (0.75, 0.5): fractions of a group's width, in (0, 1)."""
  try:
    ratios = tuple(float(v) for v in text.split(",") if v.strip())
  except ValueError:
    raise ValueError(f"--ratios must be comma-separated numbers, got "
                     f"'{text}'") from None
  if not ratios or any(not 0.0 < r < 1.0 for r in ratios):
    raise ValueError(f"--ratios must be numbers in (0, 1), e.g. 0.75,0.5, "
                     f"got '{text}'")
  return tuple(sorted(set(ratios), reverse=True))


class Evaluation:
  """mIoU of in-memory models on the first `num_examples` eval images."""

  def __init__(self, pipeline_config, num_examples):
    if num_examples < 0:
      raise ValueError(f"--eval_examples must be >= 0 (0: the whole eval "
                       f"input), got {num_examples}")
    self.config = copy.deepcopy(pipeline_config)
    self.config.eval_config.num_examples = num_examples
    self.config.eval_config.num_visualizations = 0
    self.config.eval_config.image_summaries = False
    self.num_examples = None  # how many the last evaluation read

  def miou(self, model, model_config=None):
    """The model's mIoU in percent (model_config: its own widths)."""
    config = copy.deepcopy(self.config)
    if model_config is not None:
      config.model.CopyFrom(model_config.model)
    evaluator = eval_lib.Evaluator(config, model=model)
    with tempfile.TemporaryDirectory(prefix="fast_seg_sensitivity_") as tmp:
      result = evaluator.evaluate_weights(tmp, 0, quiet=True)
    self.num_examples = result["num_examples"]
    return 100.0 * result["miou"]


def _row(pruner, group, ratio, baseline, evaluation, cost):
  """One table row: `group` alone at `ratio` of its scale."""
  scale = pruner.scales[group] * ratio
  row = {"group": group, "ratio": ratio, "scale": scale}
  try:
    pruned = pruner.prune({group: scale})
  except ValueError as e:  # e.g. a width the graph cannot narrow
    row["error"] = str(e)
    return row
  row["params"] = pruned.target.keras_model.count_params()
  row["miou"] = evaluation.miou(pruned.target, pruned.config)
  row["drop"] = baseline["miou"] - row["miou"]
  if cost is not None:
    row["cost"] = cost.of(pruned.target)
  return row


class Pruner:
  """One loaded checkpoint, pruned to any group widths in memory."""

  def __init__(self, pipeline_config, checkpoint):
    self.config = pipeline_config
    self.checkpoint = checkpoint_util.resolve_checkpoint(checkpoint)
    self.source = compress_lib.load_model(pipeline_config, self.checkpoint)
    self.filter_scale = compress_lib.current_scale(pipeline_config)
    self.scales = compress_lib.group_scales(pipeline_config)

  def prune(self, new_group_scales):
    """compress_lib's _Pruned stage with these groups narrowed."""
    return compress_lib.prune_loaded(self.source, self.config,
                                     self.filter_scale, False,
                                     new_group_scales)


def check_groups(groups, allowed):
  """`groups` in `allowed`'s order; ValueError naming the unknown ones."""
  unknown = [g for g in groups if g not in allowed]
  if unknown or not groups:
    raise ValueError(f"--groups must be a comma-separated subset of the "
                     f"width groups {', '.join(allowed)}, got "
                     f"'{','.join(groups)}'")
  return tuple(g for g in allowed if g in groups)


def only_groups(analysis, groups):
  """A copy of `analysis` whose rows are those of `groups` only.

  A saved table narrowed to fewer groups: the budget's path then narrows
  those and leaves the others at their width.
  """
  tabled = tuple(dict.fromkeys(r["group"] for r in analysis["rows"]))
  groups = check_groups(groups, tabled)
  narrowed = dict(analysis, groups=list(groups))
  narrowed["rows"] = [r for r in analysis["rows"] if r["group"] in groups]
  return narrowed


class _Counter:
  """'[k/n models, ETA h:mm:ss]' for each row's line, as train.py's ETA."""

  def __init__(self, total):
    self.total, self.done = total, 0
    self.meter = progress.Throughput(0, total, 1)

  def tick(self):
    self.done += 1
    _, left = self.meter.update(self.done)
    return (f"  [{self.done}/{self.total} models, ETA "
            f"{progress.format_duration(left)}]")


def analyze(pipeline_config, checkpoint, ratios=DEFAULT_RATIOS,
            num_examples=50, cost=None, log=print, pruner=None, groups=None):
  """Prunes each width group alone at each ratio; evaluates each model.

  Args:
    pipeline_config: the config the checkpoint was trained with (its
      eval_input_reader is the validation set).
    checkpoint: a checkpoint prefix or a train dir (its latest).
    ratios: fractions of each group's current scale, e.g. (0.75, 0.5).
    num_examples: eval images per evaluation (0: the whole eval input).
    cost: a cost.Cost to measure every model with, or None.
    log: called with a line per model.
    pruner: a Pruner of this checkpoint, to reuse its loaded model.
    groups: the width groups to prune (each alone); None: every group.

  Returns:
    {'checkpoint', 'ratios', 'groups', 'num_examples', 'cost', 'baseline':
    {miou, params[, cost]}, 'rows': [{group, ratio, scale, params, miou,
    drop[, cost]} or {group, ratio, scale, error}]}.
  """
  evaluation = Evaluation(pipeline_config, num_examples)
  pruner = pruner or Pruner(pipeline_config, checkpoint)
  groups = check_groups(groups or tuple(pruner.scales), tuple(pruner.scales))
  log(f"sensitivity: the unpruned model, then {len(groups) * len(ratios)} "
      f"pruned ones ({len(groups)} groups x {len(ratios)} ratios; fewer with "
      "--groups / --ratios)")
  baseline = {"miou": evaluation.miou(pruner.source),
              "params": pruner.source.keras_model.count_params()}
  if cost is not None:
    baseline["cost"] = cost.reference(pruner.source)
  log(f"unpruned: mIoU {baseline['miou']:.2f} on {evaluation.num_examples} "
      f"eval images" + _cost_text(baseline, cost))
  rows = []
  counter = _Counter(len(groups) * len(ratios))
  for group in groups:
    for ratio in ratios:
      row = _row(pruner, group, ratio, baseline, evaluation, cost)
      rows.append(row)
      log(f"{group} x{ratio:g}: " + (
          f"not prunable ({row['error']})" if "error" in row else
          f"mIoU {row['miou']:.2f} (drop {row['drop']:.2f})"
          + _cost_text(row, cost)) + counter.tick())
  return {"checkpoint": pruner.checkpoint, "ratios": list(ratios),
          "groups": list(groups), "num_examples": evaluation.num_examples,
          "cost": cost.describe() if cost else None,
          "cost_unit": cost.unit if cost else None,
          "baseline": baseline, "rows": rows}


def _cost_text(row, cost):
  if cost is None or "cost" not in row:
    return ""
  return f", {row['cost']:.3f} {cost.unit}"


def write(analysis, output_dir, log=print):
  """sensitivity.json, sensitivity.md and sensitivity.png in output_dir."""
  os.makedirs(output_dir, exist_ok=True)
  base = os.path.join(output_dir, ANALYSIS_NAME)
  report_lib.write_json_and_markdown(
      analysis, report_lib.sensitivity_markdown(analysis), base, log)
  report_lib.plot_sensitivity(analysis, base + ".png")
  return [base + ext for ext in (".json", ".md", ".png")]


def read(path):
  """An analysis written by `write` (its .json)."""
  try:
    with open(path, encoding="utf-8") as f:
      analysis = json.load(f)
  except (OSError, ValueError) as e:
    raise ValueError(f"--sensitivity {path}: cannot be read ({e})") from None
  if not isinstance(analysis, dict) or not {"baseline", "rows"} <= set(analysis):
    raise ValueError(f"--sensitivity {path}: not a sensitivity.json of "
                     "compress.py --analyze")
  return analysis
