"""The benchmark report as markdown tables, as printed and pasted in docs.

The JSON report holds every number; these tables are what a reader
compares: one latency table per batch size, the docs' figures scaled to
this machine beside the measured ones, the throughput and how much of the
machine's ceiling each model uses, the labels tails against each other, the
most expensive op types, training throughput, and every error in full at
the end (a table cell only says 'error'). A ceiling that moved during the
run is said at the top, where the latencies are read from.
"""

from fast_seg.export import full_resolution_labels
from fast_seg.tools.benchmark import labels_methods
from fast_seg.tools.benchmark import path_timing
from fast_seg.tools.benchmark import published


def _markdown(header, lines):
  out = ["| " + " | ".join(header) + " |",
         "|" + "|".join("---" if i == 0 else "---:"
                        for i in range(len(header))) + "|"]
  return out + ["| " + " | ".join(line) + " |" for line in lines]


def _latency_cell(entry):
  if entry is None:
    return "-"
  if "error" in entry:
    return "error"
  return f"{entry['median']:.1f}"


def _labels_text(report):
  method = report.get("labels_method", full_resolution_labels.AUTO)
  if method != full_resolution_labels.AUTO:
    return method
  return "auto (" + ", ".join(
      f"{runtime}: {chosen}"
      for runtime, chosen in full_resolution_labels.AUTO_METHODS.items()
      if runtime != full_resolution_labels.COREML) + ")"


def _setting_lines(report):
  """The machine, the versions and how the numbers were taken."""
  out = [f"{report['device']}, TensorFlow {report['tensorflow']}, "
         f"{report['date']}; input {'x'.join(map(str, report['input_shape'][1:3]))}; "
         f"median of {report['runs']} runs after {report['warmup']} warm-up; "
         f"TFLite (XNNPACK) and ONNX Runtime on {report['num_threads']} "
         f"threads; {report['flops']}"
         + f"; labels: {_labels_text(report)}"
         + (f"; {report['image_files']} real images" if report.get(
             "image_files") else "; random pixels")
         + (f"; trained weights: {', '.join(report['trained'].values())}."
            if report.get("trained") else "; random weights.")]
  ceiling = report.get("ceiling") or {}
  if ceiling:
    out.append(f"Machine ceiling: matmul {ceiling['matmul_gflops']:.1f} "
               f"GFLOP/s, 3x3 conv {ceiling['conv3x3_gflops']:.1f} GFLOP/s"
               + _readings_text(report.get("ceiling_drift")) + ".")
  drift = report.get("ceiling_drift") or {}
  if drift.get("warning"):
    out.append(drift["warning"])
  return out


def _readings_text(drift):
  """The 3x3-conv readings' range over the run, when there are several."""
  if not drift or len(drift["readings"]) < 2:
    return ""
  return (f" at the start; {drift['low']:.1f}-{drift['high']:.1f} over the "
          f"run's {len(drift['readings'])} readings")


def _published_lines(report):
  """Each row's batch-1 latencies beside the docs' figures, scaled."""
  lines = [published.comparison_text(row["name"], comparison)
           for row in report["rows"]
           for comparison in (row.get("published") or {}).values()]
  if not lines:
    return []
  return ["", "The docs' figures on this machine (published ms x published "
          "3x3-conv ceiling / this machine's, measured around the model; "
          "first order: memory-bound work scales less):"] + [
              f"- {line}" for line in lines]


def _latency_tables(report):
  """One table per batch size: a row per config, a column per path."""
  rows = report["rows"]
  paths = []
  for row in rows:
    for latency in row.get("latency_ms", {}).values():
      paths += [p for p in latency if p not in paths]
  out = []
  for batch in report["batch_sizes"]:
    header = ["config", "params M", "GFLOPs"] + [f"{p} ms" for p in paths]
    lines = []
    for row in rows:
      latency = row.get("latency_ms", {}).get(str(batch), {})
      lines.append([row["name"],
                    f"{row['params'] / 1e6:.2f}" if row.get("params") else "-",
                    f"{row['gflops']:.2f}" if row.get("gflops") else "-"]
                   + [_latency_cell(latency.get(p)) for p in paths])
    out += ["", f"Latency, batch {batch}:"] + _markdown(header, lines)
  return out


