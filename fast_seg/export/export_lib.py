"""Export behind export.py: SavedModel and a frozen inference graph.

The exported function takes uint8 images `inputs` [N, H, W, 3] and returns
int32 `predictions` [N, H, W] at the input size: preprocessing, the main head
only (no auxiliary heads) and the upsampling + arg-max are inside, as the TF1
project's frozen_inference_graph.pb was.

A run trained with train_config.magnitude_pruning exports as a plain model
(its checkpoints hold the pruned weights as zeros); one trained with
quantization_aware_training exports its fake-quant graph, which the TFLite
converter turns into an int8 model. Every export reports the conv kernels'
sparsity and the gzip sizes (export_info.json `compression`).
"""

import contextlib
import json
import os

import numpy as np

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.grappler import tf_optimizer  # pylint: disable=g-direct-tensorflow-import
from tensorflow.python.tools import optimize_for_inference_lib  # pylint: disable=g-direct-tensorflow-import

from fast_seg.builders import model_builder
from fast_seg.model_optimization import tfmot_lib
from fast_seg.core import standard_fields as fields
from fast_seg.data import dataset_info
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from fast_seg.utils import visualization

INPUT_NAME = "inputs"
OUTPUT_NAME = "predictions"
FROZEN_GRAPH_NAME = "frozen_inference_graph.pb"
SAVED_MODEL_DIR = "saved_model"
# Mean grey, the value random_crop pads training images with.
PAD_VALUE = 127.5


def parse_shape(text, rank, flag):
  """'1,512,1024,3' -> (1, 512, 1024, 3), with a clear error naming the flag."""
  try:
    shape = tuple(int(v) for v in text.split(","))
  except (AttributeError, ValueError):
    shape = ()
  if len(shape) != rank or any(v < 1 for v in shape):
    raise ValueError(f"{flag} must be {rank} positive integers separated by "
                     f"commas, got {text!r}")
  return shape


OUTPUT_KINDS = ("labels", "probabilities", "colours")
INPUT_TYPES = ("uint8", "float32")


