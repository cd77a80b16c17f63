r"""The accuracy / latency picture of a model zoo, from its results JSON.

  python -m fast_seg.tools.zoo_chart --results docs/camvid_zoo.json \
      --output docs/camvid_pareto.png [--latency tflite_int8_1024x2048]

The JSON holds one entry per model (what docs/model_zoo.md's table lists):

  {"dataset": "CamVid test (233 images)", "models": [
    {"name": "icnet_mobilenet_v2_0.25_camvid_360", "miou": 0.52,
     "latency_ms": {"tflite_int8_1024x2048": 49.6, "tf_360x480": 20.1}, ...}]}

Each model is a point (latency on a log axis, mIoU); the Pareto front, the
models that no other model beats on both, is joined by a line: the ones
worth choosing from. A model without the chosen latency is left out, named.

Published results of other projects go in an optional "published" list,
{"name": "CGNet", "miou": 0.656, "note": "GPU, trainval, 800 epochs"}: their
latency was not measured on this machine, so each is a dashed horizontal
line at its mIoU, labelled as published, never a point of the front.
"""

import json

from absl import flags
from matplotlib import pyplot as plt

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
  """Writes the PNG; returns (plotted names, front names, left-out names)."""
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
  figure, axes = plt.subplots(figsize=(8, 5), dpi=100)
  for name, latency, accuracy in points:
    on_front = name in front
    axes.scatter(latency, 100 * accuracy, s=60, zorder=3,
                 color="#1f5fbf" if on_front else "#9a9a9a")
    axes.annotate(name, (latency, 100 * accuracy), textcoords="offset points",
                  xytext=(6, 4), fontsize=8)
  line = sorted((latency, accuracy) for name, latency, accuracy in points
                if name in front)
  axes.plot([p[0] for p in line], [100 * p[1] for p in line], color="#1f5fbf",
            linewidth=1.5, zorder=2, label="Pareto front")
  axes.set_xscale("log")
  # Room on the right for the names written beside the points.
  latencies = [latency for _, latency, _ in points]
  axes.set_xlim(min(latencies) / 1.5, max(latencies) * 3.0)
  _draw_published(axes, results.get("published", ()))
  axes.set_xlabel(f"latency (ms), {latency_key.replace('_', ' ')}, log scale")
  axes.set_ylabel(f"{_LABELS.get(metric, metric)} (%)")
  axes.set_title(results.get("dataset", ""), fontsize=10)
  axes.grid(True, which="both", alpha=0.3)
  axes.legend(loc="lower right", fontsize=8)
  figure.tight_layout()
  figure.savefig(output)
  plt.close(figure)
  return [p[0] for p in points], front, left_out


def _draw_published(axes, published):
  """A dashed line and a label per published result (not timed here)."""
  for i, entry in enumerate(sorted(published, key=lambda e: e["miou"])):
    accuracy = 100 * float(entry["miou"])
    axes.axhline(accuracy, color="#c0504d", linestyle="--", linewidth=1,
                 zorder=1)
    note = f", {entry['note']}" if entry.get("note") else ""
    # Left and right in turn, so close results keep readable labels.
    side = (0.01, "left") if i % 2 == 0 else (0.99, "right")
    axes.annotate(f"{entry['name']} {accuracy:.1f} (published{note})",
                  (side[0], accuracy), xycoords=("axes fraction", "data"),
                  textcoords="offset points", xytext=(0, 2), fontsize=7,
                  color="#c0504d", ha=side[1])


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
