"""PSPNet (Zhao et al., "Pyramid Scene Parsing Network", 2017).

Dilated trunk (output stride 8) on the full image; pyramid pooling with a 1x1
conv per bin, concatenated with the trunk output; 3x3 conv, classifier; an
auxiliary classifier on the second-to-last trunk stage (training only).
"""

import tf_keras as keras

from fast_seg.core import layers
from fast_seg.core import model
from fast_seg.core import standard_fields as fields

AUX = "aux"
DEFAULT_AUX_WEIGHTS = {AUX: 0.4}
DEFAULT_PYRAMID_BINS = (1, 2, 3, 6)


class PSPNet(model.SegmentationModel):
  """Pyramid scene parsing network."""

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, pyramid_bins=DEFAULT_PYRAMID_BINS,
               binary_output=None):
    self.pyramid_bins = tuple(pyramid_bins)
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="pspnet",
                     binary_output=binary_output)

  def _build_heads(self, images):
    extractor = self.feature_extractor
    endpoints = extractor.build(images)
    deep = endpoints[extractor.stage_names[-1]]
    middle = endpoints[extractor.stage_names[-2]]
    width = extractor.scaled_depth(512)
    branches = [deep]
    for bins in self.pyramid_bins:
      p = layers.AdaptiveAveragePool(bins, name=f"pspnet_pool_{bins}")(deep)
      p = self.conv_bn(p, width, 1, name=f"pspnet_pool_{bins}_conv")
      branches.append(layers.ResizeLike(name=f"pspnet_pool_{bins}_upsample")(
          [p, deep]))
    x = keras.layers.Concatenate(name="pspnet_concat")(branches)
    x = self.conv_bn(x, width, 3, name="pspnet_fuse_conv")
    return {
        fields.PredictionFields.logits: self.main_head(x, "pspnet_classifier"),
        AUX: self.classifier("pspnet_aux_classifier")(middle),
    }
