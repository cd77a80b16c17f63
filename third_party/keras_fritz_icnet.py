"""Name map from fast_seg's ICNet (resnet50_keras_icnet trunk) to the Keras
.h5 files of fritz-image-segmentation's ICNet.

Provenance: the layer names below are those its model factory creates
(fritzlabs/fritz-image-segmentation, image_segmentation/icnet.py at 81843a3,
the last commit before the code moved to fritzlabs/fritz-models, where the
same file is unchanged), read from an .h5 its own code wrote
(tests/data/keras_fritz_icnet/README.md). Only the naming scheme is
reproduced, as facts needed to read those files; no code or weights are
copied.

Its .h5 is a Keras 2.2 `model.save` of the training model (train.py's
ModelCheckpoint, `train=True`): flat names `<layer>/<weight>`. Its layers:

- the full-resolution branch `sub1_conv_{1,2,3}_3x3` (ReLU, then `..._bn`)
  and the projection `sub1_conv_proj` (with bias) + `sub1_conv_proj_bn`;
- the trunk on I/2: stem `sub2_conv_{1,2,3}_3x3` (+ `_bn`), bottleneck units
  `sub2_conv2_{1,2,3}`, `sub2_conv3_1`, then on the quarter features
  `sub4_conv3_{2,3,4}`, `sub4_conv4_{1..6}`, `sub4_conv5_{1,2,3}`, each with
  `_1x1_reduce`, `_3x3`, `_1x1_increase` (+ `_bn`) and, on the first unit of
  a block, `_1x1_proj` (+ `_bn`);
- the pyramid's 1x1 conv `sub4_conv5_4_k1` (+ `_bn`);
- the CFF units `sub24_cff` (`_conv_3x3` + `_conv_bn` on F_low, `_proj` +
  `_proj_bn` on F_high) and `sub12_cff` (no F_high conv);
- the classifier `conv6_cls` and the training-only classifiers `sub4_out`
  (1/16, on the upsampled pyramid output) and `sub24_out` (1/8, on the
  upsampled first CFF output), all with bias.

No conv but the projection and the classifiers has a bias. Widths: its alpha
times 32 for the stem (so alpha = 2 x fast_seg's filter_scale).
"""

import re

TRUNK_PREFIX = "resnet50_keras_icnet_"

# fast_seg ICNet layer (without the _bn suffix) -> the project's layer.
_HEADS = {
    "icnet_psp_conv": "sub4_conv5_4_k1",
    "icnet_full_res_conv1": "sub1_conv_1_3x3",
    "icnet_full_res_conv2": "sub1_conv_2_3x3",
    "icnet_full_res_conv3": "sub1_conv_3_3x3",
    "icnet_full_res_projection": "sub1_conv_proj",
    "icnet_cff1_high_conv": "sub24_cff_proj",
    "icnet_classifier": "conv6_cls",
    "icnet_aux_1_16_classifier": "sub4_out",
    "icnet_aux_1_8_classifier": "sub24_out",
}
# The CFF units' dilated conv names its batch norm `_conv_bn`.
_CFF_LOW = {"icnet_cff1_low_conv": "sub24_cff", "icnet_cff2_low_conv": "sub12_cff"}
# Trunk units that run on I/2 (the rest run on the quarter features).
_HALF_RES_UNITS = re.compile(r"^conv(2_\d|3_1)$")
_UNIT = re.compile(r"^conv(\d)_(\d)_(1x1_reduce|3x3|1x1_increase|1x1_proj)$")
_STEM = re.compile(r"^conv1_(\d)$")


def _trunk_layer(name):
  """'resnet50_keras_icnet_conv4_2_3x3' -> 'sub4_conv4_2_3x3'."""
  layer = name[len(TRUNK_PREFIX):]
  stem = _STEM.match(layer)
  if stem:
    return f"sub2_conv_{stem.group(1)}_3x3"
  unit = _UNIT.match(layer)
  if not unit:
    raise KeyError(name)
  block = f"conv{unit.group(1)}_{unit.group(2)}"
  branch = "sub2" if _HALF_RES_UNITS.match(block) else "sub4"
  return f"{branch}_{block}_{unit.group(3)}"


def icnet(layer_name, weight_kind):
  """(fast_seg ICNet layer, weight kind) -> the .h5's `<layer>/<weight>`."""
  base = layer_name[:-3] if layer_name.endswith("_bn") else layer_name
  bn = base != layer_name
  if base.startswith(TRUNK_PREFIX):
    theirs = _trunk_layer(base)
  elif base in _CFF_LOW:
    theirs = _CFF_LOW[base] + ("_conv_bn" if bn else "_conv_3x3")
    bn = False  # `_conv_bn` is the whole name.
  elif base in _HEADS:
    theirs = _HEADS[base]
  else:
    raise KeyError(layer_name)
  return f"{theirs}{'_bn' if bn else ''}/{weight_kind}"
