"""The docs' latencies on this machine, and whether this machine held still.

A latency is a property of a model and a machine: the 2-core hosts this
project was measured on read their 3x3-conv ceiling anywhere from 48 to 317
GFLOP/s, so the docs' 15.9 ms and a user's 109.9 ms can both be right. Each
published latency therefore keeps the 3x3-conv ceiling it was measured at (a
results JSON such as docs/camvid_zoo.json: `latency_ms` and
`latency_ceiling_gflops` per model), and a benchmark row says what the
published figure means here, to first order:

    published ms x published ceiling / this machine's ceiling

First order, because only the convolutions run at the ceiling's rate:
resizes, arg-max and a runtime's fixed costs are bound by memory traffic,
which a slower or busier machine slows by a different factor. So the
measured figure is printed beside the scaled one, not replaced by it.

The ceiling itself moves while other jobs share the cores. The run measures
it before the first model and after every model; `drift` says when those
readings disagree by more than DRIFT_THRESHOLD, in which case figures
measured at different times of the run are not comparable.
"""

import json

from fast_seg.tools.benchmark import path_timing

DRIFT_THRESHOLD = 0.15
# Benchmark path -> the runtime prefix of a results JSON's latency keys
# ('tflite_int8_360x480'); 'tf' is the optimized frozen graph.
PUBLISHED_PREFIX = {path_timing.FROZEN: "tf", path_timing.TFLITE: "tflite",
                    path_timing.TFLITE_INT8: "tflite_int8"}
def load(paths):
  """{model name: {latency_ms, ceiling, note, source}} of results JSONs.

  `ceiling` is the [low, high] 3x3-conv GFLOP/s of the day the latencies
  were measured, or None where it was not recorded.

  Raises:
    ValueError: naming a file that cannot be read or is not a results JSON.
  """
  models = {}
  for path in paths:
    try:
      with open(path, encoding="utf-8") as f:
        entries = json.load(f)["models"]
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise ValueError(f"--published {path}: not a results JSON with "
                       f"'models' ({e})") from None
    for entry in entries:
      if entry.get("latency_ms"):
        ceiling = entry.get("latency_ceiling_gflops")
        models[entry["name"]] = {
            "latency_ms": entry["latency_ms"],
            "ceiling": list(ceiling) if ceiling else None,
            "note": entry.get("latency_note"), "source": path}
  return models


def scale(published_ms, published_ceiling, machine_ceiling):
  """The published latency at this machine's ceiling (GFLOP/s both)."""
  return published_ms * published_ceiling / machine_ceiling


def _machine_ceiling(row):
  """The conv ceiling around the row's model: the mean of before and after."""
  ceiling = row.get("ceiling")
  if not ceiling:
    return None
  return (ceiling["before"]["conv3x3_gflops"]
          + ceiling["after"]["conv3x3_gflops"]) / 2.0


def compare(row, models):
  """{path: comparison} of a row's batch-1 latencies the results publish.

  A comparison holds the results key, `published_ms`, `published_ceiling`
  ([low, high] or None), `machine_ceiling`, `expected_ms` (the published
  figure scaled to this machine: [low, high], or None without a published
  ceiling) and `measured_ms`.
  """
  model = models.get(row.get("name"))
  latency = row.get("latency_ms", {}).get("1", {})
  machine = _machine_ceiling(row)
  if model is None or not latency or machine is None:
    return {}
  size = "x".join(map(str, row["input_shape"][1:3]))
  out = {}
  for path, entry in latency.items():
    key = f"{PUBLISHED_PREFIX.get(path)}_{size}"
    if path in PUBLISHED_PREFIX and key in model["latency_ms"] and (
        "median" in entry):  # an error is listed with the others
      out[path] = dict(_scaled(model, key, machine),
                       measured_ms=entry["median"])
  return out


def _scaled(model, key, machine):
  """A published figure and what it means at `machine` GFLOP/s."""
  published_ms, ceiling = model["latency_ms"][key], model["ceiling"]
  return {"key": key, "published_ms": published_ms,
          "published_ceiling": ceiling, "machine_ceiling": machine,
          "expected_ms": ([scale(published_ms, c, machine) for c in ceiling]
                          if ceiling else None),
          "measured_ms": None, "note": model["note"],
          "source": model["source"]}


def _label(key):
  """'tf_360x480' -> 'frozen at 360x480': the benchmark's path names."""
  prefix, size = key.rsplit("_", 1)
  paths = {v: k for k, v in PUBLISHED_PREFIX.items()}
  return f"{paths.get(prefix, prefix)} at {size}"


def scaled_lines(models, machine):
  """Every published latency at `machine` GFLOP/s, a line each, with no
  model timed (benchmark --ceiling_only); a model whose ceiling was not
  recorded gets one line saying so."""
  lines = []
  for name, model in models.items():
    if model["ceiling"] is None:
      lines.append(f"{name}: {len(model['latency_ms'])} latencies, "
                   f"{model['note'] or 'ceiling not recorded'}")
      continue
    lines += [comparison_text(name, _scaled(model, key, machine))
              for key in model["latency_ms"]]
  return lines


def _range(values, digits=1, unit=""):
  low, high = min(values), max(values)
  if round(low, digits) == round(high, digits):
    return f"{low:.{digits}f}{unit}"
  return f"{low:.{digits}f}-{high:.{digits}f}{unit}"


def comparison_text(name, comparison):
  """One line: the docs' figure, what it means here, and the measured one.

  e.g. 'icnet_1.0 tflite_int8 at 360x480: docs 15.9 ms at 244-286 GFLOP/s
  = 80.8-94.7 ms at this machine's 48 GFLOP/s; measured 109.9 ms
  (1.16-1.36x that)'.
  """
  head = (f"{name} {_label(comparison['key'])}: docs "
          f"{comparison['published_ms']:.1f} ms")
  measured = comparison["measured_ms"]
  measured_text = ("" if measured is None
                   else f"; measured {measured:.1f} ms")
  if comparison["expected_ms"] is None:
    why = comparison["note"] or "its ceiling was not recorded"
    return f"{head} ({why}){measured_text}"
  expected = comparison["expected_ms"]
  text = (f"{head} at {_range(comparison['published_ceiling'], 0)} GFLOP/s = "
          f"{_range(expected)} ms at this machine's "
          f"{comparison['machine_ceiling']:.0f} GFLOP/s{measured_text}")
  if measured is not None:
    text += f" ({_range([measured / e for e in expected], 2, 'x')} that)"
  return text


def drift(readings, threshold=DRIFT_THRESHOLD):
  """How far the machine's conv ceiling moved during a run.

  Args:
    readings: the 3x3-conv GFLOP/s measured in time order (before the
      first model, after each model).
    threshold: a warning when the highest reading exceeds the lowest by
      more than this fraction.

  Returns:
    {readings, start, end, low, high, moved (high / low - 1), warning (the
    line to print, or None)}.
  """
  readings = list(readings)
  low, high = min(readings), max(readings)
  moved = high / low - 1.0
  warning = None
  if moved > threshold:
    warning = (f"warning: the machine's ceiling moved from {readings[0]:.0f} "
               f"to {readings[-1]:.0f} GFLOP/s during the run (readings "
               f"{low:.0f}-{high:.0f}, {100 * moved:.0f}% apart, more than "
               f"{100 * threshold:.0f}%): other jobs share the cores; "
               "latencies measured at different times of this run are not "
               "comparable, and each row's scaled docs figure holds only "
               "for its own ceiling")
  return {"readings": readings, "start": readings[0], "end": readings[-1],
          "low": low, "high": high, "moved": moved, "warning": warning}
