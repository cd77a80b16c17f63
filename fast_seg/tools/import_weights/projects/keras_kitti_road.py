"""The KITTI road project (see--/P12-Semantic-Segmentation): its 2017
SegMobileNet, a dilated MobileNetV1 saved by Keras' `save_weights` (.hdf5).

Its graph is DilatedFCN's `head: LOGIT_SKIPS` on mobilenet_v1 at output
stride 16 with Keras' batch-norm epsilon; `adapt` sets those fields. Its
2019 MobileNetV2 FPN (the v0.1.0 release) is refused by name.
"""

from fast_seg.protos import model_pb2
from fast_seg.tools.import_weights import source
from third_party import keras_kitti_road

_FROM = "--from keras_kitti_road"
# SegMobileNet: Conv2d_7..11 dilated by these rates at stride 16.
_DILATION_RATES = (1, 1, 2, 4, 4)
# Keras' BatchNormalization default, which SegMobileNet keeps.
_KERAS_BN_EPSILON = 1e-3


def _adapt(model_config):
  """Sets the fields that make DilatedFCN SegMobileNet; its name map.

  SegMobileNet ends in two logits under a softmax; with binary_output (the
  shipped road config) the model outputs their difference, whose sigmoid is
  the softmax's road probability.

  Raises:
    ValueError: a config whose model is not dilated_fcn on mobilenet_v1.
  """
  which = model_config.WhichOneof("model")
  if which != "dilated_fcn":
    raise ValueError(f"{_FROM} imports the road project's SegMobileNet into "
                     f"dilated_fcn; the config's model is '{which}'")
  arch = model_config.dilated_fcn
  extractor = arch.feature_extractor
  if extractor.type != "mobilenet_v1":
    raise ValueError(f"{_FROM}: SegMobileNet is a MobileNetV1; the config's "
                     f"feature_extractor.type is '{extractor.type}'")
  arch.head = model_pb2.DilatedFCN.LOGIT_SKIPS
  extractor.output_stride = 16
  extractor.ClearField("weights_path")
  arch.dilation_rates[:] = _DILATION_RATES
  arch.hyperparams.batch_norm.epsilon = _KERAS_BN_EPSILON
  return keras_kitti_road.seg_mobilenet


def _refuse_file(shapes):
  """Names the v0.1.0 MobileNetV2 FPN model, which does not import."""
  if not any(keras_kitti_road.V2_FPN_LAYER.match(name) for name in shapes):
    return None
  return ("the road project's MobileNetV2 FPN (src/model.py, release "
          "v0.1.0) does not import: fast_seg has no FPN head (1x1 convs to "
          "192 on block_3/6/13_expand_relu and out_relu summed top-down, two "
          "3x3 ReLU convs of 96 per level, nearest x8/x4/x2 and concat, a "
          "biased 3x3 classifier, bilinear x4, sigmoid); only its 2017 "
          "SegMobileNet .hdf5 (seg_mobilenet.py) imports")


source.SOURCES.add("keras_kitti_road", source.Source(
    "a Keras .hdf5 of the KITTI road project's SegMobileNet",
    _adapt, source.no_training_state, _refuse_file))
