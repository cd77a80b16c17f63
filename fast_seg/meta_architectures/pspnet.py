"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", 2017).

Dilated trunk (output stride 8) on the full image; pyramid pooling with a 1x1
conv per bin, concatenated with the trunk output; 3x3 conv, classifier; an
auxiliary classifier on the second-to-last trunk stage (training only).

A model trained by the TF1 project runs here unchanged with its fields set
(fast_seg.tools.import_weights sets them): `interpolation:
TF1_ALIGN_CORNERS` (its pyramid windows and resizes), `head_activation:
RELU6`, `bin_conv_depth: 512` and `aux_stage: "block2"`.
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.feature_extractors import base
from fast_seg.meta_architectures import config_checks

AUX = "aux"
DEFAULT_PYRAMID_BINS = (1, 2, 3, 6)


@model.register("pspnet")
class PSPNet(model.SegmentationModel):
  """Pyramid scene parsing network."""

  default_aux_weights = {AUX: 0.4}

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, pyramid_bins=DEFAULT_PYRAMID_BINS,
               binary_output=None, tf1_interpolation=False,
               head_relu_max=None, bin_conv_depth=0, aux_stage=None):
    """See model.SegmentationModel; besides:

    Args:
      pyramid_bins: bins of the pyramid pooling.
      tf1_interpolation: the TF1 project's pyramid windows and resizes.
      head_relu_max: cap of the ReLU after the bin convs and the fuse conv
        (6.0: the TF1 project's ReLU6); None: plain ReLU.
      bin_conv_depth: width of the bin convs; 0: 512 at filter_scale.
      aux_stage: trunk stage of the aux classifier; None: second-to-last.
    """
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="pspnet",
                     binary_output=binary_output)
    self.pyramid_bins = tuple(pyramid_bins)
    self.tf1_interpolation = tf1_interpolation
    self.head_relu_max = head_relu_max
    self.bin_conv_depth = bin_conv_depth
    self.aux_stage = aux_stage or feature_extractor.stage_names[-2]

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    if config.bin_conv_depth < 0:
      raise ValueError(f"{field_path}.bin_conv_depth must be >= 0, got "
                       f"{config.bin_conv_depth}")
    return {"pyramid_bins": config_checks.pyramid_bins(
        config, field_path, DEFAULT_PYRAMID_BINS),
            **config_checks.tf1_graph_kwargs(config, field_path),
            "bin_conv_depth": config.bin_conv_depth,
            "aux_stage": config.aux_stage or None}

  def _check_aux_stage(self):
    stages = self.feature_extractor.stage_names
    if self.aux_stage not in stages[:-1]:
      raise ValueError(
          f"model.pspnet.aux_stage: '{self.aux_stage}' is not a stage before "
          f"the last of {self.feature_extractor.name}; allowed: "
          f"{', '.join(stages[:-1])}")

  def _build_heads(self, images):
    self._check_aux_stage()
    extractor = self.feature_extractor
    endpoints = extractor.build(images)
    deep = endpoints[extractor.stage_names[-1]]
    middle = endpoints[self.aux_stage]
    width = extractor.width(512, base.Rounding.BACKBONE)
    pool, mode = layers.pyramid_pooling_layers(self.tf1_interpolation)
    branches = [deep]
    for bins in self.pyramid_bins:
      p = pool(bins, name=f"pspnet_pool_{bins}")(deep)
      p = self.conv_bn(p, self.bin_conv_depth or width, 1,
                       name=f"pspnet_pool_{bins}_conv",
                       relu_max=self.head_relu_max)
      branches.append(layers.ResizeLike(
          mode, name=f"pspnet_pool_{bins}_upsample")([p, deep]))
    x = keras.layers.Concatenate(name="pspnet_concat")(branches)
    x = self.conv_bn(x, width, 3, name="pspnet_fuse_conv",
                     relu_max=self.head_relu_max)
    return x, {
        fields.PredictionFields.logits: self.classifier("pspnet_classifier")(x),
        AUX: self.classifier("pspnet_aux_classifier")(middle),
    }
