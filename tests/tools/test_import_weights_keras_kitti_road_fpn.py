"""Importing the KITTI road project's released model: MobileNetV2 + FPN.

tests/data/keras_kitti_road/ holds a file written by that project's own
v0.1.0 src/model.py (width 0.35, FPN widths 32 / 16, random weights and BN
statistics, saved whole as its train.py did) and its logits and sigmoid
probabilities on a KITTI road frame; its README says how they were made.
"""

import hashlib
import shutil

import h5py
import numpy as np
from PIL import Image
import pytest

from fast_seg.builders import model_builder
from fast_seg.protos import model_pb2
from fast_seg.tools import import_weights
from fast_seg.utils import config_util
from tests import helpers

DATA = helpers.REPO_ROOT / "tests" / "data" / "keras_kitti_road"
H5 = DATA / "fpn_mobilenet_v2.hdf5"
CONFIG = (helpers.REPO_ROOT / "configs" /
          "fpn_mobilenet_v2_kitti_road_160.config")
IMAGE = helpers.SHARED_DATA / "kitti_road" / "images" / "um_000000.png"
SOURCE = "keras_kitti_road"
# The reference's input: rows 50: (the project's crop), resized to 128 x 416
# (stride-32 map 4 x 13).
CROP_TOP, HEIGHT, WIDTH = 50, 128, 416


def fpn_config(num_classes=2, extra=""):
  """The shipped FPN road config at the reference's widths (`extra`: more
  fields of model.fpn, set last)."""
  return config_util.load_pipeline_config(str(CONFIG), overrides=[
      "model { fpn { feature_extractor { filter_scale: 0.35 } "
      f"lateral_depth: 32 head_depth: 16 num_classes: {num_classes} }} }}",
      f"model {{ fpn {{ {extra} }} }}"])


def reference():
  """The frame the reference ran on, prepared as it was, and its outputs."""
  if not IMAGE.exists():
    pytest.skip(f"{IMAGE} is not here")
  frame = np.asarray(Image.open(IMAGE).convert("RGB"))[CROP_TOP:]
  image = np.asarray(Image.fromarray(frame).resize((WIDTH, HEIGHT),
                                                   Image.BILINEAR), np.uint8)
  expected = np.load(DATA / "fpn_reference.npz")
  assert hashlib.sha256(image.tobytes()).hexdigest() == str(
      expected["image_sha256"]), "the prepared frame differs from the reference's"
  return image, expected


def imported(config, tmp_path, path=H5):
  result = import_weights.import_checkpoint(SOURCE, str(path), config,
                                            str(tmp_path))
  return result["model"]


def assert_agrees(model, image, expected):
  logits = model.inference_model(model.preprocess(image[None])).numpy()
  want = expected["logits"]
  assert logits.shape == want.shape == (1, HEIGHT, WIDTH, 1)
  relative = np.abs(logits - want).max() / np.abs(want).max()
  labels = np.mean(model.labels_of(logits).numpy() == (want[..., 0] > 0))
  assert relative <= 1e-4 and labels >= 0.999, (relative, labels)
  probabilities = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  np.testing.assert_allclose(probabilities, expected["probabilities"],
                             rtol=1e-4, atol=1e-6)


def test_import_computes_the_released_models_logits(tmp_path):
  image, expected = reference()
  assert_agrees(imported(fpn_config(), tmp_path), image, expected)
  # Not a constant map: both labels occur.
  assert 0.05 < np.mean(expected["logits"] > 0) < 0.95


def _renumber_head(path):
  """Renames conv2d, conv2d_1.. to conv2d_1, conv2d_2..: Keras 2.2's names,
  those of the released file."""
  with h5py.File(path, "a") as f:
    root = f["model_weights"]
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in root.attrs["layer_names"]]
    heads = sorted((n for n in names if n.split("_")[0] == "conv2d"),
                   key=lambda n: int(n.split("_")[1]) if "_" in n else 0,
                   reverse=True)
    renamed = {}
    for old in heads:
      new = f"conv2d_{int(old.split('_')[1]) + 1 if '_' in old else 1}"
      root.move(old, new)
      root[new].move(old, new)
      root[new].attrs["weight_names"] = [
          w.replace(old + "/", new + "/", 1).encode() for w in
          (x.decode() if isinstance(x, bytes) else x
           for x in root[new].attrs["weight_names"])]
      renamed[old] = new
    root.attrs["layer_names"] = [renamed.get(n, n).encode() for n in names]


def test_head_layers_map_by_creation_order_not_number(tmp_path):
  image, expected = reference()
  renumbered = tmp_path / "keras22.hdf5"
  shutil.copy(H5, renumbered)
  _renumber_head(renumbered)
  with h5py.File(renumbered, "r") as f:
    assert "conv2d_13" in f["model_weights"] and "conv2d" not in f["model_weights"]
  assert_agrees(imported(fpn_config(), tmp_path / "out", renumbered), image,
                expected)


def test_written_config_rebuilds_the_released_graph(tmp_path):
  imported(fpn_config(), tmp_path)
  written = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  arch = written.model.fpn
  assert arch.upsampling == model_pb2.FPN.ASYMMETRIC
  assert arch.merge == model_pb2.FPN.CONCAT and arch.head_convs == 2
  assert arch.hyperparams.batch_norm.epsilon == pytest.approx(1e-3)
  assert [(g.group, g.scale) for g in arch.feature_extractor.group_widths] == [
      ("head", 1.0)]
  model_builder.build(written.model)


def test_a_softmax_config_is_refused_for_the_sigmoid_model(tmp_path):
  config = fpn_config(num_classes=3)
  config.model.fpn.ClearField("binary_output")
  config.model.fpn.loss.softmax_cross_entropy.SetInParent()
  config.eval_config.ClearField("binary_thresholds")
  with pytest.raises(ValueError, match="ends in one sigmoid channel .* needs "
                     "binary_output"):
    imported(config, tmp_path)
  assert not list(tmp_path.iterdir())


def test_other_widths_are_refused_naming_variable_and_shapes(tmp_path):
  with pytest.raises(ValueError, match=r"conv2d/kernel \(1, 1, 1280, 32\) vs "
                     r"\(1, 1, 1280, 48\) in the model"):
    imported(fpn_config(extra="lateral_depth: 48"), tmp_path)
  assert not list(tmp_path.iterdir())


def test_unmapped_layer_is_named(tmp_path):
  extra = tmp_path / "extra.hdf5"
  shutil.copy(H5, extra)
  with h5py.File(extra, "a") as f:
    root = f["model_weights"]
    names = [n if isinstance(n, bytes) else n.encode()
             for n in np.asarray(root.attrs["layer_names"]).tolist()]
    root.attrs["layer_names"] = np.array(names + [b"conv2d_13"])
    group = root.create_group("conv2d_13")
    group.attrs["weight_names"] = [b"conv2d_13/kernel:0"]
    group.create_dataset("conv2d_13/kernel:0", data=np.zeros((1, 1, 16, 1)))
  out = tmp_path / "out"
  with pytest.raises(ValueError, match=r"unmapped, in the checkpoint only "
                     r"\(1\): conv2d_13/kernel"):
    imported(fpn_config(), out, extra)
  assert not out.exists()


def test_segmobilenet_file_with_the_fpn_config_names_its_config(tmp_path):
  with pytest.raises(ValueError, match=r"2017 SegMobileNet .* imports into "
                     r"dilated_fcn .*; the config's model is 'fpn'"):
    imported(fpn_config(), tmp_path, DATA / "seg_mobilenet.hdf5")
