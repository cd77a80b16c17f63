"""Core ML export with coremltools, and a reader for the written spec.

The model takes an RGB image `image`: Core ML turns its pixels into
scale * pixel + bias[channel] itself, so the converted graph starts after the
feature extractor's preprocessing, which preprocessing_scale_bias finds.
The graph is the main head only (no auxiliary heads), resized to the input
size, with `labels` (arg-max) or `probabilities` (softmax) as output.

Both Core ML model types are written: 'mlprogram' (.mlpackage, iOS 15+,
float16 weights by default) and 'neuralnetwork' (.mlmodel, older devices).
Prediction needs macOS, so on Linux a conversion can only be checked by its
spec (`inspect`).
"""

import collections
import os

import numpy as np
import tensorflow as tf

from fast_seg.core import model as model_lib
from fast_seg.core import standard_fields as fields
from fast_seg.export import formats
from fast_seg.export import serving
from fast_seg.export import size_report

OUTPUT_KINDS = (fields.PredictionFields.labels,
                fields.PredictionFields.probabilities)
CONVERT_TO = {"mlprogram": ".mlpackage", "neuralnetwork": ".mlmodel"}
# Its files in an export folder: both model types are written.
FILE_NAMES = {"mlprogram": "model.mlpackage", "neuralnetwork": "model.mlmodel"}

# Probe values: the ends of the pixel range fix scale and bias, the others
# check that the map is affine, per pixel and per channel.
_PROBE_SEED = 0
_PROBE_PIXELS = 64
_TOLERANCE = 1e-5


def preprocessing_scale_bias(model):
  """(scale, [bias_r, bias_g, bias_b]) with preprocess(x) == scale * x + bias.

  Found by running model.preprocess on probe pixels, so it follows whatever
  the feature extractor does (e.g. MobileNet: 1/127.5, -1; ResNet: 1, -means).

  Raises:
    ValueError: preprocess is not such a map: not affine, channels mixed, or
      a scale per channel (a Core ML ImageType has one scale).
  """
  rng = np.random.default_rng(_PROBE_SEED)
  probes = np.concatenate([
      np.zeros((1, 3)), np.full((1, 3), 255.0),
      rng.integers(0, 256, size=(_PROBE_PIXELS, 3)),
  ]).astype(np.float32)
  # Two images, the probes beside black or beside white pixels: a map that
  # looks at other pixels (e.g. per-image standardisation) fails the check.
  values = np.concatenate([
      np.asarray(model.preprocess(tf.constant(np.concatenate(
          [probes, np.full_like(probes, fill)])[None, None])),
                 np.float64)[0, 0, :len(probes)]
      for fill in (0.0, 255.0)])
  probes = np.concatenate([probes, probes])
  bias = values[0]
  scales = (values[1] - values[0]) / 255.0
  if not np.allclose(scales, scales[0], rtol=_TOLERANCE, atol=0.0):
    raise ValueError(
        f"preprocessing scales its channels differently ({scales.tolist()}); "
        "a Core ML image input has one scale")
  scale = float(scales[0])
  expected = scale * probes + bias
  error = np.max(np.abs(values - expected) / np.maximum(1.0, np.abs(expected)))
  if error > _TOLERANCE:
    raise ValueError(
        "preprocessing is not scale * pixel + bias per channel (relative "
        f"error {error:.3g} on probe pixels); it cannot be a Core ML image "
        "input's preprocessing")
  return scale, [float(b) for b in bias]


def _network_function(model, input_shape, output, channels_first=False):
  """Preprocessed float images -> {output: labels or probabilities}.

  channels_first: probabilities [C, H, W] of the one image, the layout of
  Keras' Core ML converter that apps of the Keras projects index.
  """

  @tf.function(input_signature=[
      tf.TensorSpec(input_shape, tf.float32, name=serving.COREML_INPUT_NAME)])
  def network(image):
    logits = model.predict(image)[fields.PredictionFields.logits]
    result = model.postprocess(
        logits, input_shape[1:3],
        with_probabilities=output == fields.PredictionFields.probabilities)
    value = result[output]
    if channels_first:
      value = tf.transpose(value[0], [2, 0, 1])
    return {output: value}

  return network.get_concrete_function()


