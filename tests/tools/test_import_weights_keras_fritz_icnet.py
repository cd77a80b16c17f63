"""Importing a .h5 of fritz-image-segmentation's Keras ICNet.

tests/data/keras_fritz_icnet/ holds a .h5 written by that project's own code
(alpha 0.125, 16 classes, random weights and BN statistics, the training
model with its aux heads) and its logits on an ADE20K image at 384x384; its
README says how they were made.
"""

import hashlib

import numpy as np
from PIL import Image
import pytest

from fast_seg.protos import model_pb2
from fast_seg.tools import import_weights
from fast_seg.utils import config_util
from tests import helpers

DATA = helpers.REPO_ROOT / "tests" / "data" / "keras_fritz_icnet"
H5 = str(DATA / "icnet_alpha_0.125.h5")
CONFIG = (helpers.REPO_ROOT / "configs" /
          "icnet_mobilenet_v2_ade20k_whitelist_768.config")
IMAGE = helpers.SHARED_DATA / "ade20k" / "images" / "ADE_val_00001519.png"
SOURCE = "keras_fritz_icnet"
# Its alpha 0.125 is filter_scale 0.0625 here (alpha = 2 x filter_scale).
NARROW = "model { icnet { feature_extractor { filter_scale: 0.0625 } } }"
HEADS = ("logits", "aux_1_8", "aux_1_16")


def narrow_config(override=NARROW):
  return config_util.load_pipeline_config(str(CONFIG), overrides=[override])


def reference_image():
  """The image the reference ran on, resized as it was (PIL bilinear)."""
  if not IMAGE.exists():
    pytest.skip(f"{IMAGE} is not here")
  image = Image.open(IMAGE).convert("RGB").resize((384, 384), Image.BILINEAR)
  image = np.asarray(image, np.uint8)
  reference = np.load(DATA / "reference.npz")
  assert hashlib.sha256(image.tobytes()).hexdigest() == str(
      reference["image_sha256"]), "the resized image differs from the reference's"
  return image, reference


agreement = helpers.logit_agreement


def _outputs(model, image):
  outputs = model.keras_model(model.preprocess(image[None]), training=False)
  return {head: np.asarray(outputs[head]) for head in HEADS}


def test_imported_icnet_computes_the_keras_logits_and_aux_heads(tmp_path):
  image, reference = reference_image()
  result = import_weights.import_checkpoint(SOURCE, H5, narrow_config(),
                                            str(tmp_path))
  got = _outputs(result["model"], image)
  assert got["logits"].shape == reference["logits"].shape == (1, 96, 96, 16)
  for head in HEADS:
    relative, labels_equal = agreement(got[head], reference[head])
    assert relative < 1e-4 and labels_equal >= 0.999, (head, relative,
                                                         labels_equal)
  # Not a trivial map: the reference uses several classes.
  assert len(np.unique(reference["logits"].argmax(-1))) >= 5
  # The written config rebuilds that graph.
  written = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  icnet = written.model.icnet
  assert icnet.feature_extractor.type == "resnet50_keras_icnet"
  assert icnet.interpolation == model_pb2.ICNet.KERAS_ASYMMETRIC
  assert icnet.head_activation == model_pb2.ICNet.RELU_BEFORE_BATCH_NORM
  assert icnet.full_res_projection
  assert icnet.hyperparams.batch_norm.epsilon == pytest.approx(1e-3)


@pytest.mark.parametrize("field, value", [
    ("interpolation", model_pb2.ICNet.HALF_PIXEL),
    ("head_activation", model_pb2.ICNet.RELU),
])
def test_each_field_is_needed(tmp_path, field, value):
  """Built without one of its fields, the same weights disagree."""
  image, reference = reference_image()
  result = import_weights.import_checkpoint(SOURCE, H5, narrow_config(),
                                            str(tmp_path))
  config = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  setattr(config.model.icnet, field, value)
  from fast_seg.builders import model_builder  # pylint: disable=import-outside-toplevel
  model = model_builder.build(config.model)
  imported = {layer.name: layer for layer in result["model"].keras_model.layers}
  for layer in model.keras_model.layers:
    if layer.weights:
      layer.set_weights(imported[layer.name].get_weights())
  relative, _ = agreement(_outputs(model, image)["logits"],
                          reference["logits"])
  assert relative > 1e-2, relative


