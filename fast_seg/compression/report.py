"""What a pruning stage reports: a markdown table and plots of the cut.

compression_report.md sums a stage up (params and FLOPs before and after,
channels of every channel group); with --plot, plots/<group>.png shows a
group's filter scores sorted and where the cut fell.
"""

import json
import os
import textwrap

from matplotlib import pyplot as plt
import numpy as np

plt.switch_backend("Agg")  # files only, never a display

_KEPT_COLOUR = "#466ec8"
_CUT_COLOUR = "#b4b4b4"
_CUT_LINE_COLOUR = "#dc0000"


def write_json_and_markdown(value, text, base_path, log):
  """base_path.json (the dict) and base_path.md (its text); each line of the
  text to `log`. Every compress.py report is written this way."""
  with open(base_path + ".json", "w", encoding="utf-8") as f:
    json.dump(value, f, indent=2)
  with open(base_path + ".md", "w", encoding="utf-8") as f:
    f.write(text + "\n")
  for line in text.splitlines():
    log(line)


def _millions(value):
  return f"{value / 1e6:.2f} M"


def _giga(value):
  return f"{value / 1e9:.2f} G"


def _title(report):
  """The first line: what was pruned into what."""
  if report["soft"]:
    what = (f"zeroed {report['zeroed_channels']} channels (soft, filter_scale "
            f"stays {report['filter_scale_before']})")
  else:
    what = (f"filter_scale {report['filter_scale_before']} -> "
            f"{report['filter_scale_after']}")
    listed = _listed_groups(report)
    if listed:
      what += " (" + ", ".join(
          f"{g} {report['group_scales_after'][g]:g}" for g in listed) + ")"
  return f"Pruned {report['checkpoint']}: {what} -> {report['output_checkpoint']}"


def _totals(report):
  """Params and FLOPs before / after, as table rows."""
  lines = []
  for label, key, fmt in (
      ("params (training model)", "params", _millions),
      ("params (inference model)", "inference_params", _millions),
      (f"FLOPs at {report['input_shape'][1]}x{report['input_shape'][2]} "
       "(multiply-add = 2)", "flops", _giga)):
    before, after = report[key + "_before"], report[key + "_after"]
    lines.append(f"| {label} | {fmt(before)} | {fmt(after)} | "
                 f"{after / max(before, 1):.3f} |")
  return lines


def _group_rows(report):
  """One table row per channel group."""
  lines = []
  for row in report["groups"]:
    convs = ", ".join(row["convs"])
    note = " (kept: " + row["fixed"] + ")" if row["fixed"] else ""
    lines.append(f"| {row['group']} | {convs} | {row['before']} | "
                 f"{row['after']}{note} |")
  return lines


def _listed_groups(report):
  """Width groups whose scale is not the uniform filter_scale (before or
  after): the ones worth a line, since the rest follow filter_scale."""
  before = report.get("group_scales_before", {})
  after = report.get("group_scales_after", {})
  return [g for g in after
          if abs(after[g] - report["filter_scale_after"]) > 1e-9
          or abs(before.get(g, 0.0) - report["filter_scale_before"]) > 1e-9]


def _width_group_rows(report):
  """A table of the per-group scales, only when some group has its own."""
  listed = _listed_groups(report)
  if not listed:
    return []
  lines = ["", "| width group | scale before | after |", "|---|---:|---:|"]
  for group in report["group_scales_after"]:
    lines.append(f"| {group} | {report['group_scales_before'][group]:g} | "
                 f"{report['group_scales_after'][group]:g} |")
  return lines


def report_markdown(report):
  """The human report: totals, width groups, then each channel group."""
  return "\n".join(
      [_title(report), "", "| | before | after | ratio |", "|---|---:|---:|---:|"]
      + _totals(report)
      + _width_group_rows(report)
      + ["", "| channel group | convs | channels before | after |",
         "|---|---|---:|---:|"]
      + _group_rows(report))


def write_plots(graph, masks, scores, plot_dir):
  """A PNG per pruned group: its filter scores sorted, and the cut line."""
  os.makedirs(plot_dir, exist_ok=True)
  paths = []
  for group_id, group in sorted(graph.groups.items()):
    mask = masks[group_id]
    if mask.all() or not group.producers:
      continue
    path = os.path.join(plot_dir, f"{group.name}.png")
    _plot_sorted(np.sort(scores[group_id])[::-1], int(mask.sum()),
                 f"{group.name}: keep {int(mask.sum())} of {mask.size}", path)
    paths.append(path)
  return paths


def _plot_sorted(values, keep, title, path):
  """Bar chart of the sorted filter scores, kept ones blue, the cut in red.

  640x360 pixels; axes: filter rank (x) and L1 score (y), with ticks.
  """
  figure, axes = plt.subplots(figsize=(6.4, 3.6), dpi=100)
  ranks = np.arange(1, len(values) + 1)
  colours = [_KEPT_COLOUR if i < keep else _CUT_COLOUR
             for i in range(len(values))]
  axes.bar(ranks, values, width=1.0, color=colours)
  axes.axvline(keep + 0.5, color=_CUT_LINE_COLOUR, linewidth=2,
               label=f"cut: keep {keep} of {len(values)}")
  axes.set_xlim(0.5, len(values) + 0.5)
  axes.set_xlabel("filter rank (highest score first)")
  axes.set_ylabel("L1 score (per conv / its mean, summed)")
  axes.set_title(title, fontsize=10)
  axes.legend(loc="upper right", fontsize=8)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def _cost_header(analysis):
  unit = analysis.get("cost_unit")
  return f" | {unit} |" if unit else " |"


