"""Name maps from fast_seg layers to the KITTI road project's Keras .h5 files
(see--/P12-Semantic-Segmentation).

Provenance: the layer names below are those its 2017 `seg_mobilenet.py`
(`SegMobileNet`, commit 6f9f73d) gives, read from a file its own code wrote
with `model.save_weights`, as its main.py does
(tests/data/keras_kitti_road/README.md): Keras MobileNet's `conv1` /
`conv1_bn` stem, `conv_dw_<i>` / `conv_dw_<i>_bn` and `conv_pw_<i>` /
`conv_pw_<i>_bn` for units 1..11, and its heads `conv_pred_s16`, `conv_pred_s8`,
`conv_pred_s4`, each with a `_bn`. No conv has a bias. Only the naming scheme
is reproduced, as facts needed to read those files; no code or weights are
copied.

Its later model (src/model.py, tag v0.1.0 = 16f12f8, the released
`best-ep-38-val_iou-0.898-val_loss-0.064.hdf5`, saved whole by its train.py's
ModelCheckpoint) is Keras MobileNetV2 (`Conv1`, `bn_Conv1`, `block_<i>_expand`,
..., `Conv_1`, `Conv_1_bn`: the Keras-applications names of
keras_applications_h5.py) under an FPN head of 13 unnamed Conv2D layers with
biases, named by Keras' counter in creation order: `conv2d_1`..`conv2d_13`
under Keras 2.2 (the release), `conv2d`, `conv2d_1`..`conv2d_12` under later
Keras. `V2_FPN_LAYER` tells its files apart; `mobilenet_v2_fpn` maps them.
"""

import re

from third_party import keras_applications_h5
from third_party import keras_layer_numbering

_STEM = re.compile(r"^mobilenet_v1_Conv2d_0(_bn)?$")
_UNIT = re.compile(r"^mobilenet_v1_Conv2d_(\d+)_(depthwise|pointwise)(_bn)?$")
_HEAD = re.compile(r"^dilated_fcn_logits_(s16|s8|s4)(_bn)?$")
_UNIT_PREFIX = {"depthwise": "conv_dw", "pointwise": "conv_pw"}

# A layer only the v0.1.0 MobileNetV2 FPN model's files have.
V2_FPN_LAYER = re.compile(r"^(Conv1|bn_Conv1|block_\d+_\w+|expanded_conv_\w+)/")
# Its FPN head's layers: Keras' automatic Conv2D names.
# fast_seg's FPN layers (fast_seg/meta_architectures/fpn.py) in the order
# model.py creates its Conv2Ds: create_pyramid_features' 1x1 laterals on
# out_relu, block_13, block_6, block_3 (strides 32, 16, 8, 4); network_head's
# two 3x3 convs on the stride 4, 8, 16, 32 sums; the 3x3 classifier.
FPN_CREATION_ORDER = (
    "fpn_lateral_s32", "fpn_lateral_s16", "fpn_lateral_s8", "fpn_lateral_s4",
    "fpn_s4_conv1", "fpn_s4_conv2", "fpn_s8_conv1", "fpn_s8_conv2",
    "fpn_s16_conv1", "fpn_s16_conv2", "fpn_s32_conv1", "fpn_s32_conv2",
    "fpn_classifier")


def seg_mobilenet(layer_name, kind):
  """The file's name for `kind` of our DilatedFCN (head LOGIT_SKIPS) layer.

  Args:
    layer_name: e.g. 'mobilenet_v1_Conv2d_9_depthwise_bn'.
    kind: e.g. 'moving_mean'.

  Returns:
    e.g. 'conv_dw_9_bn/moving_mean'.

  Raises:
    KeyError: the layer has no counterpart in SegMobileNet.
  """
  match = _STEM.match(layer_name)
  if match:
    return ("conv1_bn" if match.group(1) else "conv1") + "/" + kind
  match = _UNIT.match(layer_name)
  if match:
    index, op, bn = match.groups()
    return f"{_UNIT_PREFIX[op]}_{index}{bn or ''}/{kind}"
  match = _HEAD.match(layer_name)
  if match:
    stride, bn = match.groups()
    return f"conv_pred_{stride}{bn or ''}/{kind}"
  raise KeyError(f"no SegMobileNet weight for layer '{layer_name}'")


def fpn_conv_layers(names):
  """The file's FPN head layers in creation order (Keras' counter).

  Args:
    names: the file's flat variable names ('conv2d_3/kernel', ...).

  Returns:
    list of layer names, e.g. ['conv2d_1', ..., 'conv2d_13'].
  """
  return keras_layer_numbering.numbered_layers(names, "conv2d")


def mobilenet_v2_fpn(names):
  """The name map of one v0.1.0 MobileNetV2 FPN file.

  Args:
    names: the file's flat variable names: its head's layers are numbered
      by the Keras version that wrote it, so the map follows their order.

  Returns:
    A function (our layer name, kind) -> the file's name, e.g.
    ('fpn_lateral_s16', 'bias') -> 'conv2d_2/bias' in the released file,
    ('mobilenet_v2_Conv_1_bn', 'gamma') -> 'Conv_1_bn/gamma'. It raises
    KeyError for a layer the model does not have (a file with fewer head
    layers leaves ours unnamed; one with more leaves its own unmapped).
  """
  head = dict(zip(FPN_CREATION_ORDER, fpn_conv_layers(names)))

  def name_map(layer_name, kind):
    if layer_name in head:
      return f"{head[layer_name]}/{kind}"
    weight = keras_applications_h5.mobilenet_v2(layer_name, kind)
    return f"{weight.layer}/{kind}"

  return name_map
