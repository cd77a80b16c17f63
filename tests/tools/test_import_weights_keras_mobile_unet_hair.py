"""Importing an .h5 of the Keras hair project's MobileUNet.

tests/data/keras_mobile_unet_hair/ holds an .h5 written by that project's
own code (alpha 0.25, alpha_up 1.0, random weights and BN statistics, its
unnamed layers numbered as in a second build of a session) and its logits
on a Figaro-1k photo at 128x128 and 160x160; its README says how they were
made.
"""

import hashlib

import numpy as np
from PIL import Image
import pytest

from fast_seg.builders import model_builder
from fast_seg.protos import model_pb2
from fast_seg.tools import import_weights
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from fast_seg.utils import keras_h5
from tests import helpers
from third_party import keras_mobile_unet_hair

DATA = helpers.REPO_ROOT / "tests" / "data" / "keras_mobile_unet_hair"
H5 = str(DATA / "model.h5")
CONFIG = helpers.REPO_ROOT / "configs" / "mobile_unet_mobilenet_v1_hair_128.config"
IMAGE = helpers.SHARED_DATA / "figaro1k_hair" / "images" / "sample_1.png"
SOURCE = "keras_mobile_unet_hair"
# The reference's alpha and alpha_up.
NARROW = ("feature_extractor { filter_scale: 0.25 } "
          "decoder_width_multiplier: 1.0")


def narrow_config(extra=""):
  """The hair config at the reference's widths."""
  return config_util.load_pipeline_config(str(CONFIG), overrides=[
      f"model {{ mobile_unet {{ {NARROW} {extra} }} }}"])


def reference(size):
  """The photo as the reference saw it (PIL bilinear to size x size) and
  the project's logits on it (before its sigmoid)."""
  if not IMAGE.exists():
    pytest.skip(f"{IMAGE} is not here")
  image = Image.open(IMAGE).convert("RGB").resize((size, size), Image.BILINEAR)
  image = np.asarray(image, np.uint8)
  stored = np.load(DATA / "reference.npz")
  assert hashlib.sha256(image.tobytes()).hexdigest() == str(
      stored[f"image_sha256_{size}"]), "the resized photo differs"
  return image, stored[f"logits_{size}"]


def agreement(got, expected):
  """(max |difference| / max |expected|, fraction of equal hair labels)."""
  relative = np.abs(got - expected).max() / np.abs(expected).max()
  return relative, np.mean((got > 0) == (expected > 0))


def file_shapes():
  with keras_h5.KerasH5Weights(H5) as reader:
    return reader.get_variable_to_shape_map()


@pytest.fixture(scope="module", name="imported")
def imported_fixture(tmp_path_factory):
  """The reference .h5 imported once: (result, output folder)."""
  output_dir = tmp_path_factory.mktemp("imported")
  return import_weights.import_checkpoint(SOURCE, H5, narrow_config(),
                                          str(output_dir)), output_dir


# 160: the stride-32 map is 5x5, odd (the project takes multiples of 32).
@pytest.mark.parametrize("size", [128, 160])
def test_imported_model_computes_the_projects_logits(imported, size):
  image, expected = reference(size)
  model = imported[0]["model"]
  got = model.inference_model(model.preprocess(image[None])).numpy()
  assert got.shape == expected.shape == (1, size, size, 1)
  relative, labels_equal = agreement(got, expected)
  assert relative < 1e-4 and labels_equal >= 0.999, (relative, labels_equal)
  # Not a trivial map: both labels are frequent.
  assert 0.3 < np.mean(expected > 0) < 0.7


def test_written_checkpoint_and_config_rebuild_the_same_model(imported):
  image, expected = reference(128)
  result, output_dir = imported
  assert result["step"] is None
  config = config_util.load_pipeline_config(str(output_dir / "pipeline.config"))
  unet = config.model.mobile_unet
  assert unet.decoder_layout == model_pb2.MobileUNet.KERAS_HAIR
  assert list(unet.feature_extractor.input_mean) == pytest.approx([29.24429131])
  assert list(unet.feature_extractor.input_std) == pytest.approx(
      [69.8833313, 63.37436676, 61.38568878])
  assert unet.hyperparams.batch_norm.epsilon == pytest.approx(1e-3)
  model = model_builder.build(config.model)
  restored = checkpoint_util.restore_layers(
      [layer for layer in model.keras_model.layers if layer.weights],
      str(output_dir))
  assert restored == result["num_weights"]
  got = model.inference_model(model.preprocess(image[None])).numpy()
  relative, labels_equal = agreement(got, expected)
  assert relative < 1e-4 and labels_equal >= 0.999


def test_every_variable_maps_in_the_files_numbering():
  """The file's unnamed layers are numbered from conv2d_transpose_4 and
  conv2d_1 (a second build in its session); all are used."""
  shapes = file_shapes()
  _, assignments = import_weights.plan(SOURCE, narrow_config(), shapes, H5)
  names = {name for _, name, _ in assignments}
  assert names == set(shapes)
  assert {"conv2d_transpose_4/bias", "conv2d_transpose_7/kernel",
          "conv2d_1/kernel"} <= names


