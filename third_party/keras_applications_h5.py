"""Name maps from fast_seg backbone layers to Keras-applications .h5 files.

Provenance: the layer and weight names below are those of the ImageNet weight
files distributed for Keras applications (ResNet50 and MobileNetV2, e.g.
`resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`,
`mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5`). Only the
naming scheme is reproduced, as facts needed to read those files; no code or
weights are copied.

Each map is a function (keras_layer_name, weight_kind) -> H5Weight. The
Keras-applications ResNet50 convs carry a bias while ours do not (a batch norm
follows each of them); BN(Wx + b) with moving mean m equals BN(Wx) with moving
mean m - b, so the map asks for the conv bias to be subtracted from the
following batch norm's moving mean (`minus`).

Each backbone names the maps it uses where it registers itself
(fast_seg/feature_extractors/base.register); nothing here lists backbones.

Note: Keras-applications ResNet50 puts each block's stride on its first unit,
slim on its last; weight shapes agree unit by unit, so the weights load, but
features differ slightly from the Keras model. Prefer the slim checkpoint for
ResNet when both are available.
"""

import collections
import re

# One weight in an .h5 file: group `layer`, weight `weight` (e.g. 'kernel:0').
# `minus`, when set, is a (layer, weight) pair whose value is subtracted from
# this one if the file has it (the folded conv bias).
H5Weight = collections.namedtuple("H5Weight", ["layer", "weight", "minus"])

_KINDS = ("kernel", "depthwise_kernel", "bias", "gamma", "beta",
          "moving_mean", "moving_variance")

_RESNET_STEM = re.compile(r"^resnet_v1_50_conv1(_bn)?$")
_RESNET_UNIT = re.compile(
    r"^resnet_v1_50_block(\d)_unit_(\d+)_(conv1|conv2|conv3|shortcut)(_bn)?$")
# Our bottleneck convs -> the digit Keras uses in `conv{s}_block{u}_{i}_conv`.
_RESNET_CONV_INDEX = {"shortcut": 0, "conv1": 1, "conv2": 2, "conv3": 3}

# Conv (the stem, Keras' Conv1) and Conv_1 (the 1x1 conv to 1280 after the
# last unit, Keras' Conv_1 / Conv_1_bn).
_MOBILENET_STEM = re.compile(r"^mobilenet_v2_(Conv|Conv_1)(_bn)?$")
_MOBILENET_KERAS_CONV = {"Conv": ("Conv1", "bn_Conv1"),
                         "Conv_1": ("Conv_1", "Conv_1_bn")}
_MOBILENET_UNIT = re.compile(
    r"^mobilenet_v2_expanded_conv(?:_(\d+))?_(expand|depthwise|project)(_bn)?$")


def _weight(kind):
  if kind not in _KINDS:
    raise KeyError(f"unknown weight kind '{kind}'")
  return kind + ":0"


def _with_bias_fold(conv_layer, bn_layer, is_bn, kind):
  """H5Weight for a conv-with-bias + BN pair whose bias folds into the BN."""
  if not is_bn:
    return H5Weight(conv_layer, _weight(kind), None)
  minus = (conv_layer, "bias:0") if kind == "moving_mean" else None
  return H5Weight(bn_layer, _weight(kind), minus)


def resnet50(layer_name, kind):
  """Keras-applications ResNet50 weight for `kind` of our ResNetV1_50 layer.

  Args:
    layer_name: e.g. 'resnet_v1_50_block2_unit_1_shortcut_bn'.
    kind: e.g. 'moving_mean'.

  Returns:
    H5Weight, e.g. ('conv3_block1_0_bn', 'moving_mean:0',
    ('conv3_block1_0_conv', 'bias:0')).

  Raises:
    KeyError: the layer or kind has no counterpart in the file.
  """
  match = _RESNET_STEM.match(layer_name)
  if match:
    return _with_bias_fold("conv1_conv", "conv1_bn", bool(match.group(1)),
                           kind)
  match = _RESNET_UNIT.match(layer_name)
  if match:
    block, unit, conv, bn = match.groups()
    # Keras counts conv1 (the stem) as stage 1, so our block b is stage b+1.
    base = f"conv{int(block) + 1}_block{unit}_{_RESNET_CONV_INDEX[conv]}"
    return _with_bias_fold(base + "_conv", base + "_bn", bool(bn), kind)
  raise KeyError(f"no Keras ResNet50 weight for layer '{layer_name}'")


def mobilenet_v2(layer_name, kind):
  """Keras-applications MobileNetV2 weight for `kind` of our MobileNetV2 layer.

  Args:
    layer_name: e.g. 'mobilenet_v2_expanded_conv_3_depthwise_bn'.
    kind: e.g. 'gamma'.

  Returns:
    H5Weight, e.g. ('block_3_depthwise_BN', 'gamma:0', None).

  Raises:
    KeyError: the layer or kind has no counterpart in the file.
  """
  match = _MOBILENET_STEM.match(layer_name)
  if match:
    conv, bn = _MOBILENET_KERAS_CONV[match.group(1)]
    return H5Weight(bn if match.group(2) else conv, _weight(kind), None)
  match = _MOBILENET_UNIT.match(layer_name)
  if match:
    index, op, bn = match.groups()
    unit = "expanded_conv" if index is None else f"block_{index}"
    layer = f"{unit}_{op}" + ("_BN" if bn else "")
    return H5Weight(layer, _weight(kind), None)
  raise KeyError(f"no Keras MobileNetV2 weight for layer '{layer_name}'")
