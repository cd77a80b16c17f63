"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", 2017).

Dilated trunk (output stride 8) on the full image; pyramid pooling with a 1x1
conv per bin, concatenated with the trunk output; 3x3 conv, classifier; an
auxiliary classifier on the second-to-last trunk stage (training only).
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
               binary_output=None):
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="pspnet",
                     binary_output=binary_output)
    self.pyramid_bins = tuple(pyramid_bins)

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    return {"pyramid_bins": config_checks.pyramid_bins(
        config, field_path, DEFAULT_PYRAMID_BINS)}

  def _build_heads(self, images):
    extractor = self.feature_extractor
    endpoints = extractor.build(images)
    deep = endpoints[extractor.stage_names[-1]]
    middle = endpoints[extractor.stage_names[-2]]
    width = extractor.width(512, base.Rounding.BACKBONE)
    branches = [deep]
    for bins in self.pyramid_bins:
      p = layers.AdaptiveAveragePool(bins, name=f"pspnet_pool_{bins}")(deep)
      p = self.conv_bn(p, width, 1, name=f"pspnet_pool_{bins}_conv")
      branches.append(layers.ResizeLike(name=f"pspnet_pool_{bins}_upsample")(
          [p, deep]))
    x = keras.layers.Concatenate(name="pspnet_concat")(branches)
    x = self.conv_bn(x, width, 3, name="pspnet_fuse_conv")
    return x, {
        fields.PredictionFields.logits: self.classifier("pspnet_classifier")(x),
        AUX: self.classifier("pspnet_aux_classifier")(middle),
    }
