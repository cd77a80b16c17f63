"""Feature pyramid network head (Lin et al. 2017) for segmentation.

The trunk gives a pyramid at strides 4, 8, 16 and 32 (its build_pyramid:
mobilenet_v2's expansion outputs and Conv_1, as Keras and TF OD API users
tap it). Each level is projected by a biased 1x1 conv; from the coarsest
down, a level is upsampled (nearest) and added to the next finer one. Each
sum then runs through `head_convs` biased 3x3 ReLU convs, the levels are
upsampled (nearest) to stride 4 and concatenated (or summed), and a biased
3x3 classifier makes the logits, resized bilinearly to the input.

It is the KITTI road project's released model (its v0.1.0 src/model.py:
192-wide laterals, two 96-wide convs per level, concatenation, dropout 0.2),
so its trained .hdf5 imports (fast_seg.tools.import_weights). As there, the
head has no batch norm. Head widths scale by the `head` width group (by
default filter_scale), so pruning narrows the head with the trunk.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks
from fast_seg.protos import model_pb2

MERGES = ("concat", "sum")
# Pyramid strides, coarsest first (the top-down order).
STRIDES = (32, 16, 8, 4)
_UPSAMPLINGS = {model_pb2.FPN.HALF_PIXEL: layers.HALF_PIXEL,
                model_pb2.FPN.ASYMMETRIC: layers.ASYMMETRIC}


def layer_names(head_convs=2):
  """Names of FPN's layers with weights in the order the road project's
  model.py creates them: laterals coarse to fine, each level's convs fine
  to coarse, the classifier. (Its file names them by that order.)"""
  names = [f"fpn_lateral_s{stride}" for stride in STRIDES]
  for stride in reversed(STRIDES):
    names += [f"fpn_s{stride}_conv{i}" for i in range(1, head_convs + 1)]
  return names + ["fpn_classifier"]


@model.register("fpn")
class FPN(model.SegmentationModel):
  """Trunk pyramid at strides 4..32, top-down sums, per-level convs, merge."""

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, binary_output=None, lateral_depth=256,
               head_depth=128, head_convs=2, merge="concat", dropout_rate=0.0,
               upsampling=layers.HALF_PIXEL):
    # Not a config check: the config's enum always names a known one.
    if merge not in MERGES:
      raise ValueError(f"model.fpn.merge: unknown '{merge}'; allowed: "
                       f"{', '.join(MERGES)}")
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="fpn",
                     binary_output=binary_output)
    self.lateral_depth = int(lateral_depth)
    self.head_depth = int(head_depth)
    self.head_convs = int(head_convs)
    self.merge = merge
    self.dropout_rate = float(dropout_rate)
    self.upsampling = upsampling

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    config_checks.require_output_stride(
        config, field_path, (STRIDES[0],),
        "FPN (its pyramid goes down to 1/32)")
    if not 0.0 <= config.dropout_rate < 1.0:
      raise ValueError(f"{field_path}.dropout_rate must be in [0, 1), got "
                       f"{config.dropout_rate}")
    return {
        "lateral_depth": config_checks.positive(
            config.lateral_depth, f"{field_path}.lateral_depth"),
        "head_depth": config_checks.positive(
            config.head_depth, f"{field_path}.head_depth"),
        "head_convs": config_checks.positive(
            config.head_convs, f"{field_path}.head_convs"),
        "merge": model_pb2.FPN.Merge.Name(config.merge).lower(),
        "dropout_rate": config.dropout_rate,
        "upsampling": _UPSAMPLINGS[config.upsampling],
    }

  def _conv(self, x, width, kernel_size, name, relu):
    """A biased conv without batch norm, as in the FPN paper."""
    width = self.feature_extractor.width(width, base.Rounding.PLAIN,
                                         group=base.HEAD_GROUP)
    return self.conv_hyperparams.conv2d(
        width, kernel_size, name=name, use_bias=True,
        activation="relu" if relu else None)(x)

  def _top_down(self, pyramid):
    """{stride: lateral sum}: 1x1 laterals, each added to the upsampled
    coarser sum."""
    missing = [s for s in STRIDES if s not in pyramid]
    if missing:
      raise ValueError(
          f"FPN needs {self.feature_extractor.name} features at strides "
          f"{STRIDES}; none at {missing}")
    sums, coarser = {}, None
    for stride in STRIDES:
      x = self._conv(pyramid[stride], self.lateral_depth, 1,
                     f"fpn_lateral_s{stride}", relu=False)
      if coarser is not None:
        up = layers.ResizeLike(layers.NEAREST,
                               name=f"fpn_topdown_s{stride}_upsample")(
                                   [coarser, x])
        x = keras.layers.Add(name=f"fpn_topdown_s{stride}_add")([up, x])
      sums[stride] = coarser = x
    return sums

  def _build_heads(self, images):
    sums = self._top_down(self.feature_extractor.build_pyramid(images))
    finest = STRIDES[-1]
    levels = {}
    for stride in reversed(STRIDES):
      x = sums[stride]
      for i in range(1, self.head_convs + 1):
        x = self._conv(x, self.head_depth, 3, f"fpn_s{stride}_conv{i}",
                       relu=True)
      levels[stride] = x
    # Coarsest first: the road project's concatenation order.
    merged = [levels[finest]]
    for stride in STRIDES[:-1]:
      merged.insert(-1, layers.ResizeLike(
          layers.NEAREST, name=f"fpn_s{stride}_upsample")(
              [levels[stride], levels[finest]]))
    merge = (keras.layers.Concatenate if self.merge == "concat"
             else keras.layers.Add)
    x = merge(name="fpn_merge")(merged)
    if self.dropout_rate:
      x = keras.layers.Dropout(self.dropout_rate, name="fpn_dropout")(x)
    self.classifier_layer_names.add("fpn_classifier")
    logits = keras.layers.Conv2D(
        self.output_channels, 3, padding="same", use_bias=True,
        name="fpn_classifier",
        kernel_initializer=self.conv_hyperparams.initializer(),
        kernel_regularizer=self.conv_hyperparams.regularizer)(x)
    logits = layers.ResizeLike(self.upsampling, name="fpn_upsample")(
        [logits, images])
    return x, {fields.PredictionFields.logits: logits}

  @property
  def output_channels(self):
    """Logit channels: 1 if the model is binary, else num_classes."""
    return 1 if self.is_binary else self.num_classes