def test_the_keras_fields_are_off_by_default():
  default = model_pb2.ICNet()
  assert default.interpolation == model_pb2.ICNet.HALF_PIXEL
  assert default.head_activation == model_pb2.ICNet.RELU
  assert not default.full_res_projection
  config = narrow_config()
  assert config.model.icnet.feature_extractor.type == "mobilenet_v2"


def test_refuses_another_num_classes_naming_the_variable(tmp_path):
  config = narrow_config("model { icnet { num_classes: 19 "
                         "feature_extractor { filter_scale: 0.0625 } } }")
  with pytest.raises(ValueError, match="other shapes") as error:
    import_weights.import_checkpoint(SOURCE, H5, config, str(tmp_path))
  assert "conv6_cls/kernel (1, 1, 16, 16) vs (1, 1, 16, 19)" in str(error.value)
  assert "\n" not in str(error.value)


def test_refuses_another_width_naming_the_variable(tmp_path):
  with pytest.raises(ValueError, match="other shapes") as error:
    import_weights.import_checkpoint(SOURCE, H5, narrow_config(
        "model { icnet { feature_extractor { filter_scale: 0.125 } } }"),
        str(tmp_path))
  assert "sub2_conv_1_3x3/kernel (3, 3, 3, 4) vs (3, 3, 3, 8)" in str(
      error.value)


def test_refuses_an_unmapped_layer_in_one_line(tmp_path):
  h5py = pytest.importorskip("h5py")
  bad = tmp_path / "extra.h5"
  bad.write_bytes((DATA / "icnet_alpha_0.125.h5").read_bytes())
  with h5py.File(bad, "r+") as f:
    weights = f["model_weights"] if "model_weights" in f else f
    names = [n.decode() if isinstance(n, bytes) else n
             for n in weights.attrs["layer_names"]]
    group = weights.create_group("extra_conv")
    group.attrs["weight_names"] = [b"extra_conv/kernel:0"]
    group.create_group("extra_conv").create_dataset(
        "kernel:0", data=np.zeros((1, 1, 8, 8), np.float32))
    weights.attrs["layer_names"] = [n.encode() for n in names + ["extra_conv"]]
  result = helpers.run_entry_point(
      "-m", "fast_seg.tools.import_weights", "--from", SOURCE, "--input", bad,
      "--config_path", CONFIG, "--config_override", NARROW,
      "--output_dir", tmp_path / "out")
  helpers.assert_one_named_error(
      result, ["unmapped, in the checkpoint only (1): extra_conv/kernel"])
  assert not (tmp_path / "out" / "model.index").exists()


def test_refuses_other_models_and_bins(tmp_path):
  config = narrow_config("model { icnet { pyramid_bins: [1, 2, 3, 6] "
                         "feature_extractor { filter_scale: 0.0625 } } }")
  with pytest.raises(ValueError, match="its pyramid pools bins 1, 2, 3, 4"):
    import_weights.import_checkpoint(SOURCE, H5, config, str(tmp_path))
  psp = config_util.load_pipeline_config(
      str(helpers.REPO_ROOT / "configs" / "pspnet50_1.0_cityscapes_713.config"))
  with pytest.raises(ValueError, match="imports that project's ICNet; the "
                     "config's model is 'pspnet'"):
    import_weights.import_checkpoint(SOURCE, H5, psp, str(tmp_path))


def test_pspnet_refuses_the_icnet_only_values():
  from fast_seg.builders import model_builder  # pylint: disable=import-outside-toplevel
  config = config_util.load_pipeline_config(
      str(helpers.REPO_ROOT / "configs" / "pspnet50_1.0_cityscapes_713.config"),
      overrides=["model { pspnet { interpolation: KERAS_ASYMMETRIC } }"])
  with pytest.raises(ValueError, match="model.pspnet.interpolation: "
                     "KERAS_ASYMMETRIC is built by ICNet only"):
    model_builder.build(config.model)
