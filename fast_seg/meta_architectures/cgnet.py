"""CGNet (Wu et al., "CGNet: A Light-weight Context Guided Network for Semantic
Segmentation"): the context guided trunk and a 1x1 classifier at stride 8.

The trunk (feature_extractors/cgnet.py) does all the work; the head is the
paper's: BN-PReLU on the concatenation of stage3's first and last blocks,
then a 1x1 conv to the classes, upsampled bilinearly to the input. No
auxiliary head: the published model trains with the main loss only.
"""

from fast_seg.core import model
from fast_seg.core import standard_fields as fields
from fast_seg.meta_architectures import config_checks

TRUNK = "cgnet"


@model.register("cgnet")
class CGNetModel(model.SegmentationModel):
  """Context guided network: CGNet trunk, BN-PReLU, classifier."""

  def __init__(self, num_classes, ignore_label, feature_extractor,
               conv_hyperparams, loss, binary_output=None):
    super().__init__(num_classes, ignore_label, feature_extractor,
                     conv_hyperparams, loss, name="cgnet",
                     binary_output=binary_output)

  @classmethod
  def kwargs_from_config(cls, config, field_path):
    if config.feature_extractor.type != TRUNK:
      raise ValueError(
          f"{field_path}.feature_extractor.type must be '{TRUNK}' (CGNet's "
          f"head reads the context guided trunk's stage3), got "
          f"'{config.feature_extractor.type}'")
    config_checks.require_output_stride(
        config, field_path, (8,), "CGNet (its trunk ends at stride 8)")
    return {}

  def _build_heads(self, images):
    extractor = self.feature_extractor
    features = extractor.build(images)["stage3"]
    features = extractor.bn_prelu(features, "cgnet_head")
    return features, {fields.PredictionFields.logits:
                      self.classifier("cgnet_classifier")(features)}