def build_inference_function(model, input_shape, pad_to_shape=None,
                             output="labels", input_type="uint8",
                             palette=None, fast_labels=False):
  """The image -> segmentation function that every export format wraps.

  Preprocessing, the main head only and the resize to the input size are
  inside, so a device feeds raw pixels and reads the answer.

  Args:
    model: a SegmentationModel with weights loaded.
    input_shape: (N, H, W, 3).
    pad_to_shape: optional (H', W') >= (H, W): the image is padded with mean
      grey to this size before the network and the output cropped back, so a
      network trained at H' x W' can serve other sizes with static shapes.
    output: 'labels' (int32 [N, H, W]), 'probabilities' (float32
      [N, H, W, C], softmax; binary models: the sigmoid map [N, H, W, 1]) or
      'colours' (uint8 [N, H, W, 3] from `palette`).
    input_type: 'uint8' or 'float32' pixels (0..255 either way).
    palette: [C, 3] uint8 colours, for output 'colours'.
    fast_labels: labels / colours only: take the arg-max (or threshold) at
      the logits' resolution and upsample the labels by nearest neighbour,
      instead of resizing all C logit maps bilinearly to the input size
      first. At 1024x2048 that resize and arg-max cost about as much as a
      small network; the labels differ only along class boundaries (within
      the logits' stride).

  Returns:
    A tf.function with a fixed input signature named `inputs`, returning
    {'predictions': ...}; the output op is named `predictions` too, so the
    frozen graph has `inputs:0` and `predictions:0`.
  """
  if len(input_shape) != 4 or input_shape[-1] != 3:
    raise ValueError(f"--input_shape must be N,H,W,3, got {input_shape}")
  if output not in OUTPUT_KINDS:
    raise ValueError(f"--output must be one of {', '.join(OUTPUT_KINDS)}, got "
                     f"'{output}'")
  if input_type not in INPUT_TYPES:
    raise ValueError(f"--input_type must be one of {', '.join(INPUT_TYPES)}, "
                     f"got '{input_type}'")
  if output == "colours" and palette is None:
    raise ValueError("--output colours needs a palette")
  height, width = input_shape[1:3]
  if pad_to_shape and (pad_to_shape[0] < height or pad_to_shape[1] < width):
    raise ValueError(f"--pad_to_shape {pad_to_shape} is smaller than the input "
                     f"size {(height, width)}")
  colours = (tf.constant(palette, tf.uint8) if output == "colours" else None)

  @tf.function(input_signature=[
      tf.TensorSpec(input_shape, tf.as_dtype(input_type), name=INPUT_NAME)])
  def serve(inputs):
    images = tf.cast(inputs, tf.float32)
    if pad_to_shape:
      images = tf.pad(images - PAD_VALUE,
                      [[0, 0], [0, pad_to_shape[0] - height],
                       [0, pad_to_shape[1] - width], [0, 0]]) + PAD_VALUE
    logits = model.predict(model.preprocess(images))[fields.PredictionFields.logits]
    if fast_labels and output != "probabilities":
      # Same static size: postprocess's resize is skipped.
      low = model.postprocess(logits, logits.shape[1:3])[
          fields.PredictionFields.labels]
      # float32: TFLite's nearest resize has no integer kernels; ids are
      # exact in float32.
      labels = tf.image.resize(tf.cast(low, tf.float32)[..., None],
                               images.shape[1:3], method="nearest")
      # Rounded: an int8 TFLite model quantizes this float map too.
      result = {fields.PredictionFields.labels: tf.cast(
          tf.round(labels[..., 0]), tf.int32)}
    else:
      result = model.postprocess(logits, images.shape[1:3],
                                 with_probabilities=output == "probabilities")
    if output == "probabilities":
      value = result[fields.PredictionFields.probabilities][:, :height, :width]
    else:
      value = result[fields.PredictionFields.labels][:, :height, :width]
      if output == "colours":
        value = tf.gather(colours, value)
    return {OUTPUT_NAME: tf.identity(value, name=OUTPUT_NAME)}

  return serve


def freeze(concrete_function):
  """Inlines the variables of a concrete function as constants -> GraphDef."""
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete_function)
  return frozen.graph.as_graph_def()


def _grappler(graph_def, output_names):
  """Constant folding, arithmetic simplification and pruning (Grappler)."""
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
    meta_graph = tf.compat.v1.train.export_meta_graph(graph=graph)
  fetch = meta_graph_pb2.CollectionDef()
  fetch.node_list.value.extend(output_names)
  meta_graph.collection_def["train_op"].CopyFrom(fetch)
  config = config_pb2.ConfigProto()
  rewrite = config.graph_options.rewrite_options
  rewrite.optimizers.extend(["constfold", "arithmetic", "dependency",
                             "pruning"])
  rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
  return tf_optimizer.OptimizeGraph(config, meta_graph)


def optimize_frozen_graph(graph_def):
  """Folds batch norms into their convs and constants into constants.

  Grappler first (it turns the variables' Identity reads into the Const
  inputs the batch-norm folding looks for), then folding, then Grappler
  again. Batch norms after a dilated conv (SpaceToBatchND / BatchToSpaceND
  between them) stay as they are.
  """
  folded = optimize_for_inference_lib.fold_batch_norms(
      _grappler(graph_def, [OUTPUT_NAME]))
  return _grappler(folded, [OUTPUT_NAME])


def count_flops(graph_def):
  """Floating-point operations of one run of a frozen graph (multiply-add = 2)."""
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
  return int(profile.total_float_ops)


