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

Its later model (src/model.py, tag v0.1.0, the released
`best-ep-38-val_iou-0.898-val_loss-0.064.hdf5`) is a different network: Keras
MobileNetV2 (`Conv1`, `bn_Conv1`, `block_<i>_expand`, ...) under an FPN head
of unnamed `conv2d_<n>` layers. `V2_FPN_LAYER` tells its files apart.
"""

import re

_STEM = re.compile(r"^mobilenet_v1_Conv2d_0(_bn)?$")
_UNIT = re.compile(r"^mobilenet_v1_Conv2d_(\d+)_(depthwise|pointwise)(_bn)?$")
_HEAD = re.compile(r"^dilated_fcn_logits_(s16|s8|s4)(_bn)?$")
_UNIT_PREFIX = {"depthwise": "conv_dw", "pointwise": "conv_pw"}

# A layer only the v0.1.0 MobileNetV2 FPN model's files have.
V2_FPN_LAYER = re.compile(r"^(Conv1|bn_Conv1|block_\d+_\w+|expanded_conv_\w+)/")


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
