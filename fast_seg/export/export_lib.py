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

import json
import os

import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # pylint: disable=g-direct-tensorflow-import

from fast_seg.builders import model_builder
from fast_seg.compression import tfmot_lib
from fast_seg.core import standard_fields as fields
from fast_seg.data import dataset_info
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util

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


def build_inference_function(model, input_shape, pad_to_shape=None):
  """The uint8 -> int32 label-map function that every export format wraps.

  Args:
    model: a SegmentationModel with weights loaded.
    input_shape: (N, H, W, 3).
    pad_to_shape: optional (H', W') >= (H, W): the image is padded with mean
      grey to this size before the network and the labels cropped back, so a
      network trained at H' x W' can serve other sizes with static shapes.

  Returns:
    A tf.function with a fixed input signature named `inputs`, returning
    {'predictions': labels}; the label op is named `predictions` too, so the
    frozen graph has `inputs:0` and `predictions:0`.
  """
  if input_shape[-1] != 3:
    raise ValueError(f"--input_shape must end in 3 channels, got {input_shape}")
  height, width = input_shape[1:3]
  if pad_to_shape and (pad_to_shape[0] < height or pad_to_shape[1] < width):
    raise ValueError(f"--pad_to_shape {pad_to_shape} is smaller than the input "
                     f"size {(height, width)}")

  @tf.function(input_signature=[
      tf.TensorSpec(input_shape, tf.uint8, name=INPUT_NAME)])
  def serve(inputs):
    images = tf.cast(inputs, tf.float32)
    if pad_to_shape:
      images = tf.pad(images - PAD_VALUE,
                      [[0, 0], [0, pad_to_shape[0] - height],
                       [0, pad_to_shape[1] - width], [0, 0]]) + PAD_VALUE
    logits = model.predict(model.preprocess(images))[fields.PredictionFields.logits]
    labels = model.postprocess(logits, images.shape[1:3])[
        fields.PredictionFields.labels]
    return {OUTPUT_NAME: tf.identity(labels[:, :height, :width], name=OUTPUT_NAME)}

  return serve


def freeze(concrete_function):
  """Inlines the variables of a concrete function as constants -> GraphDef."""
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete_function)
  return frozen.graph.as_graph_def()


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


def export(pipeline_config, trained_checkpoint, output_dir, input_shape,
           pad_to_shape=None):
  """Writes saved_model/, frozen_inference_graph.pb and pipeline.config.

  Also copies the training data's dataset_info.json, when it has one, and
  prints the compression report (tfmot_lib.format_report).

  Args:
    pipeline_config: pipeline_pb2.PipelineConfig.
    trained_checkpoint: checkpoint prefix or a train dir (its latest).
    output_dir: destination folder.
    input_shape: (N, H, W, 3) of the exported input.
    pad_to_shape: optional (H, W), see build_inference_function.

  Returns:
    dict with params, flops, the written paths and the compression report
    (also export_info.json).
  """
  checkpoint_path = checkpoint_util.resolve_checkpoint(trained_checkpoint)
  model = float_model = model_builder.build(pipeline_config.model)
  technique = tfmot_lib.configured_technique(pipeline_config.train_config)
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
  serve = build_inference_function(model, input_shape, pad_to_shape)
  concrete = serve.get_concrete_function()

  tf.io.gfile.makedirs(output_dir)
  saved_model_dir = os.path.join(output_dir, SAVED_MODEL_DIR)
  module = tf.Module()
  # The variables, not the Keras model: saving a Keras model traces every
  # layer again (slow, and fragile with tfmot wrappers); serve is the API.
  module.model_variables = list(model.inference_model.variables)
  module.serve = serve
  tf.saved_model.save(module, saved_model_dir,
                      signatures={"serving_default": concrete})

  graph_def = freeze(concrete)
  frozen_path = os.path.join(output_dir, FROZEN_GRAPH_NAME)
  with tf.io.gfile.GFile(frozen_path, "wb") as f:
    f.write(graph_def.SerializeToString())
  config_util.save_pipeline_config(pipeline_config, output_dir)
  info_path = copy_dataset_info(pipeline_config, output_dir)
  report = tfmot_lib.compression_report(
      model.inference_model, technique, frozen_path,
      tf.io.gfile.glob(os.path.join(saved_model_dir, "variables",
                                    "variables.data-*")))
  print(tfmot_lib.format_report(report), flush=True)

  info = {
      "checkpoint": checkpoint_path,
      "input_shape": list(input_shape),
      "pad_to_shape": list(pad_to_shape) if pad_to_shape else None,
      "input": f"{INPUT_NAME}:0 uint8",
      "output": f"{OUTPUT_NAME}:0 int32",
      # The float model's: a QAT model also counts its quantizer ranges.
      "params": int(float_model.inference_model.count_params()),
      "flops": count_flops(graph_def),
      "saved_model": saved_model_dir,
      "frozen_graph": frozen_path,
      "dataset_info": info_path,
      "compression": report,
  }
  with tf.io.gfile.GFile(os.path.join(output_dir, "export_info.json"), "w") as f:
    json.dump(info, f, indent=2)
  return info
