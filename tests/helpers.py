"""Small configs shared by the tests."""

from pathlib import Path

from fast_seg.utils import config_util

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def model_text(arch="icnet", extractor="mobilenet_v2", num_classes=5,
               filter_scale=1.0, output_stride=8, extra=""):
  """A `model { ... }` block with fast, test-sized settings."""
  return f"""
model {{
  {arch} {{
    num_classes: {num_classes}
    feature_extractor {{ type: "{extractor}" filter_scale: {filter_scale}
                         output_stride: {output_stride} }}
    loss {{ softmax_cross_entropy {{}} }}
    {extra}
  }}
}}"""


def pipeline_config(text):
  return config_util.parse_pipeline_config(text)


def model_config(**kwargs):
  return pipeline_config(model_text(**kwargs)).model