def copy_dataset_info(pipeline_config, output_dir):
  """Copies the training data's dataset_info.json into `output_dir`.

  With it the export carries its class names and palette, for predict.py.
  Looked for beside train_input_reader's glob, then eval_input_reader's.

  Returns:
    The copied path, or None when neither glob has one beside it (a copy
    left by an earlier export to `output_dir` is then removed).
  """
  target = os.path.join(output_dir, fields.DatasetInfoFields.file_name)
  for reader in (pipeline_config.train_input_reader,
                 pipeline_config.eval_input_reader):
    source = dataset_info.find(",".join(reader.tf_record_input_path))
    if source:
      tf.io.gfile.copy(source, target, overwrite=True)
      return target
  if tf.io.gfile.exists(target):
    tf.io.gfile.remove(target)
  return None


FORMATS = ("saved_model", "frozen_graph", "tflite", "coreml", "onnx")
DEFAULT_FORMATS = ("saved_model", "frozen_graph")
REPORT_NAME = "export_report.json"
INFO_NAME = "export_info.json"
TFLITE_NAME = "model.tflite"
ONNX_NAME = "model.onnx"
COREML_NAMES = {"mlprogram": "model.mlpackage", "neuralnetwork": "model.mlmodel"}


def parse_formats(text):
  """'saved_model,tflite' -> a tuple of FORMATS names (saved_model first)."""
  names = [n.strip() for n in text.split(",") if n.strip()]
  unknown = [n for n in names if n not in FORMATS]
  if unknown or not names:
    raise ValueError(f"--formats must be a comma-separated subset of "
                     f"{', '.join(FORMATS)}, got '{text}'")
  return tuple(n for n in FORMATS if n in names)


def load_model(pipeline_config, trained_checkpoint, random_weights=False):
  """(model to export, float model, technique, checkpoint path or None)."""
  model = float_model = model_builder.build(pipeline_config.model)
  technique = tfmot_lib.configured_technique(pipeline_config.train_config)
  if random_weights:
    return model, float_model, None, None
  if not trained_checkpoint:
    raise ValueError("--trained_checkpoint is required (or --random_weights "
                     "for an untrained model of the same architecture)")
  checkpoint_path = checkpoint_util.resolve_checkpoint(trained_checkpoint)
  if technique == tfmot_lib.QUANTIZATION_AWARE_TRAINING:
    # The training model's fake-quant graph (aux heads dropped below), with
    # the float weights and the quantizer ranges of the checkpoint.
    tfmot_lib.check_state(checkpoint_path, technique)
    compression = tfmot_lib.apply(model, pipeline_config.train_config)
    compression.restore(checkpoint_path)
    model = compression.model
  else:
    # Pruning wrappers are left out: the plain model, pruned weights as zeros.
    inference_layers = [l for l in model.inference_model.layers if l.weights]
    checkpoint_util.restore_layers(inference_layers, checkpoint_path)
  return model, float_model, technique, checkpoint_path


def eval_images(pipeline_config, input_shape, count):
  """Up to `count` uint8 images [1, H, W, 3] from the eval TFRecords.

  They calibrate int8 quantization and are the agreement check's input; an
  empty list when the config's eval files are not there.
  """
  patterns = list(pipeline_config.eval_input_reader.tf_record_input_path)
  files = [f for p in patterns for f in tf.io.gfile.glob(p)]
  if not files or count < 1:
    return []
  images = []
  feature = {fields.TfExampleFields.image_encoded:
             tf.io.FixedLenFeature([], tf.string)}
  for record in tf.data.TFRecordDataset(sorted(files)).take(count):
    encoded = tf.io.parse_single_example(record, feature)[
        fields.TfExampleFields.image_encoded]
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image = tf.image.resize(image, input_shape[1:3], method="bilinear")
    images.append(tf.cast(tf.round(image), tf.uint8)[tf.newaxis].numpy())
  return images


def _agreement(reference, got, output):
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


