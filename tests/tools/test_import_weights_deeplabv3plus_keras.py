"""Importing a Keras DeepLabV3+ project's .h5 (tonandr/ai-platform).

tests/data/deeplabv3plus_keras/ holds an .h5 written by that project's own
code (its MobileNetV2 trunk, a narrow 32-wide cell, random weights and BN
statistics) and its logits on a VOC image, built by the TF 1.x
Keras-applications MobileNetV2 and by Keras 2.15's; its README says how.
"""

import hashlib
import re
import shutil

import h5py
import numpy as np
from PIL import Image
import pytest

from fast_seg.builders import model_builder
from fast_seg.protos import feature_extractor_pb2
from fast_seg.protos import model_pb2
from fast_seg.tools import import_weights
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers

DATA = helpers.REPO_ROOT / "tests" / "data" / "deeplabv3plus_keras"
H5 = DATA / "semantic_segmentation_deeplabv3plus.h5"
CONFIG = (helpers.REPO_ROOT / "configs" /
          "deeplab_v3_plus_mobilenet_v2_os8_voc2012_513.config")
IMAGE = helpers.SHARED_DATA / "voc2012" / "images" / "vainf_val_000.png"
SOURCE = "deeplabv3plus_keras"
# The reference's input: odd, so the two Keras paddings differ.
SIZE = 129
_PADDING = feature_extractor_pb2.FeatureExtractor


def narrow_config(extra="", extractor=""):
  """The VOC DeepLabV3+ config with the reference's cell (its
  encoder_middle_conf example, reduction_size 32, concat_channels 48)."""
  return config_util.load_pipeline_config(str(CONFIG), overrides=[
      f"model {{ deeplab_v3_plus {{ feature_extractor {{ {extractor} }} "
      "dense_prediction_cell { depth: 32 projection_depth: 48 } "
      f"{extra} }} }}"])


def reference():
  """(the image as it was fed, the reference npz)."""
  if not IMAGE.exists():
    pytest.skip(f"{IMAGE} is not here")
  image = Image.open(IMAGE).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
  image = np.asarray(image, np.uint8)
  data = np.load(DATA / "reference.npz")
  assert hashlib.sha256(image.tobytes()).hexdigest() == str(
      data["image_sha256"]), "the resized image differs from the reference's"
  return image, data


agreement = helpers.logit_agreement


def _logits(model, image):
  return model.inference_model(model.preprocess(image[None])).numpy()


def test_imported_model_computes_the_projects_logits(tmp_path):
  image, data = reference()
  result = import_weights.import_checkpoint(SOURCE, str(H5), narrow_config(),
                                            str(tmp_path))
  got, expected = _logits(result["model"], image), data["logits"]
  assert got.shape == expected.shape == (1, 16, 16, 21)
  relative, labels_equal = agreement(got, expected)
  assert relative < 1e-4 and labels_equal >= 0.999, (relative, labels_equal)
  # Not a trivial map: the reference uses many classes.
  assert len(np.unique(expected.argmax(-1))) >= 5


def test_keras_2_padding_matches_an_h5_run_by_keras_2(tmp_path):
  """Keras 2.15's MobileNetV2 pads Conv1 'same': other logits at odd sizes."""
  image, data = reference()
  config = narrow_config(extractor="keras_padding: DEPTHWISE_AFTER")
  result = import_weights.import_checkpoint(SOURCE, str(H5), config,
                                            str(tmp_path))
  got, expected = _logits(result["model"], image), data["logits_keras_2_15"]
  relative, labels_equal = agreement(got, expected)
  assert relative < 1e-4 and labels_equal >= 0.999, (relative, labels_equal)
  assert agreement(data["logits"], expected)[0] > 1e-2


def test_written_checkpoint_and_config_rebuild_the_same_model(tmp_path):
  image, data = reference()
  import_weights.import_checkpoint(SOURCE, str(H5), narrow_config(),
                                   str(tmp_path))
  config = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  arch = config.model.deeplab_v3_plus
  assert (arch.encoder_stage, arch.decoder_depth) == ("stage3", 0)
  assert (arch.classifier_kernel_size, arch.classifier_bias) == (3, False)
  assert arch.dense_prediction_cell.op_form == \
      model_pb2.DensePredictionCell.SEPARABLE_THEN_1X1
  assert arch.hyperparams.batch_norm.epsilon == pytest.approx(0.001)
  assert arch.feature_extractor.keras_padding == \
      _PADDING.CONV1_AND_DEPTHWISE_AFTER
  model = model_builder.build(config.model)
  restored = checkpoint_util.restore_layers(
      [layer for layer in model.keras_model.layers if layer.weights],
      str(tmp_path))
  assert restored > 50
  relative, labels_equal = agreement(_logits(model, image), data["logits"])
  assert relative < 1e-4 and labels_equal >= 0.999


