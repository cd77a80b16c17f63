"""Name map from fast_seg ICNet layers to the TF1 fast-semantic-segmentation
project's checkpoints (`model.ckpt-N` written by its train.py).

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

Its filter_scale f divides every width by 1/f (integer division), so a 0.5
model has exactly the widths of fast_seg's filter_scale 0.5 ResNet ICNet.
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
    return TRUNK_SCOPE + tf_slim_checkpoints.resnet_v1_50(layer_name, kind)
  conv = layer_name[:-len("_bn")] if layer_name.endswith("_bn") else layer_name
  if conv not in _ICNET_HEADS:
    raise KeyError(f"no TF1 ICNet checkpoint name for layer '{layer_name}'")
  return f"{_ICNET_HEADS[conv]}/{tf_slim_checkpoints.slim_suffix(kind)}"
