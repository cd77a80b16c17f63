"""Importing the KITTI road project's SegMobileNet .hdf5.

tests/data/keras_kitti_road/ holds a file written by that project's own
seg_mobilenet.py (width 0.25, random weights and BN statistics) and its
logits on a KITTI road frame; its README says how they were made.
"""

import hashlib
import shutil

import h5py
import numpy as np
from PIL import Image
import pytest

from fast_seg.builders import model_builder
from fast_seg.tools import import_weights
from fast_seg.utils import config_util
from tests import helpers

DATA = helpers.REPO_ROOT / "tests" / "data" / "keras_kitti_road"
H5 = DATA / "seg_mobilenet.hdf5"
CONFIG = (helpers.REPO_ROOT / "configs" /
          "dilated_fcn_mobilenet_v1_kitti_road_half.config")
IMAGE = helpers.SHARED_DATA / "kitti_road" / "images" / "um_000000.png"
SOURCE = "keras_kitti_road"
# The reference's input size: 144 / 16 and 464 / 16 are odd.
HEIGHT, WIDTH = 144, 464


def road_config(two_class=False, num_classes=2):
  """The shipped road config at the reference's width (0.25)."""
  config = config_util.load_pipeline_config(str(CONFIG), overrides=[
      "model { dilated_fcn { feature_extractor { filter_scale: 0.25 } "
      f"num_classes: {num_classes} }} }}"])
  if two_class:
    arch = config.model.dilated_fcn
    arch.ClearField("binary_output")
    arch.loss.softmax_cross_entropy.SetInParent()
    config.eval_config.ClearField("binary_thresholds")
  return config


def reference_image():
  """The frame the reference ran on, resized as it was (PIL bilinear)."""
  if not IMAGE.exists():
    pytest.skip(f"{IMAGE} is not here")
  image = Image.open(IMAGE).convert("RGB").resize((WIDTH, HEIGHT),
                                                  Image.BILINEAR)
  image = np.asarray(image, np.uint8)
  reference = np.load(DATA / "reference.npz")
  assert hashlib.sha256(image.tobytes()).hexdigest() == str(
      reference["image_sha256"]), "the resized frame differs from the reference's"
  return image, reference["logits"]


def imported_logits(config, tmp_path, image):
  result = import_weights.import_checkpoint(SOURCE, str(H5), config,
                                            str(tmp_path))
  model = result["model"]
  logits = model.inference_model(model.preprocess(image[None])).numpy()
  return model, logits


def test_two_class_import_computes_segmobilenets_logits(tmp_path):
  image, expected = reference_image()
  model, got = imported_logits(road_config(two_class=True), tmp_path, image)
  assert got.shape == expected.shape == (1, HEIGHT, WIDTH, 2)
  relative = np.abs(got - expected).max() / np.abs(expected).max()
  labels = np.mean(model.labels_of(got).numpy() == expected.argmax(-1))
  assert relative <= 1e-4 and labels >= 0.999, (relative, labels)


def test_binary_road_config_outputs_the_logit_difference(tmp_path):
  # The shipped config keeps its sigmoid output: l1 - l0, whose sigmoid is
  # SegMobileNet's softmax road probability.
  image, expected = reference_image()
  model, got = imported_logits(road_config(), tmp_path, image)
  difference = expected[..., 1:2] - expected[..., 0:1]
  relative = np.abs(got - difference).max() / np.abs(difference).max()
  labels = np.mean(model.labels_of(got).numpy() == expected.argmax(-1))
  assert relative <= 1e-4 and labels >= 0.999, (relative, labels)
  # Not a constant map: both labels occur.
  assert 0.05 < np.mean(expected.argmax(-1)) < 0.95


def test_written_config_rebuilds_segmobilenet(tmp_path):
  import_weights.import_checkpoint(SOURCE, str(H5), road_config(),
                                   str(tmp_path))
  written = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  arch = written.model.dilated_fcn
  assert arch.head == arch.LOGIT_SKIPS
  assert list(arch.dilation_rates) == [1, 1, 2, 4, 4]
  assert arch.feature_extractor.output_stride == 16
  assert arch.hyperparams.batch_norm.epsilon == pytest.approx(1e-3)
  assert arch.HasField("binary_output")


def test_other_num_classes_is_refused_naming_the_head(tmp_path):
  with pytest.raises(ValueError, match=r"conv_pred_s16/kernel \(1, 1, 128, 2\) "
                     r"vs \(1, 1, 128, 3\)"):
    import_weights.import_checkpoint(
        SOURCE, str(H5), road_config(two_class=True, num_classes=3),
        str(tmp_path))
  assert not list(tmp_path.iterdir())


def test_unmapped_layer_is_named(tmp_path):
  extra = tmp_path / "extra.hdf5"
  shutil.copy(H5, extra)
  with h5py.File(extra, "a") as f:
    names = [n if isinstance(n, bytes) else n.encode()
             for n in np.asarray(f.attrs["layer_names"]).tolist()]
    f.attrs["layer_names"] = np.array(names + [b"conv_pred_s2"])
    group = f.create_group("conv_pred_s2")
    group.attrs["weight_names"] = [b"conv_pred_s2/kernel:0"]
    group.create_dataset("conv_pred_s2/kernel:0", data=np.zeros((1, 1, 16, 2)))
  out = tmp_path / "out"
  with pytest.raises(ValueError, match=r"unmapped, in the checkpoint only "
                     r"\(1\): conv_pred_s2/kernel"):
    import_weights.import_checkpoint(SOURCE, str(extra), road_config(),
                                     str(out))
  assert not out.exists()


def test_an_fpn_file_with_this_config_names_the_fpn_config(tmp_path):
  fpn = tmp_path / "best-ep-38-val_iou-0.898-val_loss-0.064.hdf5"
  with h5py.File(fpn, "w") as f:
    f.attrs["layer_names"] = [b"Conv1"]
    group = f.create_group("Conv1")
    group.attrs["weight_names"] = [b"Conv1/kernel:0"]
    group.create_dataset("Conv1/kernel:0", data=np.zeros((3, 3, 3, 32)))
  with pytest.raises(ValueError, match=r"MobileNetV2 FPN .* imports into fpn "
                     r"\(configs/fpn_mobilenet_v2_kitti_road_160.config\); "
                     "the config's model is 'dilated_fcn'"):
    import_weights.import_checkpoint(SOURCE, str(fpn), road_config(),
                                     str(tmp_path / "out"))


def test_non_dilated_fcn_config_is_refused(tmp_path):
  config = config_util.load_pipeline_config(
      str(helpers.REPO_ROOT / "configs" /
          "dilated_fcn_mobilenet_v2_kitti_road_half.config"))
  with pytest.raises(ValueError, match="SegMobileNet is a MobileNetV1"):
    import_weights.import_checkpoint(SOURCE, str(H5), config, str(tmp_path))


@pytest.mark.parametrize("override, message", [
    ("head: LOGIT_SKIPS feature_extractor { output_stride: 8 }",
     "output_stride must be 16"),
    ("head: LOGIT_SKIPS feature_extractor { output_stride: 16 } "
     "dilation_rates: [1, 2]", "one rate for each of mobilenet_v1's "
     "Conv2d_7..11, 5 in all; got 2"),
])
def test_logit_skips_field_checks(override, message):
  config = config_util.load_pipeline_config(str(CONFIG), overrides=[
      f"model {{ dilated_fcn {{ {override} }} }}"])
  with pytest.raises(ValueError, match=message):
    model_builder.build(config.model)
