"""The TF1 fast-semantic-segmentation project: ICNet and PSPNet50 on its
dilated ResNet50 (`model.ckpt-N`).

Its graph differs from fast_seg's in fields that default to fast_seg's own
(docs/migrating.md#importing-trained-models); `adapt` sets them.
"""

from fast_seg.meta_architectures import pspnet
from fast_seg.protos import model_pb2
from fast_seg.tools.import_weights import source
from third_party import tf1_fast_semantic_segmentation as tf1_fss

_TF1 = "--from tf1_fast_semantic_segmentation"


def _tf1_trunk(extractor, model_name):
  """The TF1 project's dilated ResNet50: slim padding, rates 4 and 16."""
  if extractor.type != "resnet_v1_50":
    raise ValueError(
        f"{_TF1} imports its {model_name} on dilated_resnet50 (type "
        f"resnet_v1_50); '{extractor.type}' is not mapped: its "
        "dilated_mobilenet trunk is split after expanded_conv_3, ends at "
        "expanded_conv_15 and keeps Conv and expanded_conv at full width, "
        "unlike fast_seg's mobilenet_v2 (docs/migrating.md)")
  extractor.slim_explicit_padding = True
  del extractor.stage_dilation_multipliers[:]
  for stage, multiplier in (("block3", 2), ("block4", 4)):
    extractor.stage_dilation_multipliers.add(stage=stage,
                                             multiplier=multiplier)
  extractor.ClearField("weights_path")


def _adapt_tf1(model_config, unused_shapes):
  """Sets the fields that reproduce the TF1 project's graph; its name map.

  Raises:
    ValueError: a model the TF1 maps do not cover, named.
  """
  which = model_config.WhichOneof("model")
  if which not in ("icnet", "pspnet"):
    raise ValueError(f"{_TF1} imports ICNet and PSPNet; the config's model "
                     f"is '{which}'")
  arch = getattr(model_config, which)
  _tf1_trunk(arch.feature_extractor, which)
  arch.interpolation = model_pb2.ICNet.TF1_ALIGN_CORNERS
  arch.head_activation = model_pb2.ICNet.RELU6
  if which == "icnet":
    return tf1_fss.icnet
  arch.bin_conv_depth = 512
  arch.aux_stage = "block2"
  return tf1_fss.pspnet(tuple(arch.pyramid_bins) or
                        pspnet.DEFAULT_PYRAMID_BINS)


source.SOURCES.add("tf1_fast_semantic_segmentation", source.Source(
    "a model.ckpt-N of the TF1 fast-semantic-segmentation project",
    _adapt_tf1, tf1_fss.is_training_state))
