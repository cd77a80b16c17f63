"""Name map from fast_seg's MobileUNet (decoder_layout KERAS_HAIR) to the
.h5 files of the Keras hair project's MobileUNet.

Provenance: the layer names below are those that akirasosa/mobile-semantic-
segmentation's nets/MobileUNet.py gives its layers (commit 9fe995e, the last
Keras version of that repository; it moved to PyTorch in 2018), read from an
.h5 its own code wrote (tests/data/keras_mobile_unet_hair/README.md). Only
the naming scheme is reproduced, as facts needed to read those files; no
code or weights are copied.

Its layers: the encoder `conv_0` (3x3, stride 2), then `conv_dw_1` ..
`conv_dw_13` (depthwise) and `conv_pw_1` .. `conv_pw_13` (pointwise), each
conv followed by a batch norm named `<conv>_bn`; the decoder blocks
`conv_dw_14` .. `conv_dw_17` / `conv_pw_14` .. `conv_pw_17` (strides 16, 8, 4,
2) and the 3x3 `conv_18`, again each with `<conv>_bn`. Its four transposed
convs and its 1x1 classifier are not named in its code: Keras numbers them
when the model is built, `conv2d_transpose`, `conv2d_transpose_1`, ... and
`conv2d` for the first model of a session of Keras 2.2+ (`..._1` upward with
Keras 2.0, and higher numbers for a later model of a session). The map uses
the first numbering; `renumbered` binds it to the numbers a file has, in
creation order (the stride-16 transposed conv first).

A model.save file holds the weights under `model_weights/` and a
save_weights file at its root; both read the same (fast_seg/utils/
keras_h5.py), and neither holds optimizer state among its layers.
"""

import re

from third_party import keras_layer_numbering

_ENCODER = re.compile(
    r"^mobilenet_v1_Conv2d_(\d+)(?:_(depthwise|pointwise))?(_bn)?$")
_DECODER_STEP = re.compile(
    r"^mobile_unet_up(16|8|4|2)_(upsample|depthwise|pointwise)(_bn)?$")
# Decoder step (its skip's stride) -> the hair project's block_id.
_BLOCK_OF_STRIDE = {"16": 14, "8": 15, "4": 16, "2": 17}
# The same step's transposed conv, in the project's creation order.
_TRANSPOSED_CONV = {"16": "conv2d_transpose", "8": "conv2d_transpose_1",
                    "4": "conv2d_transpose_2", "2": "conv2d_transpose_3"}
_OTHERS = {"mobile_unet_up1_conv": "conv_18", "mobile_unet_up1_conv_bn":
           "conv_18_bn", "mobile_unet_classifier": "conv2d"}
_OP_PREFIX = {"depthwise": "conv_dw", "pointwise": "conv_pw"}
# Layers whose names Keras numbered at build time.
def _layer(layer_name):
  """The hair project's layer for one of ours, or None."""
  if layer_name in _OTHERS:
    return _OTHERS[layer_name]
  match = _ENCODER.match(layer_name)
  if match:
    index, op, bn = match.groups()
    if (index == "0") != (op is None):
      return None
    conv = "conv_0" if op is None else f"{_OP_PREFIX[op]}_{index}"
    return conv + (bn or "")
  match = _DECODER_STEP.match(layer_name)
  if match:
    stride, op, bn = match.groups()
    if op == "upsample":
      return None if bn else _TRANSPOSED_CONV[stride]
    return f"{_OP_PREFIX[op]}_{_BLOCK_OF_STRIDE[stride]}" + (bn or "")
  return None


def mobile_unet(layer_name, kind):
  """The .h5 flat name of weight `kind` of our MobileUNet layer.

  Args:
    layer_name: e.g. 'mobilenet_v1_Conv2d_3_pointwise_bn' or
      'mobile_unet_up8_upsample'.
    kind: a Keras weight attribute, e.g. 'moving_mean' or 'kernel'.

  Returns:
    e.g. 'conv_pw_3_bn/moving_mean' or 'conv2d_transpose_1/kernel' (the
    first numbering of a session; see `renumbered`).

  Raises:
    KeyError: the layer has no counterpart in the hair project's model.
  """
  layer = _layer(layer_name)
  if layer is None:
    raise KeyError(f"no layer of the hair project's MobileUNet for "
                   f"'{layer_name}'")
  return f"{layer}/{kind}"


def renumbered(name_map, variable_names):
  """`name_map` with Keras' build-time numbers taken from one file.

  Args:
    name_map: `mobile_unet` (or a map that returns its names).
    variable_names: the file's flat variable names.

  Returns:
    A map like `name_map` whose n-th `conv2d_transpose*` (in the
    numbering of a first build) is the file's n-th, and likewise `conv2d*`:
    e.g. 'conv2d_transpose_1/kernel' -> 'conv2d_transpose_5/kernel' in a
    file numbered from 4. A file with fewer such layers leaves the rest as
    they are, so the import names them as missing.
  """
  return keras_layer_numbering.renumber(
      name_map, variable_names, ("conv2d_transpose", "conv2d"))