def _file_sizes(path):
  paths = ([os.path.join(root, name) for root, _, names in os.walk(path)
            for name in names] if os.path.isdir(path) else [path])
  raw, packed = tfmot_lib.gzip_size(sorted(paths))
  return {"bytes": raw, "gzip_bytes": packed}


def export(pipeline_config, trained_checkpoint, output_dir, input_shape,
           pad_to_shape=None, formats=DEFAULT_FORMATS, quantize="none",
           output="labels", input_type="uint8", random_weights=False,
           num_calibration_images=100, fast_labels=False, log=print):
  """Writes the requested formats, each checked by running it.

  saved_model/ (the other converters start from it) and
  frozen_inference_graph.pb (batch norms and constants folded) are always
  written; model.tflite, model.onnx, model.mlpackage / model.mlmodel on
  request. Also pipeline.config, dataset_info.json (when the data has one),
  export_info.json and export_report.json (per format: size, gzip size, op
  count, agreement with the TF function on a check image).

  Args:
    pipeline_config: pipeline_pb2.PipelineConfig.
    trained_checkpoint: checkpoint prefix or a train dir (its latest); None
      with random_weights.
    output_dir: destination folder.
    input_shape: (N, H, W, 3) of the exported input.
    pad_to_shape: optional (H, W), see build_inference_function.
    formats: names from FORMATS.
    quantize: TFLite weights: none, float16, dynamic or int8.
    output: labels, probabilities or colours.
    input_type: uint8 or float32.
    fast_labels: see build_inference_function; the report then also gives
      the labels' agreement with the exact (bilinear) output.
    random_weights: export an untrained model (for on-device speed tests).
    num_calibration_images: eval images that calibrate int8.
    log: called with progress lines.

  Returns:
    The export_info dict (also export_info.json).
  """
  from fast_seg.export import tflite_format  # pylint: disable=g-import-not-at-top
  if quantize not in tflite_format.QUANTIZE_MODES:
    raise ValueError(f"--quantize must be one of "
                     f"{', '.join(tflite_format.QUANTIZE_MODES)}, got "
                     f"'{quantize}'")
  if quantize != "none" and "tflite" not in formats:
    raise ValueError("--quantize applies to the tflite format; add tflite to "
                     "--formats")
  if "coreml" in formats and (output == "colours" or pad_to_shape
                              or input_shape[0] != 1):
    raise ValueError("the coreml format takes batch 1, no --pad_to_shape and "
                     "--output labels or probabilities")
  model, float_model, technique, checkpoint_path = load_model(
      pipeline_config, trained_checkpoint, random_weights)
  num_classes = config_util.get_model_config(pipeline_config.model).num_classes
  palette = _palette(pipeline_config, num_classes)
  if model.is_binary:
    # Output ids 0 / 1: background and the (first) foreground class colour.
    foreground = model.binary_output.foreground_ids(model.num_classes)[0]
    palette = np.asarray(palette)[[0, foreground]]
  serve = build_inference_function(model, input_shape, pad_to_shape,
                                   output=output, input_type=input_type,
                                   palette=palette, fast_labels=fast_labels)
  concrete = serve.get_concrete_function()

  tf.io.gfile.makedirs(output_dir)
  # The folder then holds this export alone: no file of an earlier one
  # stays beside it, and nothing of this one if it fails half-way.
  with _replacing_export_files(output_dir):
    saved_model_dir = os.path.join(output_dir, SAVED_MODEL_DIR)
    module = tf.Module()
    # The variables, not the Keras model: saving a Keras model traces every
    # layer again (slow, and fragile with tfmot wrappers); serve is the API.
    module.model_variables = list(model.inference_model.variables)
    module.serve = serve
    tf.saved_model.save(module, saved_model_dir,
                        signatures={"serving_default": concrete})

    check = eval_images(pipeline_config, input_shape,
                        max(num_calibration_images, 1))
    calibration = check[:num_calibration_images]
    check_image = (np.concatenate([check[0]] * input_shape[0]) if check else
                   np.random.default_rng(0).integers(
                       0, 256, input_shape, dtype=np.uint8))
    check_input = check_image.astype(input_type)
    reference = serve(tf.constant(check_input))[OUTPUT_NAME].numpy()
    report = {"check_input": "eval image" if check else "random pixels",
              "output": output, "input_type": input_type, "formats": {}}
    if fast_labels and output != "probabilities":
      exact = build_inference_function(model, input_shape, pad_to_shape,
                                       output=output, input_type=input_type,
                                       palette=palette)
      report["fast_labels_agreement_with_exact"] = _agreement(
          exact(tf.constant(check_input))[OUTPUT_NAME].numpy(), reference,
          output)["pixel_agreement"]
    formats_report = report["formats"]
    formats_report["saved_model"] = {
        "path": saved_model_dir, **_file_sizes(saved_model_dir),
        **_agreement(reference, _run_saved_model(saved_model_dir, check_input),
                     output)}

    plain_graph = freeze(concrete)
    frozen_path = os.path.join(output_dir, FROZEN_GRAPH_NAME)
    optimized = optimize_frozen_graph(plain_graph)
    with tf.io.gfile.GFile(frozen_path, "wb") as f:
      f.write(optimized.SerializeToString())
    formats_report["frozen_graph"] = {
        "path": frozen_path, **_file_sizes(frozen_path),
        "op_count": len(optimized.node),
        "op_count_before_folding": len(plain_graph.node),
        **_agreement(reference, run_frozen_graph(optimized, check_input),
                     output)}
    if "tflite" in formats:
      log(f"converting to TFLite ({quantize}) ...")
      path = os.path.join(output_dir, TFLITE_NAME)
      # A QAT run's fake-quant graph converts to int8 without calibration.
      qat = (technique == tfmot_lib.QUANTIZATION_AWARE_TRAINING
             and quantize == "int8")
      if quantize == "int8" and not qat and not calibration:
        raise ValueError(
            "--quantize int8 needs calibration images: the eval TFRecords of "
            "the config (eval_input_reader) were not found; set "
            "--num_calibration_images > 0 with eval data present")
      result = tflite_format.convert(
          saved_model_dir, path, quantize=quantize,
          representative_images=(calibration if quantize == "int8" and not qat
                                 else None), qat=qat)
      formats_report["tflite"] = {
          **result, **_file_sizes(path),
          **_agreement(reference, tflite_format.run(path, check_input), output)}
    if "onnx" in formats:
      from fast_seg.export import onnx_format  # pylint: disable=g-import-not-at-top
      log("converting to ONNX ...")
      path = os.path.join(output_dir, ONNX_NAME)
      result = onnx_format.convert(saved_model_dir, path)
      formats_report["onnx"] = {
          **result, **_file_sizes(path),
          **_agreement(reference, onnx_format.run(path, check_input), output)}
    if "coreml" in formats:
      from fast_seg.export import coreml_format  # pylint: disable=g-import-not-at-top
      for kind, name in COREML_NAMES.items():
        log(f"converting to Core ML ({kind}) ...")
        path = os.path.join(output_dir, name)
        result = coreml_format.convert(model, path, input_shape,
                                       convert_to=kind, output=output)
        formats_report[f"coreml_{kind}"] = {
            **result, **_file_sizes(path),
            "spec": coreml_format.inspect(path),
            "agreement": "spec checked (Core ML runs only on Apple systems)"}

    config_util.save_pipeline_config(pipeline_config, output_dir)
    info_path = copy_dataset_info(pipeline_config, output_dir)
    compression_report = tfmot_lib.compression_report(
        model.inference_model, technique, frozen_path,
        tf.io.gfile.glob(os.path.join(saved_model_dir, "variables",
                                      "variables.data-*")))
    log(tfmot_lib.format_report(compression_report))
    with tf.io.gfile.GFile(os.path.join(output_dir, REPORT_NAME), "w") as f:
      json.dump(report, f, indent=2)
    for line in report_lines(report):
      log(line)

    info = {
        "checkpoint": checkpoint_path,
        "random_weights": random_weights,
        "input_shape": list(input_shape),
        "pad_to_shape": list(pad_to_shape) if pad_to_shape else None,
        "input": f"{INPUT_NAME}:0 {input_type}",
        "output": f"{OUTPUT_NAME}:0 {output}",
        # The float model's: a QAT model also counts its quantizer ranges.
        "params": int(float_model.inference_model.count_params()),
        "flops": count_flops(plain_graph),
        "saved_model": saved_model_dir,
        "frozen_graph": frozen_path,
        "formats": list(formats_report),
        "dataset_info": info_path,
        "compression": compression_report,
    }
    with tf.io.gfile.GFile(os.path.join(output_dir, INFO_NAME), "w") as f:
      json.dump(info, f, indent=2)
    return info


