"""The served function and the graphs made from it: build, freeze, run.

build_inference_function is the image -> segmentation function that every
export format wraps; the rest turns it into a SavedModel or a frozen,
folded GraphDef, counts its FLOPs and runs those files back, so export,
compression and the benchmark measure one and the same graph.
"""

import collections
import contextlib
import copy
import io

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import rewriter_config_pb2
from tensorflow.python.framework import convert_to_constants
from tensorflow.python.grappler import tf_optimizer
from tensorflow.python.tools import optimize_for_inference_lib

from fast_seg.core import standard_fields as fields
from fast_seg.export import full_resolution_labels
from fast_seg.export import serving

def _check_inference_args(input_shape, pad_to_shape, output, input_type,
                          palette):
  """ValueErrors naming export.py's flags, before anything is traced."""
  if len(input_shape) not in (3, 4) or input_shape[-1] != 3:
    raise ValueError(f"--input_shape must be N,H,W,3 or H,W,3, got {input_shape}")
  if output not in serving.OUTPUT_KINDS:
    raise ValueError(f"--output must be one of "
                     f"{', '.join(serving.OUTPUT_KINDS)}, got '{output}'")
  if input_type not in serving.INPUT_TYPES:
    raise ValueError(f"--input_type must be one of "
                     f"{', '.join(serving.INPUT_TYPES)}, got '{input_type}'")
  if output == "colours" and palette is None:
    raise ValueError("--output colours needs a palette")
  height, width = input_shape[-3:-1]
  if pad_to_shape and ((height or 0) > pad_to_shape[0]
                       or (width or 0) > pad_to_shape[1]):
    raise ValueError(f"--pad_to_shape {pad_to_shape} is smaller than the input "
                     f"size {(height, width)}")


def _size(images):
  """(H, W) of [N, H, W, C]: Python ints where static, else a tensor."""
  if images.shape[1:3].is_fully_defined():
    return tuple(images.shape[1:3])
  return tf.shape(images)[1:3]


def _pad(images, pad_to_shape, value):
  """Pads [N, H, W, 3] at the bottom and right to pad_to_shape with `value`.

  The padded size is static even when H and W are not, so the network runs
  at one known size; an image larger than pad_to_shape fails here.
  """
  size = tf.shape(images)[1:3]
  check = tf.debugging.assert_less_equal(
      size, tf.constant(pad_to_shape, tf.int32),
      message=f"the image is larger than --pad_to_shape {pad_to_shape}")
  # A data dependency: a frozen, pruned graph keeps the check.
  with tf.control_dependencies([check]):
    size = tf.identity(size)
  padded = tf.pad(images - value,
                  [[0, 0], [0, pad_to_shape[0] - size[0]],
                   [0, pad_to_shape[1] - size[1]], [0, 0]]) + value
  return tf.ensure_shape(padded, [images.shape[0], *pad_to_shape, 3])


def build_inference_function(model, input_shape, pad_to_shape=None,
                             output="labels", input_type="uint8",
                             palette=None,
                             labels_method=full_resolution_labels.RESIZE,
                             contract=serving.CONTRACTS["fast_seg"]):
  """The image -> segmentation function that every export format wraps.

  Preprocessing, the main head only and the resize to the input size are
  inside, so a device feeds raw pixels and reads the answer.

  Args:
    model: a SegmentationModel with weights loaded.
    input_shape: (N, H, W, 3), or (H, W, 3) for one image without a batch
      axis (the TF1 project's option); None where the size is dynamic.
    pad_to_shape: optional (H', W') >= (H, W): the image is padded to this
      size (with contract.pad_value) before the network and the output
      cropped back, so a network trained at H' x W' serves other sizes at
      one static size.
    output: 'labels' (int32 [N, H, W]), 'probabilities' (float32
      [N, H, W, C], softmax; binary models: the sigmoid map [N, H, W, 1]) or
      'colours' (uint8 [N, H, W, 3] from `palette`).
    input_type, palette: 'uint8' or 'float32' pixels (0..255 either way);
      [C, 3] uint8 colours, for output 'colours'.
    labels_method: a full_resolution_labels.METHODS name: 'resize' (exact;
      every converter takes it), 'boundary' (exact; cheaper in TensorFlow
      and float LiteRT) or 'nearest' (approximate).
    contract: a serving.Contract: the labels' dtype and shape, the padding.

  Returns:
    A tf.function with a fixed input signature named `inputs`, returning
    {'predictions': ...}; the output op is named `predictions` too, so the
    frozen graph has `inputs:0` and `predictions:0`.
  """
  _check_inference_args(input_shape, pad_to_shape, output, input_type, palette)
  colours = (tf.constant(palette, tf.uint8) if output == "colours" else None)
  probabilities = output == "probabilities"

  @tf.function(input_signature=[tf.TensorSpec(
      input_shape, tf.as_dtype(input_type), name=serving.INPUT_NAME)])
  def serve(inputs):
    images = tf.cast(inputs, tf.float32)
    if len(input_shape) == 3:
      images = images[tf.newaxis]
    size = _size(images)
    if pad_to_shape:
      images = _pad(images, pad_to_shape, contract.pad_value)
    logits = model.predict(model.preprocess(images))[
        fields.PredictionFields.logits]
    if probabilities:
      value = model.postprocess(logits, _size(images), with_probabilities=True)[
          fields.PredictionFields.probabilities]
    else:
      value = full_resolution_labels.labels(model, logits, _size(images),
                                            labels_method)
    value = _served_value(value, size, colours, contract)
    return {serving.OUTPUT_NAME: tf.identity(value, name=serving.OUTPUT_NAME)}

  return serve


