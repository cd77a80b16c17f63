"""Name maps from fast_seg ICNet / PSPNet layers to the TF1
fast-semantic-segmentation project's checkpoints (`model.ckpt-N` written by
its train.py).

Provenance: the variable names below are those that project's ICNet graph
creates (oandrienko/fast-semantic-segmentation: architectures/
icnet_architecture.py, extractors/pspnet_icnet_resnet_v1.py on its
third_party/dilated_resnet_v1.py), read from a checkpoint its own code wrote
(tests/data/tf1_icnet/README.md). Only the naming scheme is reproduced, as
facts needed to read those files; no code or weights are copied.

Its ICNet scopes: the trunk under `SharedFeatureExtractor/` with tf-slim's
resnet_v1_50 names; the pyramid's 1x1 conv `FastPSPModule/Conv`; the four
full-resolution convs `Conv`, `Conv_1`, `Conv_2`, `Conv_3` (slim's default
scopes, numbered in creation order); the CFF units `CascadeFeatureFusion` and
`CascadeFeatureFusion_1`, each with `DilatedConv` (on F_low) and `Conv` (on
F_high); the classifier `Predictions/Conv`; the training-only classifiers
`AuxOutput` (on the upsampled pyramid output, 1/16) and `AuxOutput_1` (on the
upsampled first CFF output, 1/8). Every conv but the classifiers has a slim
BatchNorm and no bias.

Its PSPNet50 (architectures/pspnet_architecture.py, the same trunk on the
full image): the bins' 1x1 convs `PSPModule/Conv`, `Conv_1`, ... in the order
of its pooling_factors, then the 3x3 fuse conv `PSPModule/Conv_<number of
bins>`; the classifier `Predictions/Conv`; the training-only classifier
`AuxPredictions/AuxOutput` (on block2).

Its filter_scale f divides every width by 1/f (integer division), so a 0.5
model has exactly the widths of fast_seg's filter_scale 0.5 ResNet ICNet
(its PSPNet keeps the bins' convs at 512 at every scale).
"""

import re

from third_party import tf_slim_checkpoints

TRUNK_SCOPE = "SharedFeatureExtractor/"

# fast_seg ICNet layer (without the _bn suffix) -> TF1 scope.
_ICNET_HEADS = {
    "icnet_psp_conv": "FastPSPModule/Conv",
    "icnet_full_res_conv1": "Conv",
    "icnet_full_res_conv2": "Conv_1",
    "icnet_full_res_conv3": "Conv_2",
    "icnet_full_res_conv4": "Conv_3",
    "icnet_cff1_low_conv": "CascadeFeatureFusion/DilatedConv",
    "icnet_cff1_high_conv": "CascadeFeatureFusion/Conv",
    "icnet_cff2_low_conv": "CascadeFeatureFusion_1/DilatedConv",
    "icnet_cff2_high_conv": "CascadeFeatureFusion_1/Conv",
    "icnet_classifier": "Predictions/Conv",
    "icnet_aux_1_16_classifier": "AuxOutput",
    "icnet_aux_1_8_classifier": "AuxOutput_1",
}

# Checkpoint variables that are training state, not model: the step and
# the optimizers' slots (momentum, Adam, RMSProp) and Adam's beta powers.
_TRAINING_STATE = re.compile(
    r"(^global_step$|/(Momentum|Adam|Adam_1|RMSProp|RMSProp_1)$|"
    r"^beta[12]_power(_\d+)?$)")


def is_training_state(variable_name):
  """Whether a checkpoint variable is optimizer or step state (not mapped)."""
  return bool(_TRAINING_STATE.search(variable_name))


def _trunk(layer_name, kind):
  return TRUNK_SCOPE + tf_slim_checkpoints.resnet_v1_50(layer_name, kind)


def _head(scopes, layer_name, kind, model):
  """The variable of a head conv (or its _bn) listed in `scopes`."""
  conv = layer_name[:-len("_bn")] if layer_name.endswith("_bn") else layer_name
  if conv not in scopes:
    raise KeyError(f"no TF1 {model} checkpoint name for layer '{layer_name}'")
  return f"{scopes[conv]}/{tf_slim_checkpoints.slim_suffix(kind)}"


def icnet(layer_name, kind):
  """TF1 checkpoint variable name for weight `kind` of our ICNet layer.

  Args:
    layer_name: e.g. 'icnet_cff1_low_conv_bn' or
      'resnet_v1_50_block1_unit_3_conv2'.
    kind: a Keras weight attribute, e.g. 'moving_mean' or 'kernel'.

  Returns:
    e.g. 'CascadeFeatureFusion/DilatedConv/BatchNorm/moving_mean'.

  Raises:
    KeyError: the layer or kind has no counterpart in the checkpoint.
  """
  if layer_name.startswith("resnet_v1_50_"):
    return _trunk(layer_name, kind)
  return _head(_ICNET_HEADS, layer_name, kind, "ICNet")


def pspnet(pyramid_bins):
  """The name map of a PSPNet with these bins (its pooling_factors).

  Args:
    pyramid_bins: the bins in config order, e.g. (1, 2, 3, 6).

  Returns:
    A map (layer_name, kind) -> variable name, like `icnet`, e.g.
    'pspnet_pool_3_conv_bn', 'gamma' -> 'PSPModule/Conv_2/BatchNorm/gamma'.
  """
  scopes = {"pspnet_classifier": "Predictions/Conv",
            "pspnet_aux_classifier": "AuxPredictions/AuxOutput",
            "pspnet_fuse_conv": f"PSPModule/Conv_{len(pyramid_bins)}"}
  for i, bins in enumerate(pyramid_bins):
    scopes[f"pspnet_pool_{bins}_conv"] = (
        "PSPModule/Conv" + (f"_{i}" if i else ""))

  def name_map(layer_name, kind):
    if layer_name.startswith("resnet_v1_50_"):
      return _trunk(layer_name, kind)
    return _head(scopes, layer_name, kind, "PSPNet")
  return name_map
