"""Importing a TF1 fast-semantic-segmentation ICNet checkpoint.

tests/data/tf1_icnet/ holds a checkpoint written by that project's own code
(a filter_scale 0.125 ICNet-ResNet50, random weights and BN statistics) and
its logits on a Cityscapes frame; its README says how they were made.
"""

import hashlib
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from fast_seg.protos import model_pb2
from fast_seg.tools import import_weights
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers

DATA = helpers.REPO_ROOT / "tests" / "data" / "tf1_icnet"
CHECKPOINT = str(DATA / "model.ckpt")
CONFIG = helpers.REPO_ROOT / "configs" / "icnet_resnet50_0.5_cityscapes_1024.config"
IMAGE = helpers.SHARED_DATA / "cityscapes" / "images" / "aachen_000001_000019.png"
SOURCE = "tf1_fast_semantic_segmentation"


def narrow_config(extra=""):
  """The Cityscapes ICNet-ResNet50 config at the reference's width."""
  return config_util.load_pipeline_config(str(CONFIG), overrides=[
      "model { icnet { feature_extractor { filter_scale: 0.125 } "
      f"{extra} }} }}"])


def reference_image():
  """The frame the reference ran on, resized as it was (PIL bilinear)."""
  if not IMAGE.exists():
    pytest.skip(f"{IMAGE} is not here")
  image = Image.open(IMAGE).convert("RGB").resize((512, 256), Image.BILINEAR)
  image = np.asarray(image, np.uint8)
  reference = np.load(DATA / "reference.npz")
  assert hashlib.sha256(image.tobytes()).hexdigest() == str(
      reference["image_sha256"]), "the resized frame differs from the reference's"
  return image, reference["logits"]


agreement = helpers.logit_agreement


def test_imported_icnet_computes_the_tf1_logits(tmp_path):
  image, expected = reference_image()
  result = import_weights.import_checkpoint(SOURCE, CHECKPOINT, narrow_config(),
                                            str(tmp_path))
  assert result["step"] == 1234
  model = result["model"]
  got = model.inference_model(model.preprocess(image[None])).numpy()
  assert got.shape == expected.shape == (1, 63, 127, 19)
  relative, labels_equal = agreement(got, expected)
  assert relative < 1e-4 and labels_equal >= 0.999, (relative, labels_equal)
  # Not a trivial map: the reference uses many classes.
  assert len(np.unique(expected.argmax(-1))) >= 5


def test_written_checkpoint_and_config_rebuild_the_same_model(tmp_path):
  image, expected = reference_image()
  import_weights.import_checkpoint(SOURCE, CHECKPOINT, narrow_config(),
                                   str(tmp_path))
  config = config_util.load_pipeline_config(str(tmp_path / "pipeline.config"))
  icnet = config.model.icnet
  assert icnet.interpolation == model_pb2.ICNet.TF1_ALIGN_CORNERS
  assert icnet.head_activation == model_pb2.ICNet.RELU6
  assert icnet.feature_extractor.slim_explicit_padding
  assert [(d.stage, d.multiplier) for d in
          icnet.feature_extractor.stage_dilation_multipliers] == [
              ("block3", 2), ("block4", 4)]
  from fast_seg.builders import model_builder  # pylint: disable=import-outside-toplevel
  model = model_builder.build(config.model)
  restored = checkpoint_util.restore_layers(
      [layer for layer in model.keras_model.layers if layer.weights],
      str(tmp_path))
  assert restored > 300
  got = model.inference_model(model.preprocess(image[None])).numpy()
  relative, labels_equal = agreement(got, expected)
  assert relative < 1e-4 and labels_equal >= 0.999


def test_the_tf1_fields_are_off_by_default():
  """Configs that do not set them build fast_seg's own graph."""
  config = narrow_config()
  default = model_pb2.ICNet()
  assert config.model.icnet.interpolation == default.interpolation == 0
  assert config.model.icnet.head_activation == default.head_activation == 0
  assert not config.model.icnet.feature_extractor.slim_explicit_padding
  assert not config.model.icnet.feature_extractor.stage_dilation_multipliers


