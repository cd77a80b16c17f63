r"""The accuracy / latency picture of a model zoo, from its results JSON.

  python -m fast_seg.tools.zoo_chart --results docs/camvid_zoo.json \
      --output docs/camvid_pareto.png [--latency tflite_int8_1024x2048]

The JSON holds one entry per model (what docs/model_zoo.md's table lists):

  {"dataset": "CamVid test (233 images)", "models": [
    {"name": "icnet_mobilenet_v2_0.25_camvid_360", "miou": 0.52,
     "params": 295227,
     "latency_ms": {"tflite_int8_1024x2048": 49.6, "tf_360x480": 20.1}, ...}]}

Left panel: each model is a point (latency on a log axis, mIoU); the Pareto
front, the models that no other model beats on both, is joined by a line:
the ones worth choosing from. A model without the chosen latency is left
out, named.

Published results of other projects go in an optional "published" list,
{"name": "CGNet", "miou": 0.656, "params": 500000}, with one
"published_note" for the legend ("GPU, train+val, 800-1000 epochs"). Their
latency was not measured on this machine, so on the left each is a dashed
line at its mIoU, never a point of the front. Parameters are the same on
any machine: a right panel, drawn when any entry has "params", puts every
model and every published result as a point (parameters on a log axis,
mIoU), the published ones as red diamonds.

Axes read in plain numbers (50, 100, 200 ms), and every name is placed
where it overlaps no other name, point or the axes' edge (_place_labels).
"""

import json

from absl import flags
import numpy as np
from matplotlib import pyplot as plt
from matplotlib import text as mtext
from matplotlib import ticker
from matplotlib import transforms

from fast_seg.utils import cli

plt.switch_backend("Agg")  # files only, never a display

flags.DEFINE_string("results", None, "Zoo results JSON (see the module doc).")
flags.DEFINE_string("output", None, "PNG to write.")
flags.DEFINE_string("latency", "tflite_int8_1024x2048",
                    "Key of each model's latency_ms to put on the x axis.")
flags.DEFINE_string("metric", "miou", "Accuracy key of each model (a fraction).")
flags.mark_flags_as_required(["results", "output"])
FLAGS = flags.FLAGS


_LABELS = {"miou": "mIoU", "miou_tta": "mIoU, multi-scale + flip"}
_FRONT, _OTHER, _PUBLISHED = "#1f5fbf", "#9a9a9a", "#c0504d"
_FONT = 8


def _offset(dx, dy):
  """(dx, dy, horizontal and vertical alignment): the text on the far side
  of its anchor from the point."""
  return (dx, dy, "left" if dx > 0 else "right" if dx < 0 else "center",
          "bottom" if dy > 0 else "top" if dy < 0 else "center")


# Where a name may go, in points from its point, in order of preference:
# level with it, centred above or below, the diagonals, then further out
# (those get a leader line, so the name still points at its point).
_OFFSETS = tuple(_offset(dx, dy) for dx, dy in (
    (8, 0), (-8, 0), (0, 7), (0, -7), (8, 7), (8, -7), (-8, 7), (-8, -7),
    (0, 16), (0, -16), (14, 16), (14, -16), (-14, 16), (-14, -16),
    (0, 28), (0, -28), (14, 28), (14, -28), (-14, 28), (-14, -28)))
# Offsets this far (points) from the point get a leader line.
_LEADER_FROM = 14
# A dashed line's name: at the right or left end, above or below the line.
_LINE_OFFSETS = ((-4, 2, "right", "bottom"), (-4, -2, "right", "top"),
                 (4, 2, "left", "bottom"), (4, -2, "left", "top"))


def pareto_front(points):
  """Names of the (name, latency, accuracy) points no other point dominates.

  A point is dominated when another one is at least as fast and at least as
  accurate, and strictly better in one of the two.
  """
  front = []
  for name, latency, accuracy in points:
    dominated = any(
        (other_latency <= latency and other_accuracy >= accuracy)
        and (other_latency < latency or other_accuracy > accuracy)
        for _, other_latency, other_accuracy in points)
    if not dominated:
      front.append(name)
  return front


def chart(results, output, latency_key, metric="miou"):
  """Writes the PNG; returns (plotted names, front names, left-out names).

  Plotted, front and left-out are of the latency panel.
  """
  figure, plotted, front, left_out = draw(results, latency_key, metric)
  figure.savefig(output)
  plt.close(figure)
  return plotted, front, left_out


