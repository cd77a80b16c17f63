"""What a pruning stage reports: a markdown table and plots of the cut.

compression_report.md sums a stage up (params and FLOPs before and after,
channels of every channel group); with --plot, plots/<group>.png shows a
group's filter scores sorted and where the cut fell.
"""

import os

from matplotlib import pyplot as plt
import numpy as np

plt.switch_backend("Agg")  # files only, never a display

_KEPT_COLOUR = "#466ec8"
_CUT_COLOUR = "#b4b4b4"
_CUT_LINE_COLOUR = "#dc0000"


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
