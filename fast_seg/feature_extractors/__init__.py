"""Backbones; importing the package registers every feature extractor.

Each module of the package is imported here, so a new backbone is a new
module whose class is decorated with base.register: nothing to list.
"""

from fast_seg.core import registry
from fast_seg.feature_extractors.base import FeatureExtractor
from fast_seg.feature_extractors.base import get
from fast_seg.feature_extractors.base import registered_names

registry.import_all_modules(__name__, __path__)