def _rewrite_checkpoint(prefix, drop=(), add=()):
  """A copy of the reference checkpoint without `drop`, plus `add` names."""
  reader = tf.train.load_checkpoint(CHECKPOINT)
  names = [n for n in reader.get_variable_to_shape_map() if n not in drop]
  tensors = [reader.get_tensor(n) for n in names]
  names += list(add)
  tensors += [np.zeros((1, 1, 8, 8), np.float32) for _ in add]
  tf.io.gfile.makedirs(os.path.dirname(prefix))
  tf.raw_ops.SaveV2(prefix=prefix, tensor_names=names,
                    shape_and_slices=[""] * len(names), tensors=tensors)
  return prefix


def test_refuses_unmapped_and_missing_variables_in_one_line(tmp_path):
  prefix = _rewrite_checkpoint(str(tmp_path / "bad" / "model.ckpt"),
                               drop=("Conv_3/weights",),
                               add=("Extra/weights",))
  result = helpers.run_entry_point(
      "-m", "fast_seg.tools.import_weights", "--from", SOURCE, "--input", prefix,
      "--config_path", CONFIG, "--config_override",
      "model { icnet { feature_extractor { filter_scale: 0.125 } } }",
      "--output_dir", tmp_path / "out")
  helpers.assert_one_named_error(result, [
      "unmapped, in the checkpoint only (1): Extra/weights",
      "missing, the model needs them (1): Conv_3/weights"])
  assert not (tmp_path / "out" / "model.index").exists()


@pytest.mark.parametrize("override, fragment", [
    ("num_classes: 20", "Predictions/Conv/weights (1, 1, 32, 19) vs "
                        "(1, 1, 32, 20)"),
    ("feature_extractor { filter_scale: 0.25 }",
     "SharedFeatureExtractor/resnet_v1_50/conv1/weights (7, 7, 3, 8) vs "
     "(7, 7, 3, 16)"),
])
def test_refuses_a_config_of_another_model(tmp_path, override, fragment):
  config = narrow_config(override)
  with pytest.raises(ValueError, match="other shapes") as error:
    import_weights.import_checkpoint(SOURCE, CHECKPOINT, config, str(tmp_path))
  assert fragment in str(error.value)
  assert "\n" not in str(error.value)


def test_refuses_models_the_map_does_not_cover(tmp_path):
  config = narrow_config()
  config.model.icnet.feature_extractor.type = "mobilenet_v2"
  with pytest.raises(ValueError, match="'mobilenet_v2' is not mapped: its "
                     "dilated_mobilenet trunk is split after expanded_conv_3"):
    import_weights.import_checkpoint(SOURCE, CHECKPOINT, config, str(tmp_path))


def _tf1_variables(path):
  """{name: shape} of a variables.txt ('name [d0, d1]' lines)."""
  shapes = {}
  for line in path.read_text().splitlines():
    name, shape = line.split(" ", 1)
    shapes[name] = [int(d) for d in shape.strip("[]").split(",") if d.strip()]
  return shapes


def test_tf1_pspnet_maps_every_variable_of_its_checkpoint():
  """Names and shapes of a 0.125 PSPNet50 checkpoint of the TF1 code (its
  18 MB are not kept; the logits were verified outside, docs/migrating.md)."""
  shapes = _tf1_variables(helpers.REPO_ROOT / "tests" / "data" / "tf1_pspnet"
                          / "variables.txt")
  config = config_util.load_pipeline_config(
      str(helpers.REPO_ROOT / "configs" / "pspnet50_1.0_cityscapes_713.config"),
      overrides=["model { pspnet { feature_extractor { filter_scale: 0.125 } } }"])
  model, assignments = import_weights.plan(SOURCE, config, shapes, "psp")
  names = {name for _, name, _ in assignments}
  assert names == {n for n in shapes if not n.endswith("/Momentum")
                   and n != "global_step"}
  assert len(assignments) == sum(len(layer.weights)
                                 for layer in model.keras_model.layers)
  pspnet = config.model.pspnet
  assert (pspnet.bin_conv_depth, pspnet.aux_stage) == (512, "block2")
