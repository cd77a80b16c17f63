"""The Keras hair project (akirasosa/mobile-semantic-segmentation, its
Keras MobileUNet): the `.h5` that its train_*.py write (model.save or
save_weights).

Its decoder and its input normalization differ from fast_seg's MobileUNet in
fields that default to fast_seg's own (docs/migrating.md#importing-trained-
models); `adapt` sets them. Its alpha and alpha_up are the config's
feature_extractor.filter_scale and decoder_width_multiplier, which the user
sets (1.0 and 0.25 for its train_full.py): other widths are refused by
shape.
"""

from fast_seg.protos import model_pb2
from fast_seg.tools.import_weights import source
from third_party import keras_mobile_unet_hair

_FROM = "--from keras_mobile_unet_hair"
# data.py's standardize: (x - mean) / (std + 1e-7) on RGB 0..255; the 1e-7
# is below float32's resolution at these stds.
_INPUT_MEAN = (29.24429131,)
_INPUT_STD = (69.8833313, 63.37436676, 61.38568878)
# Keras 2's BatchNormalization default, which the project kept.
_BN_EPSILON = 1e-3


def _adapt(model_config, shapes):
  """Sets the fields that reproduce the hair project's graph; its name map,
  numbered as the file's unnamed layers are (shapes: the file's variables).

  Raises:
    ValueError: a model the map does not cover, named.
  """
  which = model_config.WhichOneof("model")
  if which != "mobile_unet":
    raise ValueError(
        f"{_FROM} imports the hair project's MobileUNet; the config's model "
        f"is '{which}' (start from "
        "configs/mobile_unet_mobilenet_v1_hair_128.config)")
  arch = model_config.mobile_unet
  extractor = arch.feature_extractor
  if extractor.type != "mobilenet_v1":
    raise ValueError(
        f"{_FROM}: the hair project's encoder is MobileNetV1 (type "
        f"mobilenet_v1); the config's is '{extractor.type}'")
  arch.decoder_layout = model_pb2.MobileUNet.KERAS_HAIR
  arch.upsampling = model_pb2.MobileUNet.TRANSPOSED_CONV
  arch.hyperparams.batch_norm.epsilon = _BN_EPSILON
  extractor.ClearField("weights_path")
  del extractor.input_mean[:], extractor.input_std[:]
  extractor.input_mean.extend(_INPUT_MEAN)
  extractor.input_std.extend(_INPUT_STD)
  return keras_mobile_unet_hair.renumbered(keras_mobile_unet_hair.mobile_unet,
                                          sorted(shapes))


source.SOURCES.add("keras_mobile_unet_hair", source.Source(
    "an .h5 of the Keras hair project's MobileUNet "
    "(akirasosa/mobile-semantic-segmentation)",
    _adapt, source.no_training_state))