def _throughput_line(row, first):
  """A config's best fps, achieved fractions and sizes; None: no timing."""
  fps = row.get("fps", {}).get(first, {})
  if not fps:
    return None
  best = max(fps, key=fps.get)
  fraction = row.get("achieved_fraction", {})
  ceiling = row.get("ceiling")
  return [row["name"], f"{fps[best]:.2f} ({best})",
          (f"{100 * fraction[path_timing.KERAS]:.1f}%"
           if path_timing.KERAS in fraction else "-"),
          f"{100 * max(fraction.values()):.1f}%" if fraction else "-",
          f"{ceiling['before']['conv3x3_gflops']:.0f} / "
          f"{ceiling['after']['conv3x3_gflops']:.0f}" if ceiling else "-",
          ", ".join(f"{k} {v / 1e6:.1f}" for k, v in
                    sorted(row.get("sizes", {}).items())
                    if k.endswith(f"_b{first}"))]


def _throughput_table(report):
  first = str(report["batch_sizes"][0])
  lines = [line for line in (_throughput_line(row, first)
                             for row in report["rows"]) if line]
  if not lines:
    return []
  return (["", f"Throughput at batch {first} (achieved = FLOP/s / 3x3-conv "
           "ceiling, the mean of those measured just before and after the "
           "model; sizes in MB):"]
          + _markdown(["config", "best fps", "achieved keras", "achieved best",
                       "ceiling before / after GFLOP/s", "sizes MB"], lines))


def _profile_lines(report, top=8):
  """Each profiled model's most expensive op types in the frozen graph."""
  out = []
  for row in report["rows"]:
    profile = row.get("op_profile")
    if not profile:
      continue
    out += ["", f"{row['name']}: time per op type, frozen graph "
            f"({profile['total_ms']:.1f} ms of op time per run):"]
    out += _markdown(["op", "ms", "share", "nodes"], [
        [op["op"], f"{op['ms']:.1f}", f"{100 * op['share']:.1f}%",
         str(op["nodes"])] for op in profile["ops"][:top]])
  return out


def _training_notes(entry):
  """A training entry's pipeline overhead, memory saving and errors."""
  out = []
  if "pipeline_overhead" in entry:
    out.append(f"{entry['name']}: the pipeline costs "
               f"{100 * entry['pipeline_overhead']:.1f}% of synthetic "
               "images/s")
  if "memory_saving_ratio" in entry:
    out.append(f"{entry['name']}: memory saving peak x"
               f"{entry['memory_saving_ratio']:.2f}")
  for result in entry["results"]:
    if "error" in result:
      out.append(f"{entry['name']} {result['mode']}: {result['error']}")
  return out


def _training_table(report):
  training = report.get("training") or []
  if not training:
    return []
  lines = [[entry["name"], result["mode"],
            f"{result['images_per_second']:.2f}"
            if "images_per_second" in result else "error",
            f"{result['peak_memory_mb']:.0f}"
            if "peak_memory_mb" in result else "-"]
           for entry in training for result in entry["results"]]
  out = ["", "Training (the config's global batch; peak memory = process "
         "peak RSS on a CPU, allocator peak on a GPU):"]
  out += _markdown(["config", "mode", "images/s", "peak MB"], lines)
  for entry in training:
    out += _training_notes(entry)
  return out


def _error_lines(report):
  """Every config and path that failed, with its error."""
  out = []
  for row in report["rows"]:
    if row.get("error"):
      out.append(f"{row['name']}: error: {row['error']}")
    for batch, latency in row.get("latency_ms", {}).items():
      for path, entry in latency.items():
        if "error" in entry:
          out.append(f"{row['name']} batch {batch} {path}: {entry['error']}")
  return out


def _labels_methods_lines(report):
  """The labels methods' times against 'resize', per model and runtime."""
  lines, methods = [], labels_methods.COMPARED_METHODS
  for row in report["rows"]:
    for runtime, entry in (row.get("labels_methods") or {}).items():
      if "error" in entry:
        cells = [f"error: {entry['error']}"] * len(methods)
      else:
        cells = [f"**{entry[m]['ratio']:.3f}x** ({entry[m]['median_ms']:.1f} "
                 f"vs {entry[m]['resize_ms']:.1f} ms)" for m in methods]
      lines.append([row["name"], runtime, *cells])
  if not lines:
    return []
  return ["", "Labels tail, each method timed run for run alongside resize in "
          "one process (median per-run ratio; the medians of both):"] + (
              _markdown(["config", "runtime", *methods], lines))


def format_table(report):
  """Markdown tables of the report: machine, models, latency, training."""
  return "\n".join(_setting_lines(report) + _latency_tables(report)
                   + _published_lines(report)
                   + _throughput_table(report) + _labels_methods_lines(report)
                   + _profile_lines(report)
                   + _training_table(report)
                   + _error_lines(report))