def test_the_fields_are_off_by_default():
  """The shipped config (which does not set them) builds fast_seg's graph."""
  config = config_util.load_pipeline_config(str(CONFIG))
  arch = config.model.deeplab_v3_plus
  assert arch.encoder_stage == ""
  assert (arch.classifier_kernel_size, arch.classifier_bias) == (1, True)
  assert arch.dense_prediction_cell.op_form == 0
  assert arch.dense_prediction_cell.projection_depth == 0
  assert arch.feature_extractor.keras_padding == _PADDING.SAME


def _edited_h5(path, drop, add):
  """A copy of the reference .h5 without weight `drop` of the encoder,
  plus a weight `add` ('layer/kind') in it."""
  shutil.copy(H5, path)
  with h5py.File(path, "r+") as h5:
    group = h5["model_weights"]["encoder"]
    names = [n.decode() if isinstance(n, bytes) else n
             for n in list(group.attrs["weight_names"])]
    names.remove(drop + ":0")
    del group[drop + ":0"]
    group.create_dataset(add + ":0", data=np.zeros((1, 1, 8, 8), np.float32))
    group.attrs["weight_names"] = [n.encode() for n in names + [add + ":0"]]
  return path


def test_refuses_unmapped_and_missing_weights_in_one_line(tmp_path):
  path = _edited_h5(tmp_path / "bad.h5", drop="conv2d_5/kernel",
                    add="extra_conv/kernel")
  result = helpers.run_entry_point(
      "-m", "fast_seg.tools.import_weights", "--from", SOURCE, "--input", path,
      "--config_path", CONFIG, "--config_override",
      "model { deeplab_v3_plus { dense_prediction_cell { depth: 32 "
      "projection_depth: 48 } } }", "--output_dir", tmp_path / "out")
  helpers.assert_one_named_error(result, [
      "unmapped, in the checkpoint only (1): encoder/extra_conv/kernel",
      "missing, the model needs them (1): encoder/conv2d_5/kernel"])
  assert not (tmp_path / "out" / "model.index").exists()


def test_refuses_another_number_of_classes(tmp_path):
  with pytest.raises(ValueError, match="other shapes") as error:
    import_weights.import_checkpoint(SOURCE, str(H5),
                                     narrow_config("num_classes: 20"),
                                     str(tmp_path))
  assert "decoder/conv2d_6/kernel (3, 3, 48, 21) vs (3, 3, 48, 20)" in str(
      error.value)
  assert "\n" not in str(error.value)


@pytest.mark.parametrize("override, fragment", [
    ("aspp {}", "its encoder_middle_conf is a dense prediction cell"),
    ("feature_extractor { output_stride: 16 }",
     "cuts MobileNetV2 at block_5_add (stride 8)"),
    ("feature_extractor { type: 'resnet_v1_50' }",
     "builds on Keras' MobileNetV2"),
])
def test_refuses_configs_its_code_cannot_have_built(tmp_path, override,
                                                    fragment):
  with pytest.raises(ValueError, match="--from deeplabv3plus_keras") as error:
    import_weights.import_checkpoint(SOURCE, str(H5), narrow_config(override),
                                     str(tmp_path))
  assert fragment in str(error.value)


def _shift_numbers(path, shift):
  """Renumbers every automatically named head layer by `shift`
  (conv2d_5 -> conv2d_8), as a process that had built other layers first
  would have named them; the nested models keep their own groups."""
  pattern = r"^(separable_conv2d|conv2d|batch_normalization)(?:_(\d+))?$"
  with h5py.File(path, "a") as f:
    for nested in ("encoder", "decoder"):
      group = f["model_weights"][nested]
      weight_names = [w.decode() if isinstance(w, bytes) else str(w)
                      for w in group.attrs["weight_names"]]
      matches = [(layer, re.match(pattern, layer)) for layer in list(group)]
      renames = {layer: f"{m.group(1)}_{int(m.group(2) or 0) + shift}"
                 for layer, m in matches if m}
      for layer in sorted(renames, key=lambda l: -int(renames[l].rsplit("_", 1)[1])):
        group.move(layer, renames[layer])
      group.attrs["weight_names"] = [
          "/".join([renames.get(w.split("/")[0], w.split("/")[0])] +
                   w.split("/")[1:]).encode() for w in weight_names]
      assert renames, f"no numbered layer in {nested}"


def test_a_file_numbered_from_further_on_imports_the_same(tmp_path):
  """Keras numbers unnamed layers per process: the map follows the file's
  order, not its numbers (third_party/keras_layer_numbering.py)."""
  image, data = reference()
  shifted = tmp_path / "shifted.h5"
  shutil.copy(H5, shifted)
  _shift_numbers(shifted, 3)
  with h5py.File(shifted, "r") as f:
    assert "conv2d_9" in f["model_weights"]["decoder"]  # decoder/conv2d_6 + 3
  result = import_weights.import_checkpoint(
      SOURCE, str(shifted), narrow_config(), str(tmp_path / "out"))
  relative, labels_equal = agreement(_logits(result["model"], image),
                                     data["logits"])
  assert relative < 1e-4 and labels_equal >= 0.999, (relative, labels_equal)
