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


def train_pipeline_text(data_dir, num_steps=4, model=None, extra_train="",
                        optimizer=None, image_size=64):
  """A complete, tiny pipeline config over a synthetic dataset in `data_dir`."""
  model = model or model_text(arch="icnet", extractor="mobilenet_v2",
                              num_classes=6, filter_scale=0.25)
  optimizer = optimizer or (
      "adam_optimizer { learning_rate { constant_learning_rate "
      "{ learning_rate: 0.003 } } }")
  return f"""
{model}
train_config {{
  batch_size: 4
  num_steps: {num_steps}
  optimizer {{ {optimizer} }}
  data_augmentation_options {{ random_crop {{ crop_height: {image_size} crop_width: {image_size} }} }}
  data_augmentation_options {{ random_horizontal_flip {{}} }}
  checkpoint_every_n_steps: 2
  log_every_n_steps: 2
  {extra_train}
}}
train_input_reader {{ tf_record_input_path: "{data_dir}/train-*.tfrecord" }}
eval_config {{ num_visualizations: 2 }}
eval_input_reader {{ tf_record_input_path: "{data_dir}/val-*.tfrecord" }}
"""
