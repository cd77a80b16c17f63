"""TFLite export of an exported SavedModel (runtimes.TFLite runs it).

The converted model keeps the SavedModel's interface: uint8 (or float32)
pixels `inputs` [N, H, W, 3] in, the graph casts and preprocesses, and
`predictions` out as the SavedModel had it (int32 labels or float32
probabilities). Quantization only changes what is inside:

- none: float32 weights and math;
- float16: float16 weights, dequantized to float32 at load time (about half
  the size; XNNPACK may run them in fp16 where the CPU has it);
- dynamic: int8 weights, float activations (hybrid kernels), no calibration;
- int8: int8 weights and activations, with activation ranges calibrated on
  representative images, or taken from a quantization-aware-trained graph's
  fake-quant ops.
"""

import collections
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from fast_seg.export import formats
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.export import size_report
from fast_seg.utils import native_stderr

QUANTIZE_MODES = ("none", "float16", "dynamic", "int8")
# Its file in an export folder.
FILE_NAME = "model.tflite"
# Ops whose second input is a weight tensor (filter), for weight_types.
WEIGHT_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV",
              "FULLY_CONNECTED")


def _input_spec(saved_model_dir):
  """(shape, np.dtype) of the serving signature's `inputs`, read from the proto.

  Read from saved_model.pb rather than loaded: loading restores every
  variable, seconds for nothing but a shape.
  """
  path = os.path.join(saved_model_dir, serving.SAVED_MODEL_FILE)
  saved_model = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(path, "rb") as f:
    saved_model.ParseFromString(f.read())
  signatures = saved_model.meta_graphs[0].signature_def
  if serving.SIGNATURE_KEY not in signatures:
    raise ValueError(f"{saved_model_dir} has no '{serving.SIGNATURE_KEY}' "
                     f"signature (has {sorted(signatures)})")
  tensor = signatures[serving.SIGNATURE_KEY].inputs[serving.INPUT_NAME]
  shape = tuple(d.size for d in tensor.tensor_shape.dim)
  return shape, tf.as_dtype(tensor.dtype).as_numpy_dtype


def _check_modes(quantize, representative_images, qat):
  if quantize not in QUANTIZE_MODES:
    raise ValueError(f"--quantize must be one of {', '.join(QUANTIZE_MODES)}, "
                     f"got '{quantize}'")
  if qat:
    # The fake-quant ops fix the int8 ranges; any other mode would ignore or
    # fight them.
    if quantize != "int8":
      raise ValueError(
          "a run trained with quantization_aware_training converts to int8 "
          f"with the ranges it learned: use --quantize int8, not '{quantize}'")
    if representative_images is not None:
      raise ValueError(
          "a run trained with quantization_aware_training needs no "
          "calibration: drop --num_calibration_images")
  elif quantize == "int8" and representative_images is None:
    raise ValueError(
        "--quantize int8 needs representative images to calibrate the "
        "activation ranges: set --num_calibration_images > 0 (or use "
        "--quantize dynamic, which needs none)")
  elif quantize != "int8" and representative_images is not None:
    raise ValueError(f"--num_calibration_images is only used by --quantize "
                     f"int8, not '{quantize}'")


def _representative_dataset(representative_images, shape, dtype):
  """A converter representative_dataset yielding [batch] of the input shape.

  Each item of `representative_images` (an iterable, or a callable returning
  one) is a batch [n, H, W, 3] or one image [H, W, 3]; it is cut into
  batches of the signature's size, so a [K, H, W, 3] array calibrates on K
  images whatever the exported batch size.
  """
  def generate():
    items = (representative_images() if callable(representative_images)
             else representative_images)
    if isinstance(items, np.ndarray):
      items = [items]
    pending, count = [], 0
    for item in items:
      batch = np.asarray(item)
      if batch.ndim == len(shape) - 1:
        batch = batch[np.newaxis]
      if tuple(batch.shape[1:]) != tuple(shape[1:]):
        raise ValueError(f"representative images must be [n, "
                         f"{', '.join(map(str, shape[1:]))}] like the "
                         f"exported input, got {batch.shape}")
      for image in batch:
        pending.append(image)
        if len(pending) == shape[0]:
          count += 1
          yield [np.stack(pending).astype(dtype)]
          pending = []
    if not count:
      raise ValueError(f"--num_calibration_images: fewer representative "
                       f"images than the exported batch size {shape[0]}")
  return generate