def _check_target(input_shape, convert_to, output_path):
  """ValueErrors for what no Core ML model of that type can be."""
  if len(input_shape) != 4 or input_shape[0] != 1 or input_shape[3] != 3:
    raise ValueError(
        f"Core ML input_shape must be 1,H,W,3 (one RGB image), got {input_shape}")
  if convert_to not in CONVERT_TO:
    raise ValueError(f"convert_to must be one of {', '.join(CONVERT_TO)}, got "
                     f"'{convert_to}'")
  if not output_path.endswith(CONVERT_TO[convert_to]):
    raise ValueError(f"a {convert_to} model is saved as "
                     f"*{CONVERT_TO[convert_to]}, got {output_path}")


def _model_network(model, input_shape, output, scale, bias, channels_first):
  """(network function, scale, bias) of a SegmentationModel."""
  if scale is not None or bias is not None:
    raise ValueError("scale and bias come from the model's preprocessing; "
                     "do not pass them with a model")
  if output not in OUTPUT_KINDS:
    raise ValueError(f"output must be one of {', '.join(OUTPUT_KINDS)}, "
                     f"got '{output}'")
  if channels_first and output != fields.PredictionFields.probabilities:
    raise ValueError("channels_first is a layout of probabilities")
  scale, bias = preprocessing_scale_bias(model)
  return (_network_function(model, input_shape, output, channels_first),
          scale, bias)


def _given_network(function, input_shape, output, scale, bias):
  """(concrete function, output name, scale, bias) of a given function."""
  if hasattr(function, "get_concrete_function"):
    function = function.get_concrete_function()
  if len(function.inputs) < 1 or tuple(function.inputs[0].shape) != input_shape:
    raise ValueError(f"the function's input is not {input_shape}")
  if len(function.outputs) != 1:
    raise ValueError("the function must have one output, got "
                     f"{len(function.outputs)}")
  if output is None:
    structured = function.structured_outputs
    output = (next(iter(structured)) if isinstance(structured, dict)
              else "output")
  scale = 1.0 if scale is None else float(scale)
  bias = [0.0] * 3 if bias is None else [float(b) for b in bias]
  return function, output, scale, bias


def _convert_options(convert_to, minimum_deployment_target, compute_precision):
  """The optional keyword arguments of coremltools.convert that were set."""
  options = {}
  if minimum_deployment_target is not None:
    options["minimum_deployment_target"] = minimum_deployment_target
  if compute_precision is not None and convert_to == "mlprogram":
    options["compute_precision"] = compute_precision
  return options


def _describe_output(spec, function, input_shape, output):
  """Fills in the output's static shape and the model's short description."""
  (description,) = spec.description.output
  array = description.type.multiArrayType
  if not array.shape:
    # neuralnetwork specs leave output shapes unset; the graph's is static.
    array.shape.extend(int(v) for v in function.outputs[0].shape)
  spec.description.metadata.shortDescription = (
      f"fast_seg segmentation: RGB {input_shape[1]}x{input_shape[2]} image "
      f"-> {output}")


def _save(mlmodel, spec, convert_to, output_path):
  """Saves `spec` (edited from mlmodel's) with mlmodel's weights."""
  # Imported here: coremltools is heavy and only this export needs it.
  import coremltools as ct
  weights_dir = mlmodel.weights_dir if convert_to == "mlprogram" else None
  edited = ct.models.MLModel(spec, weights_dir=weights_dir,
                             skip_model_load=True)
  parent = os.path.dirname(output_path)
  if parent:
    os.makedirs(parent, exist_ok=True)
  edited.save(output_path)


