"""What an export says about itself: export_report.json, export_info.json
and the table printed at the end.

Every written format is run on the same check input and compared with the
TF function (`agreement`); the report keeps that, each format's size and op
count, and the labels tail it serves, so an export can be trusted (or not)
from its folder alone. export_info.json describes the export as a whole:
where it came from, its interface, its cost and its files.
"""

import json
import os

import numpy as np
import tensorflow as tf

from fast_seg.export import export_request
from fast_seg.export import serving


def agreement(reference, got, output):
  """How closely an export's output matches the TF function's."""
  got = np.asarray(got).reshape(reference.shape)
  if output == "probabilities":
    if reference.shape[-1] == 1:  # A binary model's sigmoid map.
      labels = lambda p: p[..., 0] > 0.5
    else:
      labels = lambda p: p.argmax(-1)
    return {"max_abs_diff": float(np.abs(got - reference).max()),
            "label_agreement": float(np.mean(labels(got) == labels(reference)))}
  equal = got == reference
  if output == "colours":
    equal = equal.all(axis=-1)
  return {"pixel_agreement": float(np.mean(equal))}


def new_report(request, from_eval, nearest_check=None):
  """export_report.json before its formats are written into 'formats'.

  Args:
    request: the export_request.ExportRequest.
    from_eval: the check input is an eval image (else random pixels).
    nearest_check: when the export serves 'nearest' labels, (the exact
      labels, the served ones) of the check input: how far the fast tail is
      from exact goes into the report.
  """
  report = {"check_input": "eval image" if from_eval else "random pixels",
            "output": request.output, "input_type": request.input_type,
            "formats": {}}
  if request.output != "probabilities":
    report["labels_method"] = {
        name: request.labels_method_of(name)
        for name in (*export_request.DEFAULT_FORMATS, *request.formats)}
  if nearest_check is not None:
    report["fast_labels_agreement_with_exact"] = agreement(
        *nearest_check, request.output)["pixel_agreement"]
  return report


def export_info(request, job, float_model, checkpoint_path, report,
                compression, info_path, flops, output_dir):
  """The export_info dict: the source, the interface, the cost, the files.

  The files are named where they end up, in `output_dir`, not in the
  staging folder `job` wrote them to.
  """
  return {
      "checkpoint": checkpoint_path,
      "random_weights": request.random_weights,
      "contract": request.contract,
      # None where the size is dynamic (-1 on the command line).
      "input_shape": list(request.input_shape),
      "pad_to_shape": (list(request.pad_to_shape) if request.pad_to_shape
                       else None),
      "input": f"{serving.INPUT_TENSOR} {request.input_type}",
      "output": (f"{serving.OUTPUT_TENSOR} {request.output} "
                 f"{job.reference.dtype}"),
      # The float model's: a QAT model also counts its quantizer ranges.
      "params": int(float_model.inference_model.count_params()),
      "flops": flops[0],
      "flops_input_shape": list(flops[1]),
      "saved_model": os.path.join(output_dir, serving.SAVED_MODEL_DIR),
      "frozen_graph": os.path.join(output_dir, serving.FROZEN_GRAPH_NAME),
      "formats": list(report["formats"]),
      "dataset_info": (os.path.join(output_dir, os.path.basename(info_path))
                       if info_path else None),
      "compression": compression,
  }


def write_json(value, path):
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(value, f, indent=2)


def write_report(report, output_dir, log):
  """Writes export_report.json into `output_dir` and logs it as a table."""
  write_json(report, os.path.join(output_dir, serving.REPORT_NAME))
  for line in report_lines(report):
    log(line)


def _agreement_cell(entry):
  if "max_abs_diff" in entry:
    return (f"max |diff| {entry['max_abs_diff']:.2e}, labels "
            f"{100 * entry['label_agreement']:.2f}%")
  if "pixel_agreement" in entry:
    return f"{100 * entry['pixel_agreement']:.2f}% of pixels"
  return entry.get("agreement", "")


def report_lines(report):
  """The export report as a table: size, gzip size, ops, agreement."""
  lines = []
  if "fast_labels_agreement_with_exact" in report:
    lines.append("--labels_method nearest: "
                 f"{100 * report['fast_labels_agreement_with_exact']:.2f}% of "
                 "pixels equal the exact (bilinear logits) labels")
  lines += [f"Agreement with the TF function on one {report['check_input']} "
            f"(output: {report['output']}):",
            "| format | MB | gzip MB | ops | agreement |",
            "|---|---:|---:|---:|---|"]
  for name, entry in report["formats"].items():
    lines.append(f"| {name} | {entry['bytes'] / 1e6:.2f} | "
                 f"{entry['gzip_bytes'] / 1e6:.2f} | "
                 f"{entry.get('op_count', '')} | {_agreement_cell(entry)} |")
  return lines
