"""The served function and the graphs made from it: build, freeze, run.

build_inference_function is the image -> segmentation function that every
export format wraps; the rest turns it into a SavedModel or a frozen,
folded GraphDef, counts its FLOPs and runs those files back, so export,
compression and the benchmark measure one and the same graph.
"""

import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.framework import convert_to_constants
from tensorflow.python.grappler import tf_optimizer
from tensorflow.python.tools import optimize_for_inference_lib

from fast_seg.core import standard_fields as fields
from fast_seg.export import serving

# Mean grey, the value random_crop pads training images with.
PAD_VALUE = 127.5


def _check_inference_args(input_shape, pad_to_shape, output, input_type,
                          palette):
  """ValueErrors naming export.py's flags, before anything is traced."""
  if len(input_shape) != 4 or input_shape[-1] != 3:
    raise ValueError(f"--input_shape must be N,H,W,3, got {input_shape}")
  if output not in serving.OUTPUT_KINDS:
    raise ValueError(f"--output must be one of "
                     f"{', '.join(serving.OUTPUT_KINDS)}, got '{output}'")
  if input_type not in serving.INPUT_TYPES:
    raise ValueError(f"--input_type must be one of "
                     f"{', '.join(serving.INPUT_TYPES)}, got '{input_type}'")
  if output == "colours" and palette is None:
    raise ValueError("--output colours needs a palette")
  height, width = input_shape[1:3]
  if pad_to_shape and (pad_to_shape[0] < height or pad_to_shape[1] < width):
    raise ValueError(f"--pad_to_shape {pad_to_shape} is smaller than the input "
                     f"size {(height, width)}")


def _pad(images, pad_to_shape):
  """Pads [N, H, W, 3] at the bottom and right to pad_to_shape with grey."""
  height, width = images.shape[1:3]
  return tf.pad(images - PAD_VALUE,
                [[0, 0], [0, pad_to_shape[0] - height],
                 [0, pad_to_shape[1] - width], [0, 0]]) + PAD_VALUE


def _fast_labels(model, logits, size):
  """Labels arg-maxed at the logits' resolution, upsampled to `size`."""
  # Same static size: postprocess's resize is skipped.
  low = model.postprocess(logits, logits.shape[1:3])[
      fields.PredictionFields.labels]
  # float32: TFLite's nearest resize has no integer kernels; ids are exact
  # in float32.
  labels = tf.image.resize(tf.cast(low, tf.float32)[..., None], size,
                           method="nearest")
  # Rounded: an int8 TFLite model quantizes this float map too.
  return {fields.PredictionFields.labels: tf.cast(tf.round(labels[..., 0]),
                                                  tf.int32)}


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
  _check_inference_args(input_shape, pad_to_shape, output, input_type, palette)
  height, width = input_shape[1:3]
  colours = (tf.constant(palette, tf.uint8) if output == "colours" else None)
  probabilities = output == "probabilities"

  @tf.function(input_signature=[tf.TensorSpec(
      input_shape, tf.as_dtype(input_type), name=serving.INPUT_NAME)])
  def serve(inputs):
    images = tf.cast(inputs, tf.float32)
    if pad_to_shape:
      images = _pad(images, pad_to_shape)
    logits = model.predict(model.preprocess(images))[
        fields.PredictionFields.logits]
    if fast_labels and not probabilities:
      result = _fast_labels(model, logits, images.shape[1:3])
    else:
      result = model.postprocess(logits, images.shape[1:3],
                                 with_probabilities=probabilities)
    kind = (fields.PredictionFields.probabilities if probabilities
            else fields.PredictionFields.labels)
    value = result[kind][:, :height, :width]
    if colours is not None:
      value = tf.gather(colours, value)
    return {serving.OUTPUT_NAME: tf.identity(value, name=serving.OUTPUT_NAME)}

  return serve


def with_xla(serve):
  """`serve` compiled with XLA (jit_compile), same input signature."""
  return tf.function(serve.python_function,
                     input_signature=serve.input_signature, jit_compile=True)


def freeze(concrete_function):
  """Inlines the variables of a concrete function as constants -> GraphDef."""
  frozen = convert_to_constants.convert_variables_to_constants_v2(
      concrete_function)
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
      _grappler(graph_def, [serving.OUTPUT_NAME]))
  return _grappler(folded, [serving.OUTPUT_NAME])


def count_flops(graph_def):
  """Floating-point operations of one run of a frozen graph (multiply-add = 2)."""
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph, options=options)
  return int(profile.total_float_ops)


def save_saved_model(model, serve, saved_model_dir):
  """Writes `serve` as a SavedModel whose serving signature is its only API.

  The variables are tracked, not the Keras model: saving a Keras model
  traces every layer again (slow, and fragile with tfmot wrappers).
  """
  module = tf.Module()
  module.model_variables = list(model.inference_model.variables)
  module.serve = serve
  tf.saved_model.save(
      module, saved_model_dir,
      signatures={serving.SIGNATURE_KEY: serve.get_concrete_function()})


def load_saved_model(saved_model_dir):
  """The serving signature of a SavedModel: call it with inputs=..."""
  return tf.saved_model.load(saved_model_dir).signatures[serving.SIGNATURE_KEY]


def run_saved_model(saved_model_dir, images):
  """Loads a SavedModel and runs its `inputs` -> `predictions` once."""
  serve = load_saved_model(saved_model_dir)
  return serve(**{serving.INPUT_NAME: tf.constant(images)})[
      serving.OUTPUT_NAME].numpy()


def frozen_graph_runner(graph_def):
  """(run, close): run(images) feeds `inputs:0` and returns `predictions:0`.

  One TF1 Session, kept open for many runs (the benchmark times them);
  close() ends it.
  """
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
  session = tf.compat.v1.Session(graph=graph)

  def run(images):
    return session.run(serving.OUTPUT_TENSOR, {serving.INPUT_TENSOR: images})

  return run, session.close


def run_frozen_graph(graph_def, images):
  """Runs a frozen graph's inputs:0 -> predictions:0 once."""
  run, close = frozen_graph_runner(graph_def)
  try:
    return run(images)
  finally:
    close()