def _export_file_names():
  return (SAVED_MODEL_DIR, FROZEN_GRAPH_NAME, TFLITE_NAME, ONNX_NAME,
          *COREML_NAMES.values(), REPORT_NAME, INFO_NAME,
          config_util.PIPELINE_CONFIG_NAME, fields.DatasetInfoFields.file_name)


def _remove_export_files(output_dir):
  for name in _export_file_names():
    path = os.path.join(output_dir, name)
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)


@contextlib.contextmanager
def _replacing_export_files(output_dir):
  """Removes an earlier export's files first, and this one's if it fails."""
  _remove_export_files(output_dir)
  try:
    yield
  except BaseException:
    _remove_export_files(output_dir)
    raise


def _palette(pipeline_config, num_classes):
  """Colours for --output colours: the dataset's, else the default ones."""
  for reader in (pipeline_config.train_input_reader,
                 pipeline_config.eval_input_reader):
    path = dataset_info.find(",".join(reader.tf_record_input_path))
    if path:
      info = dataset_info.load(path)
      if info[fields.DatasetInfoFields.num_classes] == num_classes:
        return dataset_info.palette(info)
  return visualization.default_palette(num_classes)


def _run_saved_model(saved_model_dir, images):
  serve = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
  return serve(**{INPUT_NAME: tf.constant(images)})[OUTPUT_NAME].numpy()