def test_renumbered_follows_creation_order():
  names = ["conv2d_transpose_12/kernel", "conv2d_transpose_9/kernel",
           "conv2d_transpose_10/kernel", "conv2d_transpose_11/kernel",
           "conv2d_3/kernel", "conv_18/kernel"]
  name_map = keras_mobile_unet_hair.renumbered(
      keras_mobile_unet_hair.mobile_unet, names)
  assert name_map("mobile_unet_up16_upsample", "kernel") == \
      "conv2d_transpose_9/kernel"
  assert name_map("mobile_unet_up2_upsample", "kernel") == \
      "conv2d_transpose_12/kernel"
  assert name_map("mobile_unet_classifier", "bias") == "conv2d_3/bias"
  assert name_map("mobile_unet_up1_conv_bn", "gamma") == "conv_18_bn/gamma"
  assert name_map("mobilenet_v1_Conv2d_0", "kernel") == "conv_0/kernel"
  with pytest.raises(KeyError, match="mobile_unet_up16_upsample_bn"):
    name_map("mobile_unet_up16_upsample_bn", "gamma")


@pytest.mark.parametrize("override, fragment", [
    # Without binary_output: a softmax over num_classes 2, not one sigmoid.
    ("", "conv2d_1/kernel (1, 1, 8, 1) vs (1, 1, 8, 2)"),
    # alpha_up 0.25 configured for this alpha_up 1.0 file.
    ("binary_output {} decoder_width_multiplier: 0.25",
     "conv_pw_14/kernel (1, 1, 256, 128) vs (1, 1, 256, 32)"),
])
def test_refuses_a_config_of_another_model(override, fragment):
  config = narrow_config(override)
  if "binary_output" not in override:
    config.model.mobile_unet.ClearField("binary_output")
  with pytest.raises(ValueError, match="other shapes") as error:
    import_weights.plan(SOURCE, config, file_shapes(), H5)
  assert fragment in str(error.value)
  assert "\n" not in str(error.value)


def test_refuses_unmapped_and_missing_variables_in_one_line():
  shapes = dict(file_shapes())
  del shapes["conv_pw_15_bn/moving_mean"]
  shapes["dropout_head/kernel"] = (1, 1, 8, 8)
  with pytest.raises(ValueError) as error:
    import_weights.plan(SOURCE, narrow_config(), shapes, H5)
  message = str(error.value)
  assert "unmapped, in the checkpoint only (1): dropout_head/kernel" in message
  assert "missing, the model needs them (1): conv_pw_15_bn/moving_mean" in \
      message
  assert "\n" not in message


def test_refuses_models_the_map_does_not_cover():
  config = narrow_config()
  config.model.mobile_unet.feature_extractor.type = "mobilenet_v2"
  with pytest.raises(ValueError, match="encoder is MobileNetV1 .* the "
                     "config's is 'mobilenet_v2'"):
    import_weights.plan(SOURCE, config, file_shapes(), H5)
  icnet = config_util.load_pipeline_config(str(
      helpers.REPO_ROOT / "configs" / "icnet_mobilenet_v2_synthetic_128.config"))
  with pytest.raises(ValueError, match="the config's model is 'icnet'"):
    import_weights.plan(SOURCE, icnet, file_shapes(), H5)


def test_the_hair_fields_are_off_by_default():
  """The shipped hair config builds fast_seg's own MobileUNet and input."""
  unet = config_util.load_pipeline_config(str(CONFIG)).model.mobile_unet
  assert unet.decoder_layout == model_pb2.MobileUNet.FAST_SEG == 0
  assert not unet.feature_extractor.input_mean
  assert not unet.feature_extractor.input_std


@pytest.mark.parametrize("extra, fragment", [
    ("feature_extractor { input_mean: [1, 2] input_std: [1] }",
     "model.mobile_unet.feature_extractor.input_mean needs 1 value or 3"),
    ("feature_extractor { input_mean: [1] }",
     "model.mobile_unet.feature_extractor.input_std needs 1 value or 3"),
    ("feature_extractor { input_mean: [1] input_std: [1, 0, 1] }",
     "model.mobile_unet.feature_extractor.input_std must be > 0"),
    ("decoder_layout: KERAS_HAIR feature_extractor { type: 'mobilenet_v2' }",
     "decoder_layout KERAS_HAIR needs feature_extractor.type 'mobilenet_v1'"),
    ("decoder_layout: KERAS_HAIR upsampling: BILINEAR",
     "decoder_layout KERAS_HAIR needs upsampling TRANSPOSED_CONV"),
])
def test_bad_hair_fields_are_refused_by_name(extra, fragment):
  config = narrow_config(extra)
  with pytest.raises(ValueError, match=fragment):
    model_builder.build(config.model)


def test_input_normalization_replaces_the_trunks_own():
  """(x - mean) / std_c: one scale in preprocessing (Core ML's image input
  has one), the per-channel rest as the network's first layer."""
  config = narrow_config("feature_extractor { input_mean: [10] "
                         "input_std: [2, 4, 6] }")
  model = model_builder.build(config.model)
  pixel = np.array([[[[20.0, 30.0, 70.0]]]], np.float32)
  preprocessed = model.preprocess(pixel)
  assert preprocessed.numpy().ravel().tolist() == [2.5, 5.0, 15.0]
  first = model.inference_model.get_layer("mobilenet_v1_input_channel_scale")
  assert first(preprocessed).numpy().ravel() == pytest.approx([5.0, 5.0, 10.0])
  one_std = model_builder.build(narrow_config(
      "feature_extractor { input_mean: [10] input_std: [4] }").model)
  assert one_std.preprocess(pixel).numpy().ravel().tolist() == [2.5, 5.0, 15.0]
  assert "mobilenet_v1_input_channel_scale" not in [
      layer.name for layer in one_std.inference_model.layers]
