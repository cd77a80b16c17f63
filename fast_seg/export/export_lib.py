"""Export behind export.py: each requested format written, run and checked.

The exported function takes uint8 images `inputs` [N, H, W, 3] and returns
int32 `predictions` [N, H, W] at the input size: preprocessing, the main head
only (no auxiliary heads) and the upsampling + arg-max are inside, as the TF1
project's frozen_inference_graph.pb was (inference_graph.py builds it;
serving.py names it).

This module runs an export in order: the request checked
(export_request.py), the model loaded and its serving function traced, the
formats written, the reports written (export_report.py). Every format is a
writer in formats.FORMATS: it writes its files from an ExportJob and returns
its export_report.json entry, checked by running the written model on the
job's check image. A new format is one module with a `write(job)` that
registers itself (formats.register) and is imported by export_request.py.

A run trained with train_config.magnitude_pruning exports as a plain model
(its checkpoints hold the pruned weights as zeros); one trained with
quantization_aware_training exports its fake-quant graph, which the TFLite
converter turns into an int8 model. Every export reports the conv kernels'
sparsity and the gzip sizes (export_info.json `compression`).
"""

import contextlib
import dataclasses
import os
import tempfile
from typing import Any, Callable

import numpy as np
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.data import dataset_info
# Aliased: export()'s `formats` argument is the requested names.
from fast_seg.export import formats as export_formats
from fast_seg.export import export_report
# Imports the format modules too: they register their writers on import.
from fast_seg.export import export_request
from fast_seg.export import full_resolution_labels
from fast_seg.export import inference_graph
from fast_seg.export import serving
from fast_seg.export import size_report
from fast_seg.model_optimization import tfmot_lib
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from fast_seg.utils import output_files
from fast_seg.utils import visualization


# export.py's --formats default (fast_seg/commands/export.py reads it here).
DEFAULT_FORMATS = export_request.DEFAULT_FORMATS
# Converted from a SavedModel of their own labels tail where it differs.
_CONVERTED_FORMATS = ("tflite", "onnx")


@dataclasses.dataclass
class ExportJob:
  """One export under way: what every format writer reads.

  Attributes:
    model: the SegmentationModel exported, weights loaded.
    serve: its build_inference_function.
    converted_serves: {format: the function its file is converted from}
      for tflite and onnx: `serve`, or the same with the labels tail that
      runs faster on that runtime (labels_method auto).
    frozen_graph: `serve` frozen, before any folding (GraphDef).
    output_dir: the folder the formats are written to: the export's
      staging folder (output_files.staged_folder).
    input_shape: (N, H, W, 3).
    output: labels, probabilities or colours.
    quantize: the TFLite mode.
    qat: the model is a quantization-aware-trained fake-quant graph.
    calibration: uint8 eval images [1, H, W, 3] that calibrate int8.
    check_input: the images every written format is run on.
    reference: serve(check_input): what every format should return.
    contract: the serving.Contract of the export's interface.
    log: called with progress lines.
  """
  model: Any
  serve: Any
  converted_serves: dict
  frozen_graph: Any
  output_dir: str
  input_shape: tuple
  output: str
  quantize: str
  qat: bool
  calibration: list
  check_input: np.ndarray
  reference: np.ndarray
  contract: Any
  log: Callable[[str], Any]

  @property
  def saved_model_dir(self):
    return os.path.join(self.output_dir, serving.SAVED_MODEL_DIR)

  @property
  def frozen_graph_path(self):
    return os.path.join(self.output_dir, serving.FROZEN_GRAPH_NAME)

  def agreement(self, got):
    """How closely a format's output on check_input matches `reference`."""
    return export_report.agreement(self.reference, got, self.output)

  @contextlib.contextmanager
  def saved_model_for(self, format_name):
    """The SavedModel folder a converter starts from: saved_model/, or one
    of the format's converted_serves in a temporary folder where that
    function differs from `serve`."""
    serve = self.converted_serves.get(format_name, self.serve)
    if serve is self.serve:
      yield self.saved_model_dir
      return
    with tempfile.TemporaryDirectory() as scratch:
      inference_graph.save_saved_model(self.model, serve, scratch)
      yield scratch


def format_names():
  """The --formats choices, in the order they are written."""
  return export_formats.names()


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


def load_model(pipeline_config, trained_checkpoint, random_weights=False):
  """(model to export, float model, technique, checkpoint path or None)."""
  if random_weights and trained_checkpoint:
    raise ValueError(f"--random_weights exports untrained weights, so "
                     f"--trained_checkpoint {trained_checkpoint} would be "
                     "ignored: give one of the two")
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