def sensitivity_markdown(analysis):
  """Rows of mIoU per width group and ratio (Li et al.'s sensitivity table)."""
  base = analysis["baseline"]
  unit = analysis.get("cost_unit")
  lines = [f"Sensitivity of {analysis['checkpoint']}: each width group pruned "
           f"alone, no fine-tuning, mIoU on {analysis['num_examples']} eval "
           "images" + (f"; cost: {analysis['cost']}" if unit else ""), "",
           "| group | ratio | scale | params | mIoU | drop" + _cost_header(
               analysis),
           "|---|---:|---:|---:|---:|---:|" + ("---:|" if unit else "")]
  cost_cell = (lambda r: f" {r['cost']:.3f} |") if unit else (lambda r: "")
  lines.append(f"| (unpruned) | 1 | | {_millions(base['params'])} | "
               f"{base['miou']:.2f} | 0.00 |" + cost_cell(base))
  for row in analysis["rows"]:
    if "error" in row:
      lines.append(f"| {row['group']} | {row['ratio']:g} | {row['scale']:g} | "
                   f"not prunable: {row['error']} | | |" + (" |" if unit else ""))
      continue
    lines.append(f"| {row['group']} | {row['ratio']:g} | {row['scale']:g} | "
                 f"{_millions(row['params'])} | {row['miou']:.2f} | "
                 f"{row['drop']:.2f} |" + cost_cell(row))
  return "\n".join(lines)


def plot_sensitivity(analysis, path):
  """mIoU against the kept fraction, a line per group (and cost saved).

  The unpruned model is the point at ratio 1 of every line; with a cost, a
  second panel shows what each group's pruning saves of it.
  """
  unit = analysis.get("cost_unit")
  figure, panels = plt.subplots(1, 2 if unit else 1, squeeze=False,
                                figsize=(11.0 if unit else 6.4, 4.0), dpi=100)
  base = analysis["baseline"]
  by_group = {}
  for row in analysis["rows"]:
    if "error" not in row:
      by_group.setdefault(row["group"], []).append(row)
  for group, rows in by_group.items():
    ratios = [1.0] + [r["ratio"] for r in rows]
    panels[0][0].plot(ratios, [base["miou"]] + [r["miou"] for r in rows],
                      marker="o", label=group)
    if unit:
      panels[0][1].plot(ratios, [0.0] + [base["cost"] - r["cost"]
                                         for r in rows], marker="o",
                        label=group)
  panels[0][0].set_xlabel("fraction of the group's filters kept")
  panels[0][0].set_ylabel(f"mIoU (%), {analysis['num_examples']} eval images")
  panels[0][0].set_title("each group pruned alone, no fine-tuning",
                         fontsize=10)
  panels[0][0].legend(fontsize=8)
  if unit:
    panels[0][1].set_xlabel("fraction of the group's filters kept")
    panels[0][1].set_ylabel(f"{unit} saved")
    panels[0][1].set_title(textwrap.fill(analysis["cost"], 60), fontsize=9)
  for axes in panels[0]:
    axes.invert_xaxis()
    axes.grid(alpha=0.3)
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)


def _mious(report):
  """mIoU rows: before, after pruning, after fine-tuning (when run)."""
  rows = [("unpruned", report["miou_before"]),
          ("pruned, no fine-tuning", report["miou_pruned"])]
  if report.get("miou_finetuned") is not None:
    rows.append((f"pruned + {report['finetune']['steps']} fine-tuning steps",
                 report["miou_finetuned"]))
  return [f"| mIoU, {label} | {value:.2f} |" for label, value in rows]


def _budget_text(report):
  """The budget as given and in the other terms: '0.7 x the unpruned
  model's 129.000 ms = 90.300 ms' or '90 ms = 0.698 x ...'."""
  unit, ratio = report["cost_unit"], report["target_ratio"]
  unpruned = f"the unpruned model's {report['cost_before']:.3f} {unit}"
  if report["target_given"] == "ratio":
    return f"{ratio:g} x {unpruned} = {report['target']:.3f} {unit}"
  return f"{report['target']:g} {unit} = {ratio:.3f} x {unpruned}"


def budget_markdown(report):
  """The budgeted pruning summary: budget, cost, widths and mIoU."""
  unit = report["cost_unit"]
  ratio = report["cost_after"] / report["target"]
  lines = [
      f"Budgeted pruning of {report['checkpoint']} -> "
      f"{report['output_checkpoint']}",
      f"budget: {_budget_text(report)} ({report['cost']}); measured "
      f"{report['cost_after']:.3f} {unit} = {ratio:.3f} x the budget",
      "", "| | value |", "|---|---:|",
      f"| {unit}, unpruned (measured) | {report['cost_before']:.3f} |",
      f"| {unit}, pruned (measured) | {report['cost_after']:.3f} |",
      f"| params | {_millions(report['params_before'])} -> "
      f"{_millions(report['params_after'])} |",
      f"| FLOPs | {_giga(report['flops_before'])} -> "
      f"{_giga(report['flops_after'])} |"]
  lines += _mious(report)
  lines += [f"| mIoU drop the table predicted | "
            f"{report['estimated_drop']:.2f} |",
            "", "| width group | scale before | after |", "|---|---:|---:|"]
  for group, scale in report["group_scales_after"].items():
    lines.append(f"| {group} | {report['group_scales_before'][group]:g} | "
                 f"{scale:g} |")
  return "\n".join(lines)
