"""Name map from fast_seg's DeepLabV3+ layers to the `.h5` of the Keras
DeepLabV3+ project (tonandr/ai-platform, tasks/computer-vision/
semantic-segmentation/deeplabv3plus_keras; `semantic_segmentation_deeplabv3plus.h5`,
written by its train() with `model.save(..., save_format='h5')`).

Provenance: the names below are those its semantic_segmentation.py
(`SemanticSegmentation._make_encoder` / `_make_decoder`) gives, read from an
.h5 its own code wrote (tests/data/deeplabv3plus_keras/README.md). Only the
naming scheme is reproduced, as facts needed to read those files; no code or
weights are copied.

Its model holds two nested models, so every weight is under one of them:
`encoder` (the Keras-applications MobileNetV2 cut at `block_5_add`, whose
layer names it keeps, then its encoder_middle_conf ops and the 1x1 conv on
their concatenation) and `decoder` (the 3x3 classifier). Its own layers are
unnamed, so Keras numbers them per class in creation order; the map names
them as a fresh process does (keras_layer_numbering moves them onto a file's
own numbers): `separable_conv2d`, `separable_conv2d_1`, ...; `conv2d`,
`conv2d_1`, ...; `batch_normalization`, `batch_normalization_1`, .... Each
3x3 op creates a SeparableConv2D (`depthwise_kernel`, `pointwise_kernel`), a
batch norm, a 1x1 Conv2D and a batch norm; a 1x1 op a Conv2D and a batch
norm; then the concatenation's Conv2D and batch norm; then the decoder's
Conv2D. No conv has a bias.
"""

from third_party import keras_applications_h5

# The layer classes Keras numbers in its head (third_party/keras_layer_numbering).
NUMBERED_LAYERS = ("separable_conv2d", "conv2d", "batch_normalization")
ENCODER = "encoder/"
DECODER = "decoder/"
_PREFIX = "deeplab_dpc_"


def _keras_name(prefix, number):
  """Keras' automatic layer name: 'conv2d', then 'conv2d_1', ..."""
  return prefix if number == 0 else f"{prefix}_{number}"


class _Counter:
  """Hands out the next Keras automatic name of each layer class."""

  def __init__(self):
    self._next = {}

  def take(self, prefix):
    number = self._next.get(prefix, 0)
    self._next[prefix] = number + 1
    return _keras_name(prefix, number)


def _head_layers(op_kernels):
  """{fast_seg layer: (file layer, {fast_seg kind: file kind})} of the head.

  `op_kernels`: the kernel size of each encoder_middle_conf op, in order.
  """
  names = _Counter()
  same = {}
  table = {}

  def conv_bn(ours):
    table[ours] = (ENCODER + names.take("conv2d"), same)
    table[ours + "_bn"] = (ENCODER + names.take("batch_normalization"), same)

  for i, kernel in enumerate(op_kernels):
    op = f"{_PREFIX}op{i}"
    if kernel == 1:
      conv_bn(op)
      continue
    separable = ENCODER + names.take("separable_conv2d")
    table[op + "_depthwise"] = (separable, same)
    table[op + "_pointwise"] = (separable, {"kernel": "pointwise_kernel"})
    table[op + "_pointwise_bn"] = (
        ENCODER + names.take("batch_normalization"), same)
    conv_bn(op + "_conv1x1")
  conv_bn(_PREFIX + "projection")
  table["deeplab_v3_plus_classifier"] = (DECODER + names.take("conv2d"), same)
  return table


def deeplab_v3_plus(op_kernels):
  """The name map of a model with these encoder_middle_conf ops.

  Args:
    op_kernels: kernel size (1 or 3) of each op, in the file's order.

  Returns:
    A map (fast_seg layer name, weight kind) -> the file's flat weight name,
    e.g. 'deeplab_dpc_op1_pointwise', 'kernel' ->
    'encoder/separable_conv2d_1/pointwise_kernel' and
    'mobilenet_v2_expanded_conv_3_expand_bn', 'gamma' ->
    'encoder/block_3_expand_BN/gamma'; it raises KeyError for a layer it
    does not know.
  """
  head = _head_layers(tuple(op_kernels))

  def name_map(layer_name, kind):
    if layer_name.startswith("mobilenet_v2_"):
      weight = keras_applications_h5.mobilenet_v2(layer_name, kind)
      return f"{ENCODER}{weight.layer}/{kind}"
    if layer_name not in head:
      raise KeyError(f"no Keras DeepLabV3+ weight for layer '{layer_name}'")
    layer, kinds = head[layer_name]
    return f"{layer}/{kinds.get(kind, kind)}"
  return name_map
