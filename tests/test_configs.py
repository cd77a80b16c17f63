"""Every shipped config parses, builds its model and optimizer, and is coherent.

A config that only fails when someone starts a 30k-step run is caught here.
"""

import pytest

from fast_seg.builders import model_builder
from fast_seg.builders import optimizer_builder
from fast_seg.builders import preprocessor_builder
from fast_seg.utils import config_util
from tests import helpers

CONFIG_DIR = helpers.REPO_ROOT / "configs"
CONFIG_PATHS = sorted(CONFIG_DIR.glob("*.config"))


def test_configs_exist():
  names = {path.name for path in CONFIG_PATHS}
  assert {"icnet_resnet50_1.0_cityscapes_1024.config",
          "icnet_resnet50_0.5_cityscapes_1024.config",
          "icnet_mobilenet_v2_1.0_cityscapes_1024.config",
          "pspnet50_1.0_cityscapes_713.config",
          "icnet_mobilenet_v2_camvid_360.config"} <= names


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda p: p.name)
def test_config_builds(path):
  config = config_util.load_pipeline_config(str(path))
  arch = config_util.get_model_config(config.model)

  model = model_builder.build(config.model)
  assert model.num_classes == arch.num_classes
  assert model.inference_model.count_params() > 0

  optimizer, schedule = optimizer_builder.build(
      config.train_config.optimizer, config.train_config.num_steps)
  assert optimizer is not None
  assert float(schedule(0)) > 0

  names = list(config.eval_config.class_names)
  assert len(names) == arch.num_classes
  assert len(set(names)) == len(names)

  # Batches need one example size, so the augmentations must end fixed.
  steps = config.train_config.data_augmentation_options
  preprocessor_builder.build_sequence(steps, arch.ignore_label)
  if config.train_config.batch_size > 1:
    assert preprocessor_builder.ends_with_fixed_size(steps)
  assert config.train_input_reader.tf_record_input_path
  assert config.eval_input_reader.tf_record_input_path


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda p: p.name)
def test_config_header_names_itself(path):
  """The comment block's command lines are copy-pasteable for this file."""
  text = path.read_text()
  header = text[:text.index("model {")]
  assert header.startswith("#")
  assert f"configs/{path.name}" in header