def convert(model_or_function, output_path, input_shape,
            convert_to="mlprogram", output=fields.PredictionFields.labels,
            scale=None, bias=None, minimum_deployment_target=None,
            compute_precision=None, contract=serving.CONTRACTS["fast_seg"]):
  """Converts a model (or a preprocessed-input function) to Core ML.

  Args:
    model_or_function: a SegmentationModel with weights loaded, or a
      ConcreteFunction of one float32 input (already preprocessed images)
      and one output.
    output_path: .mlpackage for 'mlprogram', .mlmodel for 'neuralnetwork'.
    input_shape: (1, H, W, 3); a Core ML image input holds one image.
    convert_to: 'mlprogram' or 'neuralnetwork'.
    output: for a model, 'labels' or 'probabilities'; for a function, the
      name of its output in the Core ML model (its output key when None).
    scale, bias: the image input's preprocessing; from the model's own
      preprocess for a model (leave None), given for a function (default
      1 and 0: raw 0..255 pixels).
    minimum_deployment_target: a coremltools.target, passed on.
    compute_precision: a coremltools.precision for 'mlprogram' (default
      coremltools': float16).
    contract: a model's serving.Contract: its Core ML output's name (else
      the kind) and layout.

  Returns:
    inspect()'s dict for the written model, plus path and bytes.
  """
  # Imported here: coremltools is heavy and only this export needs it.
  import coremltools as ct
  input_shape = tuple(int(v) for v in input_shape)
  _check_target(input_shape, convert_to, output_path)
  if isinstance(model_or_function, model_lib.SegmentationModel):
    function, scale, bias = _model_network(model_or_function, input_shape,
                                           output, scale, bias,
                                           contract.coreml_channels_first)
    output = contract.coreml_output or output
  else:
    function, output, scale, bias = _given_network(
        model_or_function, input_shape, output, scale, bias)
  # Core ML names outputs after the frozen graph's node (e.g. `Identity`);
  # they are renamed once converted.
  graph_output = function.outputs[0].name.split(":")[0]
  mlmodel = ct.convert(
      [function], source="tensorflow", convert_to=convert_to,
      inputs=[ct.ImageType(name=serving.COREML_INPUT_NAME, shape=input_shape,
                           scale=scale, bias=bias,
                           color_layout=ct.colorlayout.RGB)],
      outputs=[ct.TensorType(name=graph_output)], skip_model_load=True,
      **_convert_options(convert_to, minimum_deployment_target,
                         compute_precision))
  spec = mlmodel.get_spec()
  ct.utils.rename_feature(spec, graph_output, output, rename_inputs=False)
  _describe_output(spec, function, input_shape, output)
  _save(mlmodel, spec, convert_to, output_path)
  info = {"path": output_path, "bytes": size_report.byte_size(output_path)}
  info.update(inspect(output_path))
  return info


def _feature(feature):
  """A spec feature description -> a plain dict."""
  kind = feature.type.WhichOneof("Type")
  result = {"name": feature.name, "kind": kind}
  if kind == "imageType":
    image = feature.type.imageType
    result["shape"] = [1, int(image.height), int(image.width), 3]
    result["color_space"] = type(image).ColorSpace.Name(image.colorSpace)
  elif kind == "multiArrayType":
    array = feature.type.multiArrayType
    result["shape"] = [int(v) for v in array.shape]
    result["data_type"] = type(array).ArrayDataType.Name(array.dataType)
  return result


def _const_values(operation):
  """The float values of a MIL const op (float32 or float16 storage)."""
  tensor = operation.attributes["val"].immediateValue.tensor
  if tensor.WhichOneof("value") == "floats":
    return np.asarray(tensor.floats.values, np.float64)
  if tensor.WhichOneof("value") == "bytes":
    return np.frombuffer(tensor.bytes.values, np.float16).astype(np.float64)
  raise ValueError(f"unexpected const storage {tensor.WhichOneof('value')}")


