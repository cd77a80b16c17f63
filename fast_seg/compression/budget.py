"""Budgeted pruning: per-group widths that meet a latency or FLOPs budget.

The NetAdapt / AMC question ("the most accurate model that runs in X ms on
this runtime"), answered with the sensitivity table (sensitivity.py):

1. Each width group is pruned alone at each ratio; its mIoU drop and its
   cost (latency measured on the runtime, or FLOPs) are the lookup table.
   The budget is in the cost's unit or a fraction of the unpruned model's
   cost as this run measures it (Budget).
2. A greedy path from the unpruned model to the thinnest: each step
   narrows the one group (to its next ratio that saves anything) that
   loses the least mIoU per unit of cost saved, as the table says.
3. The table's costs only add up approximately (groups interact, timing is
   noisy), so the path is searched with real measurements: the pruned
   model of a step is exported and timed (or its graph counted), starting
   at the step the table predicts and bisecting for the first step whose
   measured cost is within the budget. A handful of measurements, not one
   per step; each line counts them apart from the step's place on the
   path, which bisection visits out of order.
4. That model is written like any compress.py stage (ckpt-0, its
   pipeline.config with group_widths, compression_report), optionally
   fine-tuned, and budget_report.json / .md give the widths, the measured
   cost before and after and the mIoU before, after pruning and after
   fine-tuning.
"""

import math
import os

from fast_seg.compression import compress_lib
from fast_seg.compression import cost as cost_lib
from fast_seg.compression import report as report_lib
from fast_seg.compression import sensitivity
from fast_seg.training import progress
from fast_seg.training import train_lib
from fast_seg.utils import config_util

REPORT_NAME = "budget_report"
DEFAULT_TOLERANCE = 0.05


def _levels(analysis):
  """{group: [(ratio, mIoU drop, cost saved)]}, unpruned first, by ratio."""
  base_cost = analysis["baseline"]["cost"]
  levels = {}
  for row in analysis["rows"]:
    levels.setdefault(row["group"], [(1.0, 0.0, 0.0)])
    if "error" not in row:
      levels[row["group"]].append(
          (row["ratio"], row["drop"], base_cost - row["cost"]))
  return {g: sorted(v, reverse=True) for g, v in levels.items()}


def _next_level(options, level):
  """The nearest deeper level that the table says saves cost, or None."""
  for deeper in range(level + 1, len(options)):
    if options[deeper][2] > options[level][2]:
      return deeper
  return None


def _best_step(levels, state):
  """(group, level) of the cheapest next step in mIoU per cost saved.

  Each group's candidate is its nearest deeper ratio that saves anything
  (a ratio the table measured as no cheaper is skipped): small steps keep
  the path fine enough to stop close under the budget.
  """
  best = None
  for group, options in levels.items():
    level = _next_level(options, state[group])
    if level is None:
      continue
    here, there = options[state[group]], options[level]
    score = (there[1] - here[1]) / (there[2] - here[2])
    if best is None or score < best[0]:
      best = (score, group, level)
  return best[1:] if best else None


def greedy_path(analysis):
  """The states from the unpruned model to the thinnest, one step each.

  Returns:
    list of {'ratios': {group: ratio}, 'estimated_cost', 'estimated_drop'}.
  """
  levels = _levels(analysis)
  state = {group: 0 for group in levels}
  path = []
  while True:
    chosen = {g: levels[g][i] for g, i in state.items()}
    path.append({
        "ratios": {g: level[0] for g, level in chosen.items()},
        "estimated_cost": analysis["baseline"]["cost"] - sum(
            level[2] for level in chosen.values()),
        "estimated_drop": sum(level[1] for level in chosen.values())})
    step = _best_step(levels, state)
    if step is None:
      return path
    state[step[0]] = step[1]


def group_scales_of(state, scales):
  """{group: new scale} of a path state's narrowed groups."""
  return {g: scales[g] * r for g, r in state["ratios"].items() if r < 1.0}


def max_measurements(path):
  """How many states `search` measures at most, the unpruned one aside.

  The table's guess, a bisection of the rest of the path, and the
  thinnest state when the bisection ends there unmeasured.
  """
  last = len(path) - 1
  return 2 + math.ceil(math.log2(max(last, 1)))


def _ratios_text(state):
  narrowed = [f"{g} x{r:g}" for g, r in state["ratios"].items() if r < 1.0]
  return ", ".join(narrowed) or "unpruned"


