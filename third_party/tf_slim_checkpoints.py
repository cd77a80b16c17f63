"""Name maps from fast_seg backbone layers to tf-slim model-zoo checkpoints.

Provenance: the variable names below are those of the ImageNet checkpoints
published in the tf-slim model zoo (tensorflow/models, research/slim):
`resnet_v1_50.ckpt`, `mobilenet_v1_1.0_224.ckpt` and
`mobilenet_v2_1.0_224.ckpt` (other depth multipliers use the same names). Only
the naming scheme is reproduced, as facts needed to read those files; no code
or weights are copied.

Each map is a function (keras_layer_name, weight_kind) -> checkpoint variable
name, where weight_kind is one of WEIGHT_KINDS. It raises KeyError for a layer
it does not know, so a backbone change that the map misses fails loudly.
Each backbone names the maps it uses where it registers itself
(fast_seg/feature_extractors/base.register); nothing here lists backbones.
"""

import re

# Our weight kinds (Keras attribute names) -> slim variable suffixes.
_SLIM_SUFFIX = {
    "kernel": "weights",
    "depthwise_kernel": "depthwise_weights",
    "bias": "biases",
    "gamma": "BatchNorm/gamma",
    "beta": "BatchNorm/beta",
    "moving_mean": "BatchNorm/moving_mean",
    "moving_variance": "BatchNorm/moving_variance",
}

WEIGHT_KINDS = tuple(_SLIM_SUFFIX)

_RESNET_STEM = re.compile(r"^resnet_v1_50_conv1(_bn)?$")
_RESNET_UNIT = re.compile(
    r"^resnet_v1_50_block(\d)_unit_(\d+)_(conv1|conv2|conv3|shortcut)(_bn)?$")
_MOBILENET_V1 = re.compile(
    r"^mobilenet_v1_(Conv2d_0|Conv2d_\d+_(?:depthwise|pointwise))(_bn)?$")
# Conv (the stem) and Conv_1 (the 1x1 conv to 1280 after the last unit).
_MOBILENET_STEM = re.compile(r"^mobilenet_v2_(Conv|Conv_1)(_bn)?$")
_MOBILENET_UNIT = re.compile(
    r"^mobilenet_v2_(expanded_conv(?:_\d+)?)_(expand|depthwise|project)(_bn)?$")


def slim_suffix(kind):
  """slim's variable suffix of a Keras weight kind: 'gamma' ->
  'BatchNorm/gamma' (the scope of the conv it follows comes first)."""
  if kind not in _SLIM_SUFFIX:
    raise KeyError(f"unknown weight kind '{kind}'")
  return _SLIM_SUFFIX[kind]


def resnet_v1_50(layer_name, kind):
  """Slim variable name for weight `kind` of our ResNetV1_50 layer.

  Args:
    layer_name: e.g. 'resnet_v1_50_block1_unit_1_conv1_bn'.
    kind: e.g. 'gamma'.

  Returns:
    e.g. 'resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/BatchNorm/gamma'.

  Raises:
    KeyError: the layer or kind has no counterpart in the checkpoint.
  """
  match = _RESNET_STEM.match(layer_name)
  if match:
    return f"resnet_v1_50/conv1/{slim_suffix(kind)}"
  match = _RESNET_UNIT.match(layer_name)
  if match:
    block, unit, conv, _ = match.groups()
    return (f"resnet_v1_50/block{block}/unit_{unit}/bottleneck_v1/{conv}/"
            f"{slim_suffix(kind)}")
  raise KeyError(f"no resnet_v1_50 checkpoint name for layer '{layer_name}'")


def mobilenet_v2(layer_name, kind):
  """Slim variable name for weight `kind` of our MobileNetV2 layer.

  Args:
    layer_name: e.g. 'mobilenet_v2_expanded_conv_1_expand_bn'.
    kind: e.g. 'moving_mean'.

  Returns:
    e.g. 'MobilenetV2/expanded_conv_1/expand/BatchNorm/moving_mean'.

  Raises:
    KeyError: the layer or kind has no counterpart in the checkpoint.
  """
  match = _MOBILENET_STEM.match(layer_name)
  if match:
    return f"MobilenetV2/{match.group(1)}/{slim_suffix(kind)}"
  match = _MOBILENET_UNIT.match(layer_name)
  if match:
    unit, op, _ = match.groups()
    return f"MobilenetV2/{unit}/{op}/{slim_suffix(kind)}"
  raise KeyError(f"no MobilenetV2 checkpoint name for layer '{layer_name}'")


def mobilenet_v1(layer_name, kind):
  """Slim variable name for weight `kind` of our MobileNetV1 layer.

  slim's MobilenetV1 scopes are Conv2d_0 and Conv2d_<i>_depthwise /
  Conv2d_<i>_pointwise; the depthwise kernel is `depthwise_weights`.

  Args:
    layer_name: e.g. 'mobilenet_v1_Conv2d_3_depthwise_bn'.
    kind: e.g. 'beta'.

  Returns:
    e.g. 'MobilenetV1/Conv2d_3_depthwise/BatchNorm/beta'.

  Raises:
    KeyError: the layer or kind has no counterpart in the checkpoint.
  """
  match = _MOBILENET_V1.match(layer_name)
  if match:
    scope, _ = match.groups()
    return f"MobilenetV1/{scope}/{slim_suffix(kind)}"
  raise KeyError(f"no MobilenetV1 checkpoint name for layer '{layer_name}'")