def draw(results, latency_key, metric="miou"):
  """The chart as a matplotlib figure (the caller closes it), with chart's
  plotted, front and left-out names."""
  points, left_out = [], []
  for model in results["models"]:
    latency = model.get("latency_ms", {}).get(latency_key)
    if latency is None or model.get(metric) is None:
      left_out.append(model["name"])
      continue
    points.append((model["name"], float(latency), float(model[metric])))
  if not points:
    raise ValueError(f"no model in the results has latency_ms.{latency_key} "
                     f"and {metric}")
  front = pareto_front(points)
  published = sorted(results.get("published", ()), key=lambda e: e["miou"])
  sized = [(m["name"], float(m["params"]) / 1e6, float(m[metric]))
           for m in results["models"]
           if m.get("params") and m.get(metric) is not None]
  sized_published = [e for e in published if e.get("params")]
  with_params = bool(sized or sized_published)
  figure, panels = plt.subplots(
      1, 2 if with_params else 1, sharey=True, squeeze=False, dpi=100,
      figsize=(15, 6.5) if with_params else (8, 6))
  axes = panels[0][0]
  labels = _latency_panel(axes, points, front, published, latency_key)
  if with_params:
    labels += _params_panel(panels[0][1], sized, front, sized_published)
  axes.set_ylabel(f"{_LABELS.get(metric, metric)} (%)")
  accuracies = ([100 * a for _, _, a in points + sized]
                + [100 * float(e["miou"]) for e in published])
  axes.set_ylim(min(accuracies) - 3, max(accuracies) + 3)
  figure.suptitle(results.get("dataset", ""), fontsize=10)
  _legend(figure, bool(published), results.get("published_note"))
  figure.tight_layout(rect=(0, 0.06, 1, 1))
  _place_labels(figure, labels)
  return figure, [p[0] for p in points], front, left_out


def _latency_panel(axes, points, front, published, latency_key):
  """The models by latency, the front joined, published mIoUs as dashed
  lines; returns their labels for _place_labels."""
  labels = _scatter_models(axes, points, front)
  line = sorted((latency, accuracy) for name, latency, accuracy in points
                if name in front)
  axes.plot([p[0] for p in line], [100 * p[1] for p in line], color=_FRONT,
            linewidth=1.5, zorder=2)
  for entry in published:
    accuracy = 100 * float(entry["miou"])
    axes.axhline(accuracy, color=_PUBLISHED, linestyle="--", linewidth=1,
                 zorder=1)
    labels.insert(0, _Label(axes, f"{entry['name']} {accuracy:.1f}",
                            (1.0, accuracy), ("axes fraction", "data"),
                            _LINE_OFFSETS, _PUBLISHED))
  latencies = [latency for _, latency, _ in points]
  _plain_log_x(axes)
  # Room on the right for the names written beside the points.
  axes.set_xlim(min(latencies) / 3.0, max(latencies) * 3.0)
  axes.set_xlabel(f"latency (ms), {latency_key.replace('_', ' ')}, this "
                  "machine, log scale")
  axes.grid(True, which="both", alpha=0.3)
  return labels


def _params_panel(axes, sized, front, published):
  """Every model and published result by parameters (the same on any
  machine); returns the labels for _place_labels."""
  labels = _scatter_models(axes, sized, front)
  for entry in published:
    millions, accuracy = entry["params"] / 1e6, 100 * float(entry["miou"])
    axes.scatter(millions, accuracy, s=70, marker="D", zorder=3,
                 color=_PUBLISHED)
    labels.insert(0, _Label(axes, f"{entry['name']} {accuracy:.1f}",
                            (millions, accuracy), "data", _OFFSETS,
                            _PUBLISHED))
  sizes = [m for _, m, _ in sized] + [e["params"] / 1e6 for e in published]
  _plain_log_x(axes)
  axes.set_xlim(min(sizes) / 4.0, max(sizes) * 4.0)
  axes.set_xlabel("parameters (millions), log scale")
  axes.grid(True, which="both", alpha=0.3)
  return labels


def _scatter_models(axes, points, front):
  """(name, x, accuracy) points, those on the front in the front's colour;
  returns their labels."""
  labels = []
  for name, x, accuracy in points:
    axes.scatter(x, 100 * accuracy, s=60, zorder=3,
                 color=_FRONT if name in front else _OTHER)
    labels.append(_Label(axes, name, (x, 100 * accuracy), "data", _OFFSETS,
                         "black"))
  return labels


def _plain_log_x(axes):
  """A log x axis ticked at 1, 2, 5 x 10^k, written as plain numbers (50,
  100, 0.2), not matplotlib's '6x10^1' minor labels."""
  axes.set_xscale("log")
  axis = axes.xaxis
  axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
  axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
  axis.set_minor_formatter(ticker.NullFormatter())