def _program_scale_bias(block, input_name):
  """The mul / add that coremltools puts on an mlprogram's image input."""
  consts = {op.outputs[0].name: op for op in block.operations
            if op.type == "const"}
  consumers = collections.defaultdict(list)
  for op in block.operations:
    for argument in op.inputs.values():
      for binding in argument.arguments:
        if binding.name:
          consumers[binding.name].append(op)

  def affine_step(name, op_type):
    """(constant operand, output name) of an op_type op applied to name."""
    for op in consumers[name]:
      if op.type != op_type:
        continue
      names = [a.name for arg in op.inputs.values() for a in arg.arguments]
      others = [n for n in names if n != name and n in consts]
      if len(others) == 1:
        return _const_values(consts[others[0]]), op.outputs[0].name
    return None, name

  scale, name = affine_step(input_name, "mul")
  bias, _ = affine_step(name, "add")
  scale = 1.0 if scale is None else float(scale.reshape(-1)[0])
  bias = np.zeros(3) if bias is None else np.broadcast_to(bias.reshape(-1), 3)
  return scale, [float(b) for b in bias]


def inspect(path):
  """Reads a written Core ML model's spec; no prediction (needs macOS).

  Returns:
    dict with spec_type ('mlProgram' / 'neuralNetwork'),
    specification_version, inputs and outputs (name, kind, shape and colour
    space or data type), image_scale and image_bias of the image input, and
    ops ({MIL op or neural network layer type: count}).
  """
  # Imported here: coremltools is heavy and only this export needs it.
  import coremltools as ct
  spec = ct.models.MLModel(path, skip_model_load=True).get_spec()
  spec_type = spec.WhichOneof("Type")
  inputs = [_feature(f) for f in spec.description.input]
  images = [f["name"] for f in inputs if f["kind"] == "imageType"]
  scale, bias = 1.0, [0.0] * 3
  if spec_type == "mlProgram":
    function = spec.mlProgram.functions["main"]
    block = function.block_specializations[function.opset]
    ops = collections.Counter(op.type for op in block.operations)
    if images:
      scale, bias = _program_scale_bias(block, images[0])
  elif spec_type == "neuralNetwork":
    ops = collections.Counter(
        layer.WhichOneof("layer") for layer in spec.neuralNetwork.layers)
    for step in spec.neuralNetwork.preprocessing:
      if step.featureName in images and step.WhichOneof(
          "preprocessor") == "scaler":
        scaler = step.scaler
        scale = float(scaler.channelScale)
        bias = [float(scaler.redBias), float(scaler.greenBias),
                float(scaler.blueBias)]
  else:
    raise ValueError(f"{path}: unsupported Core ML model type {spec_type}")
  return {
      "spec_type": spec_type,
      "specification_version": int(spec.specificationVersion),
      "inputs": inputs,
      "outputs": [_feature(f) for f in spec.description.output],
      "image_scale": scale,
      "image_bias": bias,
      "ops": dict(sorted(ops.items())),
  }


def write(job):
  """export.py's coreml format: model.mlpackage and model.mlmodel.

  Converted from the job's model (not its SavedModel): the image input's
  preprocessing becomes Core ML's own. Checked by reading the written
  spec: Core ML runs only on Apple systems.

  Args:
    job: an export_lib.ExportJob of batch 1, output labels or
      probabilities; its contract names the output and sets its layout.

  Returns:
    {'coreml_<type>': convert()'s dict, the files' sizes, the spec} for
    both model types.
  """
  entries = {}
  for kind, name in FILE_NAMES.items():
    job.log(f"converting to Core ML ({kind}) ...")
    path = os.path.join(job.output_dir, name)
    result = convert(job.model, path, job.input_shape, convert_to=kind,
                     output=job.output, contract=job.contract)
    entries[f"coreml_{kind}"] = {
        **result, **size_report.file_sizes(path), "spec": inspect(path),
        "agreement": "spec checked (Core ML runs only on Apple systems)"}
  return entries


formats.register("coreml", write, FILE_NAMES.values(), rank=4)