def eval_images(pipeline_config, size, count):
  """Up to `count` uint8 images [1, H, W, 3] from the eval TFRecords.

  They calibrate int8 quantization and are the agreement check's input; an
  empty list when the config's eval files are not there. Resized to `size`
  (H, W); kept at their own size when `size` is None.
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
    if size is not None:
      image = tf.cast(tf.round(tf.image.resize(image, size)), tf.uint8)
    images.append(image[tf.newaxis].numpy())
  return images


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


def _output_palette(pipeline_config, model):
  """The colours of the model's output ids (a binary model's are 0 / 1)."""
  num_classes = config_util.get_model_config(pipeline_config.model).num_classes
  palette = _palette(pipeline_config, num_classes)
  if model.is_binary:
    # Output ids 0 / 1: background and the (first) foreground class colour.
    foreground = model.binary_output.foreground_ids(model.num_classes)[0]
    palette = np.asarray(palette)[[0, foreground]]
  return palette


# The check image's size when the exported input's is dynamic and no
# --pad_to_shape or eval image gives one: no multiple of 32, on purpose.
DYNAMIC_CHECK_SIZE = (120, 176)
# The check batch when the exported batch is dynamic: more than one image.
DYNAMIC_CHECK_BATCH = 2


def _check_images(pipeline_config, request):
  """(calibration images, check input, whether it is an eval image).

  The check input is the first eval image repeated to the batch (random
  pixels, seeded, when the config's eval data is not there), shaped as the
  exported input: no batch axis for an input of rank 3; for dynamic sizes
  the eval image's own size (or --pad_to_shape) and a batch of two.
  """
  size = tuple(request.input_shape[-3:-1])
  if None in size:
    size = tuple(request.pad_to_shape) if request.pad_to_shape else None
  found = eval_images(pipeline_config, size,
                      max(request.num_calibration_images, 1))
  batch = (1 if len(request.input_shape) == 3
           else request.input_shape[0] or DYNAMIC_CHECK_BATCH)
  if found:
    check = np.concatenate([found[0]] * batch)
  else:
    check = np.random.default_rng(0).integers(
        0, 256, (batch, *(size or DYNAMIC_CHECK_SIZE), 3), dtype=np.uint8)
  if len(request.input_shape) == 3:
    check = check[0]
  calibration = [] if request.flexible_input else found[
      :request.num_calibration_images]
  return calibration, check.astype(request.input_type), bool(found)


def _start_job(request, pipeline_config, model, serve, palette, technique,
               output_dir, log):
  """(ExportJob, whether its check image is an eval image).

  The check image is run through `serve` and the graph frozen here, once,
  for every writer.
  """
  calibration, check_input, from_eval = _check_images(pipeline_config,
                                                      request)
  job = ExportJob(
      model=model, serve=serve,
      converted_serves={
          name: _converted_serving_function(request, model, serve, palette,
                                            name)
          for name in _CONVERTED_FORMATS if name in request.formats},
      frozen_graph=inference_graph.freeze(serve.get_concrete_function()),
      output_dir=output_dir, input_shape=request.input_shape,
      output=request.output, quantize=request.quantize,
      qat=technique == tfmot_lib.QUANTIZATION_AWARE_TRAINING,
      calibration=calibration, check_input=check_input,
      reference=_predictions(serve, check_input),
      contract=request.serving_contract, log=log)
  return job, from_eval


def _predictions(serve, images):
  return serve(tf.constant(images))[serving.OUTPUT_NAME].numpy()


def _serving_function(request, model, palette, labels_method):
  """The requested build_inference_function, traced.

  Traced now, so that a model that cannot be served fails before the
  export folder is touched.
  """
  serve = inference_graph.build_inference_function(
      model, request.input_shape, request.pad_to_shape, output=request.output,
      input_type=request.input_type, palette=palette,
      labels_method=labels_method, contract=request.serving_contract)
  serve.get_concrete_function()
  return serve


def _converted_serving_function(request, model, serve, palette, format_name):
  """`serve`, or its twin with the labels tail of that format's runtime."""
  method = request.labels_method_of(format_name)
  if (request.output == "probabilities"
      or method == request.labels_method_of()):
    return serve
  return _serving_function(request, model, palette, method)


def _flops(request, job, palette):
  """(FLOPs of one run, the input shape they were counted at).

  A graph of dynamic size has no count of its own: it is counted at the
  check input's shape.
  """
  if None not in request.input_shape:
    return inference_graph.count_flops(job.frozen_graph), request.input_shape
  static = dataclasses.replace(request, input_shape=job.check_input.shape)
  serve = _serving_function(static, job.model, palette,
                            request.labels_method_of())
  return (inference_graph.count_flops(inference_graph.freeze(
      serve.get_concrete_function())), static.input_shape)


def _new_report(request, job, from_eval, palette):
  """export_report.new_report; with 'nearest' labels served, the exact ones
  of the check input are computed here, to say how far those are."""
  if (request.labels_method_of() != full_resolution_labels.NEAREST
      or request.output == "probabilities"):
    return export_report.new_report(request, from_eval)
  exact = _serving_function(request, job.model, palette,
                            full_resolution_labels.RESIZE)
  return export_report.new_report(
      request, from_eval,
      nearest_check=(_predictions(exact, job.check_input), job.reference))


def _write_formats(job, requested, report):
  """Every requested format (and the default ones) into report['formats'].

  By rank: the SavedModel first, as the converters read it."""
  for name, writer in export_formats.in_order():
    if name in requested or name in DEFAULT_FORMATS:
      report["formats"].update(writer.write(job))


def _finish(job, report, pipeline_config, technique):
  """pipeline.config, dataset_info.json, the reports; (compression, info path)."""
  config_util.save_pipeline_config(pipeline_config, job.output_dir)
  info_path = copy_dataset_info(pipeline_config, job.output_dir)
  compression = size_report.compression_report(
      job.model.inference_model, technique, job.frozen_graph_path,
      tf.io.gfile.glob(os.path.join(job.saved_model_dir, "variables",
                                    "variables.data-*")))
  job.log(size_report.format_report(compression))
  export_report.write_report(report, job.output_dir, job.log)
  return compression, info_path


def export(pipeline_config, trained_checkpoint, output_dir, input_shape,
           pad_to_shape=None, formats=DEFAULT_FORMATS, quantize="none",
           output="labels", input_type="uint8", random_weights=False,
           num_calibration_images=100,
           labels_method=full_resolution_labels.AUTO, contract="fast_seg",
           labels_dtype=None, log=print):
  """Writes the requested formats, each checked by running it.

  saved_model/ (the other converters start from it) and
  frozen_inference_graph.pb (batch norms and constants folded) are always
  written; model.tflite, model.onnx, model.mlpackage / model.mlmodel on
  request. Also pipeline.config, dataset_info.json (when the data has one),
  export_info.json and export_report.json (per format: size, gzip size, op
  count, agreement with the TF function on a check image).

  Args:
    pipeline_config: pipeline_pb2.PipelineConfig.
    trained_checkpoint: a checkpoint prefix or train dir; None if random.
    output_dir: destination folder.
    input_shape: (N, H, W, 3) of the exported input, or (H, W, 3); None
      for a dynamic size (saved_model, frozen_graph and onnx only).
    pad_to_shape, formats: (H, W), see build_inference_function; names
      from format_names().
    quantize: TFLite weights: none, float16, dynamic or int8.
    output, input_type: labels, probabilities or colours; uint8 or float32.
    random_weights: export an untrained model (for on-device speed tests).
    num_calibration_images: eval images that calibrate int8.
    labels_method: 'auto' (per format, the exact method measured faster on
      its runtime: full_resolution_labels.AUTO_METHODS) or one of METHODS.
    contract: a name in serving.CONTRACTS: the interface apps expect.
    labels_dtype: a serving.LABELS_DTYPES name instead of the contract's.
    log: called with progress lines.

  Returns:
    The export_info dict (also export_info.json).
  """
  request = export_request.ExportRequest(
      input_shape, pad_to_shape, formats, quantize, output, input_type,
      random_weights, num_calibration_images, labels_method, contract,
      labels_dtype)
  request.check()
  model, float_model, technique, checkpoint_path = load_model(
      pipeline_config, trained_checkpoint, random_weights)
  request.check_num_classes(model.output_num_classes)
  palette = _output_palette(pipeline_config, model)
  serve = _serving_function(request, model, palette, request.labels_method_of())
  # A failed export leaves an earlier one as it was (staged_folder).
  tf.io.gfile.makedirs(output_dir)
  with output_files.staged_folder(output_dir, _export_file_names(),
                                  serving.REPORT_NAME) as staging:
    job, from_eval = _start_job(request, pipeline_config, model, serve,
                                palette, technique, staging, log)
    report = _new_report(request, job, from_eval, palette)
    _write_formats(job, request.formats, report)
    compression, info_path = _finish(job, report, pipeline_config, technique)
    info = export_report.export_info(
        request, job, float_model, checkpoint_path, report, compression,
        info_path, _flops(request, job, palette), output_dir)
    export_report.write_json(info, os.path.join(staging, serving.INFO_NAME))
  return info


def _export_file_names():
  return (*(name for _, writer in export_formats.in_order()
            for name in writer.file_names),
          serving.REPORT_NAME, serving.INFO_NAME,
          config_util.PIPELINE_CONFIG_NAME, fields.DatasetInfoFields.file_name)
