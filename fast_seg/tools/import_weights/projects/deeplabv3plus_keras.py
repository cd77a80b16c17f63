"""The Keras DeepLabV3+ project (tonandr/ai-platform, deeplabv3plus_keras):
its `semantic_segmentation_deeplabv3plus.h5`, a MobileNetV2 cut at stride 8,
a dense prediction cell (its encoder_middle_conf) and a 3x3 classifier.

Its graph differs from fast_seg's in fields that default to fast_seg's own
(docs/migrating.md#importing-trained-models); `adapt` sets them.
"""

from fast_seg.meta_architectures import deeplab_v3_plus
from fast_seg.protos import feature_extractor_pb2
from fast_seg.protos import model_pb2
from fast_seg.tools.import_weights import source
from third_party import deeplabv3plus_keras
from third_party import keras_layer_numbering

_FROM = "--from deeplabv3plus_keras"
_PADDING = feature_extractor_pb2.FeatureExtractor
# Keras' BatchNormalization default, which every batch norm of it keeps.
KERAS_BN_EPSILON = 0.001


def _check(model_config):
  """The model it imports, or ValueError naming what the config differs in.

  Its code always cuts MobileNetV2 at block_5_add (stride 8), whatever
  nn_arch.output_stride says, and its encoder_middle_conf is a dense
  prediction cell.
  """
  which = model_config.WhichOneof("model")
  if which != "deeplab_v3_plus":
    raise ValueError(f"{_FROM} imports DeepLabV3+; the config's model is "
                     f"'{which}'")
  arch = model_config.deeplab_v3_plus
  extractor = arch.feature_extractor
  if extractor.type != "mobilenet_v2":
    raise ValueError(f"{_FROM}: that project builds on Keras' MobileNetV2; "
                     f"the config's feature_extractor is '{extractor.type}'")
  if extractor.output_stride != 8:
    raise ValueError(
        f"{_FROM}: its code cuts MobileNetV2 at block_5_add (stride 8) at "
        "every nn_arch.output_stride; set feature_extractor.output_stride: 8, "
        f"not {extractor.output_stride}")
  if arch.WhichOneof("encoder_head") != "dense_prediction_cell":
    raise ValueError(
        f"{_FROM}: its encoder_middle_conf is a dense prediction cell; write "
        "it as dense_prediction_cell { ops { ... } } with the rates "
        "multiplied by conv_rate_multiplier (dense_prediction_cell {} is its "
        "example's), not aspp")
  return arch


def _adapt(model_config, shapes):
  """Sets the fields that reproduce that project's graph; its name map.

  Raises:
    ValueError: a model its map does not cover, named.
  """
  arch = _check(model_config)
  extractor = arch.feature_extractor
  extractor.ClearField("weights_path")
  if extractor.keras_padding == _PADDING.SAME:
    # What TF 1.x's tf.keras.applications built (its README's TF 1.13);
    # an .h5 written with Keras 2.15 wants DEPTHWISE_AFTER, kept if set.
    extractor.keras_padding = _PADDING.CONV1_AND_DEPTHWISE_AFTER
  arch.encoder_stage = "stage3"
  arch.decoder_depth = 0
  arch.classifier_kernel_size = 3
  arch.classifier_bias = False
  arch.hyperparams.batch_norm.epsilon = KERAS_BN_EPSILON
  cell = arch.dense_prediction_cell
  cell.op_form = model_pb2.DensePredictionCell.SEPARABLE_THEN_1X1
  kernels = ([op.kernel_size for op in cell.ops] or
             [kernel for kernel, _, _ in deeplab_v3_plus.DEFAULT_CELL_OPS])
  return keras_layer_numbering.renumber(
      deeplabv3plus_keras.deeplab_v3_plus(kernels), sorted(shapes),
      deeplabv3plus_keras.NUMBERED_LAYERS)


source.SOURCES.add("deeplabv3plus_keras", source.Source(
    "a semantic_segmentation_deeplabv3plus.h5 of the Keras DeepLabV3+ "
    "project (tonandr/ai-platform)", _adapt, source.no_training_state))
