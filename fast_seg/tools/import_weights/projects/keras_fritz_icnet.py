"""fritz-image-segmentation: its Keras ICNet (ADE20K whitelists, Core ML),
a `.h5` written by its train.py (`-o model.h5`).

Its graph differs from fast_seg's ICNet in fields that default to fast_seg's
own (docs/migrating.md#importing-trained-models); `adapt` sets them and the
trunk, resnet50_keras_icnet.
"""

from fast_seg.protos import model_pb2
from fast_seg.tools.import_weights import source
from third_party import keras_fritz_icnet

_FRITZ = "--from keras_fritz_icnet"
# Keras' BatchNormalization default, which that project kept.
_KERAS_BN_EPSILON = 1e-3


def _adapt_fritz(model_config, unused_shapes):
  """Sets the fields that reproduce its graph; its name map.

  Raises:
    ValueError: a model other than ICNet, or a config that changes what its
      ICNet fixes (pyramid bins, output stride), named.
  """
  which = model_config.WhichOneof("model")
  if which != "icnet":
    raise ValueError(f"{_FRITZ} imports that project's ICNet; the config's "
                     f"model is '{which}'")
  icnet = model_config.icnet
  if list(icnet.pyramid_bins) not in ([], [1, 2, 3, 4]):
    raise ValueError(f"{_FRITZ}: its pyramid pools bins 1, 2, 3, 4; the "
                     f"config's model.icnet.pyramid_bins is "
                     f"{list(icnet.pyramid_bins)}")
  extractor = icnet.feature_extractor
  extractor.type = "resnet50_keras_icnet"
  extractor.ClearField("weights_path")
  icnet.interpolation = model_pb2.ICNet.KERAS_ASYMMETRIC
  icnet.head_activation = model_pb2.ICNet.RELU_BEFORE_BATCH_NORM
  icnet.full_res_projection = True
  icnet.hyperparams.batch_norm.epsilon = _KERAS_BN_EPSILON
  return keras_fritz_icnet.icnet


source.SOURCES.add("keras_fritz_icnet", source.Source(
    "a .h5 of the fritz-image-segmentation Keras ICNet",
    _adapt_fritz, source.no_training_state))