class _Measured:
  """Real costs of path states, each measured once, in order of measuring.

  Each measurement's line counts the measurements (with an ETA) apart
  from the state's place on the path, which bisection visits out of order
  ('search 1 (of at most 6 ...): path step 4 of 0..9'); once the search
  ends, `summary` lists them in path order.
  """

  def __init__(self, pruner, cost, path, log):
    self.pruner, self.cost, self.path, self.log = pruner, cost, path, log
    self.costs = {}
    self.most = max_measurements(path)
    self.meter = progress.Throughput(0, self.most, 1)

  def __call__(self, index):
    if index not in self.costs:
      pruned = self.pruner.prune(group_scales_of(self.path[index],
                                                 self.pruner.scales))
      self.costs[index] = self.cost.of(pruned.target)
      done = len(self.costs) - (0 in self.costs)
      _, left = self.meter.update(done)
      self.log(f"search {done} (of at most {self.most}, ETA at most "
               f"{progress.format_duration(left)}): path step {index} of "
               f"0..{len(self.path) - 1} ({_ratios_text(self.path[index])}) "
               f"measured {self.costs[index]:.3f} {self.cost.unit} (table: "
               f"{self.path[index]['estimated_cost']:.3f})")
    return self.costs[index]

  def summary(self, chosen):
    """The measured states in path order, the chosen one marked."""
    return "measured on the path: " + "; ".join(
        f"step {i} {c:.3f} {self.cost.unit}" + (
            " (unpruned)" if i == 0 else " (chosen)" if i == chosen else "")
        for i, c in sorted(self.costs.items()))


def search(path, measured, target, tolerance):
  """Index of the first path state measured within target x (1 + tolerance).

  Measures the state the table predicts first, then bisects the part of
  the path on the budget's side of it. The thinnest state is measured only
  when the bisection ends there: the path's end is not the search's start.

  Raises:
    ValueError: the unpruned model already meets the budget, or not even
      the path's thinnest model does.
  """
  limit = target * (1.0 + tolerance)
  if measured(0) <= limit:
    raise ValueError(f"the unpruned model already meets the budget "
                     f"({measured(0):.3f} <= {target:g} x {1 + tolerance:g})")
  last = len(path) - 1
  # measured(low) > limit; high is within it, or `last` not yet measured.
  low, high = 0, last
  guess = next((i for i, s in enumerate(path)
                if s["estimated_cost"] <= target), last)
  if guess > 0:
    if measured(guess) <= limit:
      high = guess
    else:
      low = guess
  while high - low > 1:
    middle = (low + high) // 2
    if measured(middle) <= limit:
      high = middle
    else:
      low = middle
  if high > low and measured(high) <= limit:
    return high
  raise ValueError(
      f"the budget {target:g} cannot be met with these --ratios: the "
      f"thinnest model ({path[last]['ratios']}) measures "
      f"{measured(last):.3f}; allow smaller ratios or a larger budget")


def _check_analysis(analysis, checkpoint, cost):
  """ValueError unless `analysis` measured this checkpoint with this cost."""
  if analysis.get("cost") != cost.describe():
    raise ValueError(f"--sensitivity: the table measured "
                     f"'{analysis.get('cost')}', this budget counts "
                     f"'{cost.describe()}'; analyze again with the same "
                     "--runtime and --input_shape")
  if analysis.get("checkpoint") != checkpoint:
    raise ValueError(f"--sensitivity: the table is of "
                     f"{analysis.get('checkpoint')}, not of {checkpoint}")


def _finetuned_miou(config, output_dir, finetune_steps, evaluation, train,
                    report, log):
  """Fine-tunes the written model; its mIoU on the same eval subset."""
  if finetune_steps <= 0:
    return None
  checkpoint = compress_lib.finetune(config, output_dir, finetune_steps,
                                     train or train_lib.train, report, log)
  # pipeline.config now trains on from the fine-tuned weights.
  config_util.save_pipeline_config(config, output_dir)
  return evaluation.miou(compress_lib.load_model(config, checkpoint), config)


def _budget_report(analysis, path, measured, chosen, budget, cost, pruned):
  """budget_report.json's dict, before pruned mIoU and fine-tuning."""
  return {
      "target": budget.target, "target_ratio": budget.target / measured(0),
      "target_given": budget.given, "cost": cost.describe(),
      "cost_unit": cost.unit, "checkpoint": analysis["checkpoint"],
      "output_checkpoint": pruned["output_checkpoint"],
      "group_scales_before": pruned["group_scales_before"],
      "group_scales_after": pruned["group_scales_after"],
      "ratios": path[chosen]["ratios"],
      "cost_before": measured(0), "cost_after": measured(chosen),
      "params_before": pruned["params_before"],
      "params_after": pruned["params_after"],
      "flops_before": pruned["flops_before"],
      "flops_after": pruned["flops_after"],
      "miou_before": analysis["baseline"]["miou"],
      "estimated_drop": path[chosen]["estimated_drop"],
      "num_examples": analysis["num_examples"],
      "path": path, "chosen_step": chosen,
      "measured_steps": {str(i): c for i, c in measured.costs.items()},
  }


