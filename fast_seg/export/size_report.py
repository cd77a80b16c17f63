"""How small an export is: file sizes, gzip sizes and conv kernel sparsity.

Pruned weights are stored as zeros, so a pruned model's files are only
smaller once compressed: the report gives every size raw and gzipped, and
the fraction of zero weights per conv kernel (export_info.json
`compression`, export_report.json's bytes / gzip_bytes).
"""

import os
import zlib

import numpy as np
import tensorflow as tf
import tf_keras as keras

# Sparsity below this is not listed per layer in the console report.
REPORT_MIN_SPARSITY = 0.01
_CHUNK_BYTES = 1 << 22
_KERNEL_NAMES = ("kernel", "depthwise_kernel")


def gzip_size(paths):
  """(bytes, gzip -9 bytes) of the files in `paths` together, streamed."""
  raw = packed = 0
  for path in paths:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip framing
    with tf.io.gfile.GFile(path, "rb") as f:
      while True:
        chunk = f.read(_CHUNK_BYTES)
        if not chunk:
          break
        raw += len(chunk)
        packed += len(compressor.compress(chunk))
    packed += len(compressor.flush())
  return raw, packed


def byte_size(path):
  """Bytes of a file, or of every file under a folder (SavedModel, .mlpackage)."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(root, name))
             for root, _, names in os.walk(path) for name in names)


def file_sizes(path):
  """{'bytes', 'gzip_bytes'} of a file, or of every file under a folder."""
  paths = ([os.path.join(root, name) for root, _, names in os.walk(path)
            for name in names] if os.path.isdir(path) else [path])
  raw, packed = gzip_size(sorted(paths))
  return {"bytes": raw, "gzip_bytes": packed}


def _short_name(variable):
  """'quant_conv/kernel:0' -> 'kernel'."""
  return variable.name.split("/")[-1].split(":")[0]


def _kernel(layer):
  """The conv kernel among a layer's weights, or None.

  Read from the layer itself, a tfmot wrapper included: a quantize
  wrapper's inner layer has lost its kernel to the wrapper.
  """
  by_name = {}
  for variable in layer.weights:
    by_name.setdefault(_short_name(variable), variable)
  return next((by_name[n] for n in _KERNEL_NAMES if n in by_name), None)


def kernel_sparsity(keras_model):
  """{layer name: (zero weights, weights)} of every conv kernel.

  Conv2D and DepthwiseConv2D (tfmot wrappers unwrapped), in layer order.
  """
  result = {}
  for layer in keras_model.layers:
    inner = layer.layer if isinstance(layer, keras.layers.Wrapper) else layer
    if not isinstance(inner, (keras.layers.Conv2D,
                              keras.layers.DepthwiseConv2D)):
      continue
    kernel = _kernel(layer)
    if kernel is not None:
      values = kernel.numpy()
      result[inner.name] = (int(values.size - np.count_nonzero(values)),
                            int(values.size))
  return result


def compression_report(keras_model, technique, frozen_graph_path,
                       variables_paths):
  """The `compression` entry of export_info.json.

  Args:
    keras_model: the exported inference model, weights loaded.
    technique: the training run's tfmot_lib.TECHNIQUES name or None.
    frozen_graph_path: the frozen GraphDef.
    variables_paths: the SavedModel's variables files.

  Returns:
    dict with technique, conv_kernels {layer: {weights, sparsity}}, sparsity
    (zeros over all conv kernel weights), and raw / gzip sizes in bytes.
  """
  kernels = kernel_sparsity(keras_model)
  zeros = sum(z for z, _ in kernels.values())
  total = sum(n for _, n in kernels.values())
  graph_bytes, graph_gzip = gzip_size([frozen_graph_path])
  variables_bytes, variables_gzip = gzip_size(variables_paths)
  return {
      "technique": technique,
      "sparsity": round(zeros / total, 6) if total else 0.0,
      "conv_kernels": {name: {"weights": n, "sparsity": round(z / n, 6)}
                       for name, (z, n) in kernels.items()},
      "frozen_graph_bytes": graph_bytes,
      "frozen_graph_gzip_bytes": graph_gzip,
      "saved_model_variables_bytes": variables_bytes,
      "saved_model_variables_gzip_bytes": variables_gzip,
  }


def _mebibytes(raw, packed):
  return f"{raw / 2**20:.2f} MiB, gzip {packed / 2**20:.2f} MiB"


def format_report(report):
  """A console table: layers with >= 1% zeros, the total, the sizes."""
  rows = [(name, v["weights"], v["sparsity"])
          for name, v in report["conv_kernels"].items()
          if v["sparsity"] >= REPORT_MIN_SPARSITY]
  total = sum(v["weights"] for v in report["conv_kernels"].values())
  width = max([len(name) for name, _, _ in rows] + [len("all conv kernels")])
  lines = [f"Conv kernel sparsity (fraction of zero weights)"
           f"{', ' + report['technique'] if report['technique'] else ''}:"]
  lines += [f"  {name:<{width}}  {n:>10,}  {100 * s:6.2f}%"
            for name, n, s in rows]
  lines.append(f"  {'all conv kernels':<{width}}  {total:>10,}  "
               f"{100 * report['sparsity']:6.2f}%"
               + ("" if rows else "  (no layer has >= 1% zeros)"))
  lines.append("  frozen graph: " + _mebibytes(
      report["frozen_graph_bytes"], report["frozen_graph_gzip_bytes"]))
  lines.append("  SavedModel variables: " + _mebibytes(
      report["saved_model_variables_bytes"],
      report["saved_model_variables_gzip_bytes"]))
  return "\n".join(lines)
