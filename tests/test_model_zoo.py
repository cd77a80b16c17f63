"""The committed CamVid weights reproduce the test mIoU that docs/camvid.md states."""

import json

import pytest

from fast_seg.data import convert
from fast_seg.data.converters import camvid
from fast_seg.evaluation import eval_lib
from fast_seg.utils import config_util
from tests import helpers

SOURCE = helpers.SHARED_DATA / "camvid"
ZOO = helpers.REPO_ROOT / "model_zoo" / "camvid"
pytestmark = pytest.mark.skipif(
    not SOURCE.is_dir(), reason=f"CamVid not found at {SOURCE}")


@pytest.fixture(scope="module")
def camvid_test(tmp_path_factory):
  out = tmp_path_factory.mktemp("camvid")
  convert.convert(camvid.CamVidConverter(str(SOURCE)), str(out), splits=["test"],
                  workers=2, progress=False, log=lambda line: None)
  return out


def _documented(name):
  models = json.loads((helpers.REPO_ROOT / "docs" / "camvid_zoo.json").read_text())["models"]
  return next(m for m in models if m["name"] == name)


def _evaluate(name, camvid_test, tmp_path):
  folder = ZOO / name
  config = config_util.load_pipeline_config(
      str(folder / "pipeline.config"),
      [f'eval_input_reader {{ tf_record_input_path: "{camvid_test}/test-*.tfrecord" }}'])
  return eval_lib.evaluate(config, None, str(tmp_path), checkpoint=str(folder))[0]


@pytest.mark.parametrize("name", [
    "icnet_mobilenet_v2_0.25_camvid_360",
    "icnet_mobilenet_v2_0.25_camvid_trainval_360",
    pytest.param("icnet_mobilenet_v2_1.0_camvid_360", marks=pytest.mark.slow),
])
def test_zoo_weights_reproduce_the_documented_test_miou(name, camvid_test, tmp_path):
  result = _evaluate(name, camvid_test, tmp_path)
  assert result["num_examples"] == 233
  assert 100 * result["miou"] == pytest.approx(100 * _documented(name)["miou"], abs=0.01)