def convert(saved_model_dir, output_path, quantize="none",
            representative_images=None, qat=False):
  """Converts the SavedModel's serving signature to a .tflite file.

  Args:
    saved_model_dir: an export's saved_model/ (signature 'serving_default',
      input `inputs`, output `predictions`).
    output_path: the .tflite file to write.
    quantize: a QUANTIZE_MODES name.
    representative_images: for 'int8': batches (or a callable returning
      them) of uint8 or float32 pixels matching the input [H, W, 3].
    qat: the SavedModel holds a quantization-aware-trained fake-quant graph;
      'int8' then takes its ranges and needs no representative images.

  Returns:
    {'path', 'bytes', 'quantize', 'op_count', 'ops': {op name: count}}.

  Raises:
    ValueError: naming --quantize / --num_calibration_images for a mode
      that cannot work with the given arguments.
  """
  _check_modes(quantize, representative_images, qat)
  converter = tf.lite.TFLiteConverter.from_saved_model(
      saved_model_dir, signature_keys=[serving.SIGNATURE_KEY])
  if quantize != "none":
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
  if quantize == "float16":
    converter.target_spec.supported_types = [tf.float16]
  elif quantize == "int8" and not qat:
    shape, dtype = _input_spec(saved_model_dir)
    converter.representative_dataset = _representative_dataset(
        representative_images, shape, dtype)
    # Every op that has an int8 kernel gets it; the converter fails rather
    # than silently leaving float ops in an 'int8' model.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
  # inference_input_type / inference_output_type stay at their default
  # (float32), which means "keep the model's interface": they only retype
  # float inputs and outputs. Ours are uint8 pixels in (cast inside) and
  # int32 labels or float32 probabilities out (dequantized inside), so an
  # int8 model is a drop-in replacement for the float one.
  with native_stderr.quiet():  # its quantizer prints those types as FLOAT32
    content = converter.convert()
  directory = os.path.dirname(output_path)
  if directory:
    tf.io.gfile.makedirs(directory)
  with tf.io.gfile.GFile(output_path, "wb") as f:
    f.write(content)
  ops = op_counts(output_path)
  return {"path": output_path, "bytes": len(content), "quantize": quantize,
          "op_count": sum(ops.values()), "ops": ops}


def _inspector(path):
  """An interpreter without default delegates, so that its nodes are the
  model's own ops (XNNPACK would replace them by one delegate node)."""
  litert = runtimes.litert()
  interpreter = litert.Interpreter(
      model_path=path, experimental_op_resolver_type=(
          litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
  interpreter.allocate_tensors()
  return interpreter


def op_counts(path):
  """{op name: count} of a .tflite file's main subgraph, most frequent first."""
  ops = _inspector(path)._get_ops_details()  # pylint: disable=protected-access
  return dict(collections.Counter(op["op_name"] for op in ops).most_common())


def interface(path):
  """'uint8 inputs [1, 360, 480, 3] -> int32 predictions [1, 360, 480]': what
  a .tflite file takes and gives (one input, one output), read from the file."""
  interpreter = _inspector(path)
  (given,), (got,) = (interpreter.get_input_details(),
                      interpreter.get_output_details())
  text = lambda detail, name: (f"{np.dtype(detail['dtype']).name} {name} "
                               f"{detail['shape'].tolist()}")
  return (f"{text(given, serving.INPUT_NAME)} -> "
          f"{text(got, serving.OUTPUT_NAME)}")


def weight_types(path):
  """{dtype name: count} of the weights of the conv and dense ops.

  A float16 model stores a weight as float16 behind a DEQUANTIZE op; the
  stored type is counted, so float16 shows as 'float16', int8 and dynamic
  as 'int8', float32 as 'float32'.
  """
  interpreter = _inspector(path)
  ops = interpreter._get_ops_details()  # pylint: disable=protected-access
  dequantized_from = {op["outputs"][0]: op["inputs"][0] for op in ops
                      if op["op_name"] == "DEQUANTIZE"}
  counts = collections.Counter()
  for op in ops:
    if op["op_name"] in WEIGHT_OPS:
      weight = op["inputs"][1]
      weight = dequantized_from.get(weight, weight)
      dtype = interpreter._get_tensor_details(weight, 0)["dtype"]  # pylint: disable=protected-access
      counts[np.dtype(dtype).name] += 1
  return dict(counts)


def write(job):
  """export.py's tflite format: model.tflite from the job's SavedModel
  (or one whose labels tail runs faster in LiteRT: job.saved_model_for).

  Args:
    job: an export_lib.ExportJob whose SavedModel is written.

  Returns:
    {'tflite': convert()'s dict, the file's sizes and its agreement with
    the TF function on the check input}.

  Raises:
    ValueError: int8 without calibration images (no eval data found).
  """
  job.log(f"converting to TFLite ({job.quantize}) ...")
  path = os.path.join(job.output_dir, FILE_NAME)
  # A QAT run's fake-quant graph converts to int8 without calibration.
  qat = job.qat and job.quantize == "int8"
  calibrated = job.quantize == "int8" and not qat
  if calibrated and not job.calibration:
    raise ValueError(
        "--quantize int8 needs calibration images: the eval TFRecords of "
        "the config (eval_input_reader) were not found; set "
        "--num_calibration_images > 0 with eval data present")
  with job.saved_model_for("tflite") as saved_model_dir:
    result = convert(saved_model_dir, path, quantize=job.quantize,
                     representative_images=(job.calibration if calibrated
                                            else None), qat=qat)
  # Said once, from the file: the converter's own line called an int8
  # model's uint8 input FLOAT32 (native_stderr drops it).
  job.log(f"  {FILE_NAME} ({job.quantize}): {interface(path)}")
  return {"tflite": {**result, **size_report.file_sizes(path),
                     **job.agreement(runtimes.run_once(path, job.check_input))}}


formats.register("tflite", write, (FILE_NAME,), rank=2)
