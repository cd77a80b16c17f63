"""ONNX export of an exported SavedModel, with tf2onnx (runtimes.Onnx runs it).

The ONNX graph is the SavedModel's `serving_default` signature unchanged:
input `inputs`, output `predictions`, the same dtypes and static shapes, so
code written against the SavedModel feeds the ONNX model the same arrays.
"""

import collections
import os

import numpy as np

from fast_seg.export import formats
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.export import size_report

# Its file in an export folder.
FILE_NAME = "model.onnx"
# Opset 17: tf2onnx 1.17 knows opsets up to 18 and ONNX Runtime 1.31 runs far
# newer; 17 is the widest-deployed opset that has everything this graph needs
# (Resize with half_pixel coordinates, Softmax on the last axis, ArgMax).
DEFAULT_OPSET = 17

def convert(saved_model_dir, output_path, opset=None):
  """Converts the SavedModel's serving signature to an ONNX file.

  Args:
    saved_model_dir: a SavedModel written by export_lib (its serving
      signature: `inputs` -> `predictions`).
    output_path: the .onnx file to write.
    opset: ONNX opset; DEFAULT_OPSET when None.

  Returns:
    dict with path, bytes, opset, op_count and ops ({op type: count}).

  Raises:
    ValueError: the converted graph does not have exactly the input `inputs`
      and the output `predictions`.
  """
  # Imported here: tf2onnx is heavy and only this export needs it.
  import onnx
  from tf2onnx import convert as tf2onnx_convert
  from tf2onnx import tf_loader

  opset = opset or DEFAULT_OPSET
  # tf2onnx's Python API has no SavedModel entry point; this is the path its
  # command line takes. The rename map gives the graph the signature's names
  # (inputs, predictions) instead of the frozen graph's (inputs:0, Identity:0).
  graph_def, input_names, output_names, renames = tf_loader.from_saved_model(
      saved_model_dir, None, None, tag=[serving.SERVING_TAG],
      signatures=[serving.SIGNATURE_KEY],
      return_tensors_to_rename=True)
  parent = os.path.dirname(output_path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  model_proto, _ = tf2onnx_convert.from_graph_def(
      graph_def, name="fast_seg", input_names=input_names,
      output_names=output_names, opset=opset, tensors_to_rename=renames)
  resizes = resize_to_sizes(model_proto)
  onnx.save(model_proto, output_path)
  onnx.checker.check_model(model_proto)
  inputs = [i.name for i in model_proto.graph.input]
  outputs = [o.name for o in model_proto.graph.output]
  if inputs != [serving.INPUT_NAME] or outputs != [serving.OUTPUT_NAME]:
    raise ValueError(
        f"{saved_model_dir} converted to ONNX inputs {inputs} and outputs "
        f"{outputs}; expected ['{serving.INPUT_NAME}'] and "
        f"['{serving.OUTPUT_NAME}']")
  ops = collections.Counter(node.op_type for node in model_proto.graph.node)
  return {
      "path": output_path,
      "bytes": os.path.getsize(output_path),
      "opset": opset,
      "resizes_to_sizes": resizes,
      "op_count": sum(ops.values()),
      "ops": dict(sorted(ops.items())),
  }


def resize_to_sizes(model_proto):
  """Gives every Resize with constant scales the integer output size instead.

  tf2onnx turns TensorFlow's resize to an exact size (e.g. 23 -> 12 rows,
  ICNet's half-size branch of a 360x480 input) into a scale factor
  (0.5217391); ONNX then computes floor(23 * 0.5217391) = 11 rows, and
  the sums that meet the other branches fail ("Incompatible dimensions").
  Where the input's shape is known, the intended size is round(in * scale):
  setting it as the node's `sizes` (ONNX then derives the scale from it,
  as TensorFlow does) restores TensorFlow's shapes. One resize at a time,
  in graph order, with the shapes inferred again after each: a resize
  downstream of a wrong one sees a wrong input shape until that is fixed.

  Returns:
    The number of Resize nodes changed.
  """
  # Imported here: onnx comes with the optional [export] extra.
  import onnx
  from onnx import numpy_helper
  graph = model_proto.graph
  changed = 0
  while True:
    inferred = onnx.shape_inference.infer_shapes(model_proto).graph
    shapes = {}
    for value in list(inferred.value_info) + list(inferred.input):
      dims = value.type.tensor_type.shape.dim
      if dims and all(d.HasField("dim_value") for d in dims):
        shapes[value.name] = [d.dim_value for d in dims]
    constants = {t.name: t for t in graph.initializer}
    node = next((n for n in graph.node
                 if n.op_type == "Resize" and len(n.input) == 3
                 and n.input[2] in constants and n.input[0] in shapes), None)
    if node is None:
      used = {name for n in graph.node for name in n.input}
      unused = [t for t in graph.initializer if t.name not in used]
      for tensor in unused:  # the replaced scales
        graph.initializer.remove(tensor)
      return changed
    scales = numpy_helper.to_array(constants[node.input[2]])
    sizes = np.round(np.asarray(shapes[node.input[0]]) * scales).astype(np.int64)
    name = f"{node.name}_sizes"
    graph.initializer.append(numpy_helper.from_array(sizes, name))
    node.input[2] = ""
    node.input.append(name)
    changed += 1


def write(job):
  """export.py's onnx format: model.onnx from the job's SavedModel (or one
  whose labels tail runs faster in onnxruntime: job.saved_model_for).

  Args:
    job: an export_lib.ExportJob whose SavedModel is written.

  Returns:
    {'onnx': convert()'s dict, the file's sizes and its agreement with the
    TF function on the check input}.
  """
  job.log("converting to ONNX ...")
  path = os.path.join(job.output_dir, FILE_NAME)
  with job.saved_model_for("onnx") as saved_model_dir:
    result = convert(saved_model_dir, path)
  return {"onnx": {**result, **size_report.file_sizes(path),
                   **job.agreement(runtimes.run_once(path, job.check_input))}}


formats.register("onnx", write, (FILE_NAME,), flexible_input=True, rank=3)
