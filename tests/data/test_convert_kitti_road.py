"""KITTI road (data_road) from the real samples in ../shared/data/kitti_road."""

import json
import shutil

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.data.converters import kitti_road
from tests import helpers

SOURCE = helpers.SHARED_DATA / "kitti_road"
pytestmark = pytest.mark.skipif(
    not SOURCE.is_dir(),
    reason=f"real KITTI road samples not found at {SOURCE}")
UM = ["um_000000", "um_000001"]
# A copy of um_000000 posing as an urban multiple marked lane image: road
# ground truth only, like every umm and uu image.
UMM = "umm_000000"


def _quiet(**kwargs):
  return {"workers": 1, "progress": False, "log": lambda line: None, **kwargs}


@pytest.fixture(name="kitti_dir")
def fixture_kitti_dir(tmp_path):
  """The parent of data_road/training/{image_2,gt_image_2}."""
  training = tmp_path / "src" / kitti_road.ROOT_NAME / "training"
  (training / "image_2").mkdir(parents=True)
  (training / "gt_image_2").mkdir()
  (tmp_path / "src" / kitti_road.ROOT_NAME / "testing" / "image_2").mkdir(
      parents=True)
  for name in UM:
    shutil.copy(SOURCE / "images" / f"{name}.png", training / "image_2")
    category, number = name.split("_")
    for kind in ("road", "lane"):
      gt_name = f"{category}_{kind}_{number}.png"
      shutil.copy(SOURCE / "gt_image_2_orig" / gt_name,
                  training / "gt_image_2")
  shutil.copy(SOURCE / "images" / "um_000000.png",
              training / "image_2" / f"{UMM}.png")
  shutil.copy(SOURCE / "gt_image_2_orig" / "um_road_000000.png",
              training / "gt_image_2" / "umm_road_000000.png")
  return tmp_path / "src"


def _shipped(folder, name):
  return np.asarray(Image.open(SOURCE / folder / f"{name}.png"))


def test_road_labels_match_the_shipped_labels(kitti_dir, tmp_path):
  out = tmp_path / "out"
  summary = convert.convert(kitti_road.KittiRoadConverter(str(kitti_dir)),
                            str(out), **_quiet(workers=2))
  assert summary["splits"]["train"]["problems"] == []
  records = helpers.read_records(str(out / "train-*.tfrecord"))
  assert sorted(records) == UM + [UMM]
  for name, (image, label) in records.items():
    np.testing.assert_array_equal(
        label, _shipped("labels", "um_000000" if name == UMM else name))
    np.testing.assert_array_equal(
        image, _shipped("images", "um_000000" if name == UMM else name))
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["class_names"] == ["not_road", "road"]
  assert info["num_classes"] == 2 and info["ignore_label"] == 255
  assert info["palette"] == [[255, 0, 0], [255, 0, 255]]
  assert 0 < info["ignore_pixel_fraction"]["train"] < 0.05


def test_lane_labels_match_and_umm_is_not_reported(kitti_dir, tmp_path):
  out = tmp_path / "out"
  converter = kitti_road.KittiRoadConverter(
      str(kitti_dir / kitti_road.ROOT_NAME), lane=True)
  summary = convert.convert(converter, str(out), **_quiet())
  assert summary["splits"]["train"]["problems"] == []
  records = helpers.read_records(str(out / "train-*.tfrecord"))
  assert sorted(records) == UM
  for name, (_, label) in records.items():
    np.testing.assert_array_equal(label, _shipped("labels_lane", name))
  # Lane and road ground truth do differ on these images.
  assert not np.array_equal(_shipped("labels", UM[1]),
                            _shipped("labels_lane", UM[1]))
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["class_names"] == ["not_lane", "ego_lane"]


def test_um_image_without_lane_file_is_reported(kitti_dir):
  gt_dir = kitti_dir / kitti_road.ROOT_NAME / "training" / "gt_image_2"
  (gt_dir / "um_lane_000001.png").unlink()
  samples, problems = kitti_road.KittiRoadConverter(
      str(kitti_dir), lane=True).list_pairs("train")
  assert [s.name for s in samples] == ["um_000000"]
  assert [(p.path.endswith("image_2/um_000001.png"), p.message)
          for p in problems] == [
              (True, f"no label file (expected {gt_dir}/um_lane_000001.png)")]


def test_val_fraction_carves_a_val_split(kitti_dir, tmp_path):
  out = tmp_path / "out"
  summary = convert.convert(kitti_road.KittiRoadConverter(str(kitti_dir)),
                            str(out), val_fraction=0.34, **_quiet())
  assert summary["splits"]["train"]["written"] == 2
  assert summary["splits"]["val"]["written"] == 1


def test_unexpected_colour_is_an_error_naming_the_file(kitti_dir, tmp_path):
  path = (kitti_dir / kitti_road.ROOT_NAME / "training" / "gt_image_2"
          / "um_road_000001.png")
  gt = np.asarray(Image.open(path)).copy()
  gt[100, 100:103] = (255, 0, 128)
  Image.fromarray(gt).save(path)
  with pytest.raises(convert_lib.ConversionError) as error:
    convert.convert(kitti_road.KittiRoadConverter(str(kitti_dir)),
                    str(tmp_path / "out"), **_quiet())
  assert error.value.path == str(path)
  assert "(255, 0, 128)" in str(error.value) and "magenta" in str(error.value)
  summary = convert.convert(kitti_road.KittiRoadConverter(str(kitti_dir)),
                            str(tmp_path / "out2"), on_error="skip",
                            **_quiet())
  assert summary["splits"]["train"]["written"] == 2
  assert summary["splits"]["train"]["problems"][0].startswith(f"{path}: ")


def test_single_channel_ground_truth_is_an_error(kitti_dir):
  path = (kitti_dir / kitti_road.ROOT_NAME / "training" / "gt_image_2"
          / "um_road_000000.png")
  shutil.copy(SOURCE / "labels" / "um_000000.png", path)
  converter = kitti_road.KittiRoadConverter(str(kitti_dir))
  samples, _ = converter.list_pairs("train")
  with pytest.raises(convert_lib.ConversionError, match="single-channel"):
    converter.read_label(samples[0], (375, 1242))


def test_missing_layout_and_other_splits(tmp_path, kitti_dir):
  with pytest.raises(FileNotFoundError, match="data_road"):
    kitti_road.KittiRoadConverter(str(tmp_path)).list_pairs("train")
  with pytest.raises(ValueError, match="testing has no ground truth"):
    kitti_road.KittiRoadConverter(str(kitti_dir)).list_pairs("test")
