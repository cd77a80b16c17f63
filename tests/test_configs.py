"""Every shipped config parses, builds its model and optimizer, and is coherent.

A config that only fails when someone starts a 30k-step run is caught here.
"""

import re

import pytest

from fast_seg.builders import optimizer_builder
from fast_seg.data import convert
from fast_seg.data import synthetic
from fast_seg.data.converters import ade20k
from fast_seg.data.converters import camvid
from fast_seg.data.converters import cityscapes
from fast_seg.data.converters import pascal_voc
from fast_seg.training import pipeline_check
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
          "icnet_mobilenet_v2_1.0_camvid_360.config",
          "icnet_mobilenet_v2_ade20k_512.config",
          "icnet_mobilenet_v2_voc2012_513.config",
          "icnet_mobilenet_v2_kitti_road_384.config",
          "icnet_mobilenet_v2_hair_224.config",
          "icnet_mobilenet_v2_ade20k_whitelist_768.config",
          "mobile_unet_mobilenet_v1_hair_128.config",
          "dilated_fcn_mobilenet_v1_kitti_road_half.config",
          "deeplab_v3_plus_mobilenet_v2_os8_voc2012_513.config"} <= names


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda p: p.name)
def test_config_builds(path):
  """The pipeline check every command makes: model, optimizer, augmentations,
  readers' batching, train and eval settings (raises naming the field)."""
  config = config_util.load_pipeline_config(str(path))
  pipeline_check.check(config, "all")

  _, schedule = optimizer_builder.build(
      config.train_config.optimizer, config.train_config.num_steps)
  assert float(schedule(0)) > 0
  assert config.train_input_reader.tf_record_input_path
  assert config.eval_input_reader.tf_record_input_path


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda p: p.name)
def test_config_header_names_itself(path):
  """The comment block's command lines are copy-pasteable for this file."""
  text = path.read_text()
  header = text[:text.index("model {")]
  assert header.startswith("#")
  assert f"configs/{path.name}" in header


# The class table each dataset's converter writes (hair: Figaro's two classes).
_DATASET_CLASSES = {
    "camvid": camvid.CLASS_NAMES,
    "cityscapes": cityscapes.CLASS_NAMES,
    "voc2012": pascal_voc.CLASS_NAMES,
    "ade20k": ade20k.CLASS_NAMES,
    "kitti_road": ("not_road", "road"),
    "hair": ("background", "hair"),
    "synthetic": synthetic.CLASS_NAMES,
}


def _dataset_of(path):
  """The dataset a config trains on, from its input path data/<dataset>/."""
  config = config_util.load_pipeline_config(str(path))
  if "synthetic" in path.name:  # the demo writes demo_output/data/
    return "synthetic", config
  directory = config.train_input_reader.tf_record_input_path[0].split("/")[-2]
  if directory == "ade20k_whitelist":
    return "ade20k", config
  return directory, config


def _expected_classes(dataset, header):
  """The converter's class names for the command in the config's header."""
  whitelist = re.search(r"--whitelist '([^']+)'", header)
  if dataset == "ade20k" and whitelist:
    groups = ade20k.parse_whitelist(whitelist.group(1))
    background = "--unlisted ignore" not in header
    return [None] * (len(groups) + int(background))
  return _DATASET_CLASSES[dataset]


@pytest.mark.parametrize("path", CONFIG_PATHS, ids=lambda p: p.name)
def test_config_matches_its_converter(path):
  """num_classes / ignore_label agree with what the converter writes."""
  dataset, config = _dataset_of(path)
  assert dataset in _DATASET_CLASSES, f"{path.name}: unknown dataset {dataset}"
  arch = config_util.get_model_config(config.model)
  header = path.read_text().split("model {")[0]
  assert arch.num_classes == len(_expected_classes(dataset, header))
  assert arch.ignore_label == 255
  if dataset != "synthetic":
    assert f"--dataset {dataset}" in header


def test_every_converter_has_a_config():
  datasets = {_dataset_of(path)[0] for path in CONFIG_PATHS}
  assert set(convert.CONVERTERS) - {"folder"} <= datasets


@pytest.mark.parametrize("path", [p for p in CONFIG_PATHS if "camvid" in p.name],
                         ids=lambda p: p.name)
def test_camvid_configs_select_on_val(path):
  """Select on val, report test once: the configs validate and evaluate on val."""
  config = config_util.load_pipeline_config(str(path))
  assert list(config.eval_input_reader.tf_record_input_path) == ["data/camvid/val-*.tfrecord"]
  assert config.train_config.eval_every_n_steps > 0
  assert "--dataset camvid" in path.read_text()