def _legend(figure, published, note):
  """One legend below the panels, where it covers no point."""
  handles = [
      plt.Line2D([], [], color=_FRONT, marker="o", linewidth=1.5,
                 label="Pareto front (fastest for its mIoU, this machine)"),
      plt.Line2D([], [], color=_OTHER, marker="o", linewidth=0,
                 label="other models")]
  if published:
    handles.append(plt.Line2D(
        [], [], color=_PUBLISHED, marker="D", linestyle="--", linewidth=1,
        label="published" + (f": {note}" if note else "")
        + " (not timed here)"))
  figure.legend(handles=handles, loc="lower center", ncol=len(handles),
                fontsize=_FONT, frameon=False)


class _Label:
  """A name to write beside a point: where, and the offsets it may take."""

  def __init__(self, axes, text, xy, coords, offsets, color):
    self.axes, self.text, self.xy, self.coords = axes, text, xy, coords
    self.offsets, self.color = offsets, color

  def draw(self, offset):
    dx, dy, ha, va = offset
    leader = (dict(arrowstyle="-", color=_OTHER, linewidth=0.6,
                   shrinkA=0, shrinkB=4)
              if max(abs(dx), abs(dy)) >= _LEADER_FROM else None)
    return self.axes.annotate(
        self.text, self.xy, xycoords=self.coords, textcoords="offset points",
        xytext=(dx, dy), ha=ha, va=va, fontsize=_FONT, color=self.color,
        annotation_clip=False, arrowprops=leader)


def _place_labels(figure, labels):
  """Writes each label at its first offset that overlaps no point and no
  label already written, stays inside its axes and is nearer its own point
  than any other; failing all, at the offset that breaks these least.
  Done once the layout is final, in display pixels."""
  renderer = figure.canvas.get_renderer()
  points = {axes: [tuple(xy) for c in axes.collections
                   for xy in axes.transData.transform(c.get_offsets())]
            for axes in figure.axes}
  taken = [transforms.Bbox([[x - 6, y - 6], [x + 6, y + 6]])
           for xys in points.values() for x, y in xys]
  for label in labels:
    best = None
    for offset in label.offsets:
      text = label.draw(offset)
      # The text's own box: an Annotation's would include its leader.
      text.update_positions(renderer)
      box = mtext.Text.get_window_extent(text, renderer).padded(1)
      cost = (_overlap(box, taken) + _outside(box, label.axes.bbox)
              + _AMBIGUOUS * _nearer_points(box, label, points[label.axes]))
      if best is None or cost < best[0]:
        if best is not None:
          best[1].remove()
        best = (cost, text, box)
      else:
        text.remove()
      if cost == 0:
        break
    taken.append(best[2])


# The cost of each other point nearer a label than its own, in covered
# pixels: a name beside the wrong point misleads, but less than two names
# on top of each other, which no one can read.
_AMBIGUOUS = 300.0


def _nearer_points(box, label, points):
  """How many of `points` are nearer `box` than the point it labels."""
  if label.coords != "data":
    return 0
  own = label.axes.transData.transform(label.xy)
  distance = lambda xy: float(np.hypot(
      max(box.x0 - xy[0], 0.0, xy[0] - box.x1),
      max(box.y0 - xy[1], 0.0, xy[1] - box.y1)))
  limit = distance(own)
  return sum(1 for xy in points
             if distance(xy) < limit and np.hypot(*(np.subtract(xy, own))) > 1)


def _overlap(box, boxes):
  """Pixels of `box` that `boxes` cover (overlaps counted each time)."""
  total = 0.0
  for other in boxes:
    common = transforms.Bbox.intersection(box, other)
    if common is not None:
      total += common.width * common.height
  return total


def _outside(box, frame):
  """Pixels of `box` outside `frame`."""
  inside = transforms.Bbox.intersection(box, frame)
  area = box.width * box.height
  return area - (inside.width * inside.height if inside is not None else 0.0)


def main(argv):
  del argv
  with open(FLAGS.results, encoding="utf-8") as f:
    results = json.load(f)
  plotted, front, left_out = chart(results, FLAGS.output, FLAGS.latency,
                                   FLAGS.metric)
  print(f"wrote {FLAGS.output}: {len(plotted)} models, Pareto front: "
        f"{', '.join(front)}"
        + (f"; without {FLAGS.latency}: {', '.join(left_out)}" if left_out else ""))


def command():
  """The fast-seg-zoo-chart command, and python -m fast_seg.tools.zoo_chart."""
  cli.run(main, usage=__doc__)


if __name__ == "__main__":
  command()