class Budget:
  """A budget as given: in the cost's unit, or a fraction of the unpruned
  model's cost as this run measures it (a shared host's milliseconds drift
  from hour to hour; "70% of the model I have" does not).

  Attributes:
    given: 'absolute' or 'ratio'.
    value: the number given (ms or GFLOPs, or the fraction).
    target: the budget in the cost's unit, once `resolve` has the
      unpruned model's cost (at once for an absolute budget).
  """

  def __init__(self, value, ratio=False, flag="the budget"):
    if ratio and not 0.0 < value < 1.0:
      raise ValueError(f"{flag} must be in (0, 1), a fraction of the "
                       f"unpruned model's cost, got {value:g}")
    if value <= 0:
      raise ValueError(f"{flag} must be > 0, got {value:g}")
    self.given = "ratio" if ratio else "absolute"
    self.value = value
    self.target = None if ratio else value

  def resolve(self, unpruned_cost):
    """The target in the cost's unit, given the unpruned model's cost."""
    if self.given == "ratio":
      self.target = self.value * unpruned_cost
    return self.target


def _table(pipeline_config, pruner, cost, analysis, ratios, num_examples,
           groups, log):
  """The sensitivity table: measured now, or a saved one checked (and
  narrowed to `groups`)."""
  if analysis is None:
    return sensitivity.analyze(pipeline_config, pruner.checkpoint, ratios,
                               num_examples, cost, log, pruner, groups)
  _check_analysis(analysis, pruner.checkpoint, cost)
  if cost.kind == cost_lib.LATENCY:
    # Later measurements are made against the unpruned model; its cost
    # stays the table's, which the search starts from.
    cost.reference(pruner.source, known=analysis["baseline"]["cost"])
  return sensitivity.only_groups(analysis, groups) if groups else analysis


def prune_to_budget(pipeline_config, checkpoint, output_dir, cost, target,
                    ratios=sensitivity.DEFAULT_RATIOS, num_examples=50,
                    tolerance=DEFAULT_TOLERANCE, finetune_steps=0, train=None,
                    log=print, analysis=None, groups=None):
  """Writes the most accurate pruned model (by the table) within `target`.

  Args:
    cost: a cost.Cost (latency on a runtime, or FLOPs).
    target: the budget in the cost's unit (ms or GFLOPs), or a Budget (a
      fraction of the unpruned model's cost, measured in this run or, with
      `analysis`, the table's).
    ratios, num_examples: of the sensitivity analysis.
    tolerance: the budget is met when measured <= target x (1 + tolerance).
    finetune_steps: train the written model this many steps, then evaluate.
    train: train(config, train_dir) -> losses; train_lib.train when None.
    analysis: an earlier sensitivity analysis of this checkpoint with the
      same cost (sensitivity.json), to try another budget without measuring
      the table again; `ratios` and `num_examples` are then its own.
    groups: the width groups the search may narrow (None: every group);
      fewer groups, a shorter table.

  Returns:
    the budget report dict (also budget_report.json / .md in output_dir).
  """
  budget = target if isinstance(target, Budget) else Budget(target)
  pruner = sensitivity.Pruner(pipeline_config, checkpoint)
  analysis = _table(pipeline_config, pruner, cost, analysis, ratios,
                    num_examples, groups, log)
  sensitivity.write(analysis, output_dir, log=lambda line: None)
  target = budget.resolve(analysis["baseline"]["cost"])
  path = greedy_path(analysis)
  measured = _Measured(pruner, cost, path, log)
  measured.costs[0] = analysis["baseline"]["cost"]
  chosen = search(path, measured, target, tolerance)
  log(measured.summary(chosen))
  pruned = compress_lib.prune(
      pipeline_config, pruner.checkpoint, output_dir, None,
      input_shape=cost.input_shape, log=lambda line: None,
      new_group_scales=group_scales_of(path[chosen], pruner.scales))
  report = _budget_report(analysis, path, measured, chosen, budget, cost,
                          pruned)
  # The table's own eval images, so the mIoUs before and after compare.
  evaluation = sensitivity.Evaluation(pipeline_config,
                                      analysis["num_examples"])
  written = compress_lib.written_config(output_dir)
  report["miou_pruned"] = evaluation.miou(
      compress_lib.load_model(written, report["output_checkpoint"]), written)
  report["miou_finetuned"] = _finetuned_miou(
      written, output_dir, finetune_steps, evaluation, train, report, log)
  report_lib.write_json_and_markdown(
      report, report_lib.budget_markdown(report),
      os.path.join(output_dir, REPORT_NAME), log)
  return report