def _served_value(value, size, colours, contract):
  """The output cropped to `size` (the unpadded input): labels as colours, or
  in the contract's dtype and shape; probabilities as they are."""
  value = value[:, :size[0], :size[1]]
  if value.dtype.is_floating:  # Probabilities.
    return value
  if colours is not None:
    return tf.gather(colours, value)
  value = tf.cast(value, tf.as_dtype(contract.labels_dtype))
  return value[..., tf.newaxis] if contract.labels_channel else value


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
  """Folds every batch norm into its conv, and constants into constants.

  Grappler first (it turns the variables' Identity reads into the Const
  inputs the batch-norm folding looks for), then TensorFlow's folding of
  conv -> BN, then ours of the dilated conv -> BatchToSpaceND -> BN that it
  skips, then Grappler again.
  """
  folded = optimize_for_inference_lib.fold_batch_norms(
      _grappler(graph_def, [serving.OUTPUT_NAME]))
  return _grappler(fold_dilated_batch_norms(folded), [serving.OUTPUT_NAME])


_BATCH_NORMS = ("FusedBatchNorm", "FusedBatchNormV3")
_CONVS = ("Conv2D", "DepthwiseConv2dNative")


def batch_norms(graph_def):
  """The names of the graph's batch-norm ops, of any of TensorFlow's kinds:
  none once every one is folded into its conv."""
  return [node.name for node in graph_def.node if "BatchNorm" in node.op]


def _dilated_conv_batch_norms(graph_def):
  """(BN, conv, filter Const) of every inference batch norm that follows a
  dilated conv: conv -> BatchToSpaceND -> BN, the filter a Const used once."""
  nodes = {node.name: node for node in graph_def.node}
  inputs = [name.lstrip("^") for node in graph_def.node for name in node.input]
  uses = collections.Counter(name.split(":")[0] for name in inputs)
  # A BN whose mean / variance outputs are read cannot become a BiasAdd.
  side_outputs = {name.split(":")[0] for name in inputs
                  if name.split(":")[-1] not in (name, "0")}
  source = lambda node, i: nodes.get(node.input[i].split(":")[0])
  found = []
  for node in graph_def.node:
    if (node.op not in _BATCH_NORMS or node.attr["is_training"].b
        or node.name in side_outputs):
      continue
    batch_to_space = source(node, 0)
    if batch_to_space is None or batch_to_space.op != "BatchToSpaceND":
      continue
    conv = source(batch_to_space, 0)
    if conv is None or conv.op not in _CONVS or uses[conv.name] != 1:
      continue
    weights = source(conv, 1)
    if (weights is not None and weights.op == "Const"
        and uses[weights.name] == 1
        and all(source(node, i).op == "Const" for i in range(1, 5))):
      found.append((node, conv, weights))
  return found, nodes


def fold_dilated_batch_norms(graph_def):
  """Folds the batch norms that follow dilated convs into those convs.

  Keras runs a dilated conv as SpaceToBatchND -> Conv2D -> BatchToSpaceND,
  so TensorFlow's folding, which wants the conv right before the BN, leaves
  these (every dilated block of ICNet's and PSPNet's deep stages). The BN
  is per channel and BatchToSpaceND only moves pixels, so the BN's scale
  goes into the conv's filter and its offset becomes a BiasAdd, named as
  the BN was so that its consumers are unchanged.

  Returns:
    A new GraphDef; `graph_def` is left as it is.
  """
  graph_def = copy.deepcopy(graph_def)
  found, nodes = _dilated_conv_batch_norms(graph_def)
  value = lambda node, i: tf.make_ndarray(
      nodes[node.input[i].split(":")[0]].attr["value"].tensor)
  for norm, conv, weights in found:
    gamma, beta, mean, variance = (value(norm, i) for i in range(1, 5))
    scale = gamma / np.sqrt(variance + norm.attr["epsilon"].f)
    kernel = tf.make_ndarray(weights.attr["value"].tensor)
    # Output channels: Conv2D's last filter axis; a depthwise conv's are
    # in_channels x multiplier, its last two axes.
    kernel = kernel * scale.reshape(kernel.shape[2:] if conv.op == _CONVS[1]
                                    else kernel.shape[3:])
    weights.attr["value"].tensor.CopyFrom(
        tf.make_tensor_proto(kernel.astype(np.float32)))
    offset = graph_def.node.add(name=f"{norm.name}/folded_offset", op="Const")
    offset.attr["dtype"].type = tf.float32.as_datatype_enum
    offset.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(
        (beta - mean * scale).astype(np.float32)))
    name, inputs = norm.name, [norm.input[0], offset.name]
    norm.Clear()
    norm.name, norm.op = name, "BiasAdd"
    norm.input.extend(inputs)
    norm.attr["T"].type = tf.float32.as_datatype_enum
  return graph_def


def count_flops(graph_def):
  """Floating-point operations of one run of a frozen graph (multiply-add = 2).

  Ops whose size depends on the data (the few cells the 'boundary' labels
  tail interpolates) have no static count and are left out, silently: the
  profiler's stderr line about them would read as a fault.
  """
  graph = tf.Graph()
  with graph.as_default():
    tf.graph_util.import_graph_def(graph_def, name="")
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    with contextlib.redirect_stderr(io.StringIO()):
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
