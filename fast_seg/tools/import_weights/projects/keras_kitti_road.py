"""The KITTI road project (see--/P12-Semantic-Segmentation): its two Keras
models' .hdf5 files.

- The release (tag v0.1.0, src/model.py; `best-ep-38-val_iou-0.898-...hdf5`,
  saved whole by its train.py): Keras MobileNetV2 under an FPN head, one
  sigmoid channel. fast_seg's `fpn` on mobilenet_v2
  (configs/fpn_mobilenet_v2_kitti_road_160.config); `adapt` sets Keras'
  batch-norm epsilon and the Keras 2.2 final resize.
- The 2017 SegMobileNet (seg_mobilenet.py, `save_weights`): a dilated
  MobileNetV1, DilatedFCN's `head: LOGIT_SKIPS` at output stride 16.

The file tells which one it is; the config must be that model's.
"""

from fast_seg.protos import model_pb2
from fast_seg.tools.import_weights import source
from third_party import keras_kitti_road

_FROM = "--from keras_kitti_road"
_FPN_CONFIG = "configs/fpn_mobilenet_v2_kitti_road_160.config"
_SEG_MOBILENET_CONFIG = "configs/dilated_fcn_mobilenet_v1_kitti_road_half.config"
# SegMobileNet: Conv2d_7..11 dilated by these rates at stride 16.
_DILATION_RATES = (1, 1, 2, 4, 4)
# Keras' BatchNormalization default (SegMobileNet) and Keras applications'
# MobileNetV2 epsilon: both 1e-3.
_KERAS_BN_EPSILON = 1e-3
# model.py: two 3x3 convs per level (network_head), levels concatenated.
_FPN_HEAD_CONVS = 2


def _adapt(model_config, shapes):
  """Sets the fields that make the config's model the file's; its name map.

  Raises:
    ValueError: the file is the other model of the project, or the config's
      model is not the one the file's model maps onto.
  """
  is_fpn = any(keras_kitti_road.V2_FPN_LAYER.match(name) for name in shapes)
  which = model_config.WhichOneof("model")
  if is_fpn and which != "fpn":
    raise ValueError(
        f"the file is the road project's MobileNetV2 FPN (src/model.py, "
        f"release v0.1.0), which imports into fpn ({_FPN_CONFIG}); the "
        f"config's model is '{which}'")
  if is_fpn:
    return _adapt_fpn(model_config.fpn, shapes)
  if which != "dilated_fcn":
    raise ValueError(
        f"the file is the road project's 2017 SegMobileNet "
        f"(seg_mobilenet.py), which imports into dilated_fcn "
        f"({_SEG_MOBILENET_CONFIG}); the config's model is '{which}'")
  return _adapt_seg_mobilenet(model_config.dilated_fcn)


def _adapt_fpn(arch, shapes):
  """model.py's get_model: mobilenet_v2 at stride 32, Keras' epsilon, the
  head as the file's widths, Keras 2.2's bilinear x4, one sigmoid channel."""
  extractor = arch.feature_extractor
  if extractor.type != "mobilenet_v2":
    raise ValueError(f"{_FROM}: the road project's FPN is on Keras' "
                     f"MobileNetV2; the config's feature_extractor.type is "
                     f"'{extractor.type}'")
  if not arch.HasField("binary_output"):
    raise ValueError(f"{_FROM}: the road project's FPN ends in one sigmoid "
                     "channel (road): the config's model.fpn needs "
                     f"binary_output {{}} (as {_FPN_CONFIG})")
  extractor.output_stride = 32
  extractor.ClearField("weights_path")
  if extractor.filter_scale != 1.0:
    # model.py's head widths do not follow the trunk's alpha.
    del extractor.group_widths[:]
    extractor.group_widths.add(group="head", scale=1.0)
  arch.hyperparams.batch_norm.epsilon = _KERAS_BN_EPSILON
  arch.head_convs = _FPN_HEAD_CONVS
  arch.merge = model_pb2.FPN.CONCAT
  # Keras 2.2's UpSampling2D(interpolation='bilinear'): TF1 resize_bilinear.
  arch.upsampling = model_pb2.FPN.ASYMMETRIC
  return keras_kitti_road.mobilenet_v2_fpn(shapes)


def _adapt_seg_mobilenet(arch):
  """Sets the fields that make DilatedFCN SegMobileNet; its name map.

  SegMobileNet ends in two logits under a softmax; with binary_output (the
  shipped road config) the model outputs their difference, whose sigmoid is
  the softmax's road probability.

  Raises:
    ValueError: a trunk other than mobilenet_v1.
  """
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


source.SOURCES.add("keras_kitti_road", source.Source(
    "a Keras .hdf5 of the KITTI road project (MobileNetV2 FPN or "
    "SegMobileNet)", _adapt, source.no_training_state))