def run_frozen_graph(graph_def, images):
  """Runs a frozen graph's inputs:0 -> predictions:0 once."""
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
  with tf.compat.v1.Session(graph=graph) as session:
    return session.run(f"{OUTPUT_NAME}:0", {f"{INPUT_NAME}:0": images})


def report_lines(report):
  """The export report as a table: size, gzip size, ops, agreement."""
  lines = []
  if "fast_labels_agreement_with_exact" in report:
    lines.append("--fast_labels: "
                 f"{100 * report['fast_labels_agreement_with_exact']:.2f}% of "
                 "pixels equal the exact (bilinear logits) labels")
  lines += [f"Agreement with the TF function on one {report['check_input']} "
            f"(output: {report['output']}):",
            "| format | MB | gzip MB | ops | agreement |",
            "|---|---:|---:|---:|---|"]
  for name, entry in report["formats"].items():
    if "max_abs_diff" in entry:
      agreement = (f"max |diff| {entry['max_abs_diff']:.2e}, labels "
                   f"{100 * entry['label_agreement']:.2f}%")
    elif "pixel_agreement" in entry:
      agreement = f"{100 * entry['pixel_agreement']:.2f}% of pixels"
    else:
      agreement = entry.get("agreement", "")
    lines.append(f"| {name} | {entry['bytes'] / 1e6:.2f} | "
                 f"{entry['gzip_bytes'] / 1e6:.2f} | "
                 f"{entry.get('op_count', '')} | {agreement} |")
  return lines
