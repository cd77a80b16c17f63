"""Backbones; importing the package registers every feature extractor."""

from fast_seg.feature_extractors import base
from fast_seg.feature_extractors import mobilenet_v1
from fast_seg.feature_extractors import mobilenet_v2
from fast_seg.feature_extractors import resnet_v1
from fast_seg.feature_extractors.base import FeatureExtractor
from fast_seg.feature_extractors.base import get
from fast_seg.feature_extractors.base import registered_names
