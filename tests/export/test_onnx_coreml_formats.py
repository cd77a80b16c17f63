"""ONNX and Core ML exports: ONNX answers as TF does; Core ML specs are right.

Core ML prediction needs macOS, so its checks read the spec: names, shapes,
and the image input's scale/bias against the model's own preprocessing.
"""

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.export import coreml_format
from fast_seg.export import onnx_format
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.utils import checkpoint_util
from tests import helpers

SHAPE = (1, 64, 64, 3)


@pytest.fixture(scope="module")
def restored_model(trained_run):
  """(config, the trained run's model with its checkpoint's weights)."""
  config, logdir = trained_run
  model = model_builder.build(config.model)
  checkpoint_util.restore_layers(
      [l for l in model.inference_model.layers if l.weights], logdir)
  return config, model


def _image():
  """A 64x64 crop of a real CamVid image, or random pixels without the data."""
  paths = sorted((helpers.SHARED_DATA / "camvid" / "images").glob("*.jpg"))
  if not paths:
    return np.random.default_rng(0).integers(0, 256, SHAPE, dtype=np.uint8)
  image = np.asarray(Image.open(paths[0]).convert("RGB"))
  top, left = image.shape[0] // 2 - 32, image.shape[1] // 2 - 32
  return image[None, top:top + 64, left:left + 64]


def _save(model, directory, output):
  return helpers.save_serving_model(model, directory, SHAPE, output)


def test_onnx_matches_saved_model(restored_model, tmp_path):
  _, model = restored_model
  image = _image()

  saved = _save(model, tmp_path / "probabilities", "probabilities")
  info = onnx_format.convert(str(tmp_path / "probabilities"),
                             str(tmp_path / "probabilities.onnx"))
  assert info["opset"] == onnx_format.DEFAULT_OPSET
  assert info["bytes"] > 0 and info["op_count"] == sum(info["ops"].values())
  assert "Conv" in info["ops"] and "Softmax" in info["ops"]
  expected = saved(image)
  actual = runtimes.run_once(info["path"], image)
  assert actual.shape == expected.shape == (1, 64, 64, 6)
  np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)

  saved = _save(model, tmp_path / "labels", "labels")
  info = onnx_format.convert(str(tmp_path / "labels"),
                             str(tmp_path / "labels.onnx"), opset=15)
  assert info["opset"] == 15 and "ArgMax" in info["ops"]
  expected = saved(image)
  actual = runtimes.run_once(info["path"], image)
  assert actual.dtype == np.int32 and actual.shape == (1, 64, 64)
  assert np.mean(actual == expected) >= 0.999


@pytest.mark.parametrize("convert_to, output, path, shape", [
    ("mlprogram", "labels", "model.mlpackage", [1, 64, 64]),
    ("neuralnetwork", "probabilities", "model.mlmodel", [1, 64, 64, 6]),
])
def test_coreml_spec(restored_model, tmp_path, convert_to, output, path, shape):
  import coremltools as ct  # pylint: disable=g-import-not-at-top
  _, model = restored_model
  info = coreml_format.convert(model, str(tmp_path / path), SHAPE,
                               convert_to=convert_to, output=output)
  assert info["spec_type"] == {"mlprogram": "mlProgram",
                               "neuralnetwork": "neuralNetwork"}[convert_to]
  assert info["bytes"] > 0
  assert info["inputs"] == [{"name": "image", "kind": "imageType",
                             "shape": [1, 64, 64, 3], "color_space": "RGB"}]
  (spec_output,) = info["outputs"]  # the main head only
  assert spec_output["name"] == output and spec_output["shape"] == shape

  # The image input's scale/bias is the model's preprocessing.
  pixels = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 3)).astype(
      np.float32)
  baked = info["image_scale"] * pixels + np.asarray(info["image_bias"])
  np.testing.assert_allclose(baked, model.preprocess(pixels).numpy(),
                             rtol=0, atol=1e-5)

  # No auxiliary head in the converted graph.
  spec = ct.models.MLModel(info["path"], skip_model_load=True).get_spec()
  if convert_to == "mlprogram":
    function = spec.mlProgram.functions["main"]
    names = [op.outputs[0].name for op in
             function.block_specializations[function.opset].operations]
  else:
    names = [layer.name for layer in spec.neuralNetwork.layers]
  assert names and not any("aux" in name for name in names)
  assert not any("preprocess" in name or "truediv" in name for name in names)


def test_resnet_preprocessing_is_mean_subtraction():
  model = model_builder.build(helpers.model_config(
      extractor="resnet_v1_50", filter_scale=0.25))
  scale, bias = coreml_format.preprocessing_scale_bias(model)
  assert scale == pytest.approx(1.0)
  np.testing.assert_allclose(bias, [-123.68, -116.78, -103.94], atol=1e-4)


class _Preprocess:

  def __init__(self, function):
    self.preprocess = function


@pytest.mark.parametrize("function, message", [
    (lambda x: x / tf.constant([1.0, 2.0, 4.0]), "one scale"),
    (lambda x: tf.square(x) / 255.0, "not scale"),
    (lambda x: x - tf.reduce_mean(x), "not scale"),
])
def test_preprocessing_scale_bias_rejects_non_affine(function, message):
  with pytest.raises(ValueError, match=message):
    coreml_format.preprocessing_scale_bias(_Preprocess(function))


@pytest.mark.parametrize("contract, output, name, shape", [
    pytest.param("fast_seg", "labels", "labels", [1, 64, 96], marks=pytest.mark.slow),
    ("fast_seg", "probabilities", "probabilities", [1, 64, 96, 1]),
    ("keras_coreml", "probabilities", "output", [1, 64, 96]),
])
def test_binary_mobile_unet_through_core_ml(tmp_path, contract, output, name, shape):
  """The hair model (MobileUNet, one sigmoid channel) as the hair project's
  iOS app took it: an RGB image in, the matte (or mask) out."""
  config = helpers.pipeline_config(helpers.model_text(
      arch="mobile_unet", extractor="mobilenet_v1", num_classes=3, filter_scale=0.25,
      output_stride=32, extra="binary_output { foreground_class_ids: 1 }",
      loss="binary_cross_entropy {}"))
  model = model_builder.build(config.model)
  info = coreml_format.convert(model, str(tmp_path / "hair.mlpackage"), (1, 64, 96, 3),
                               output=output,
                               contract=serving.CONTRACTS[contract])
  assert info["inputs"][0]["name"] == "image" and info["inputs"][0]["shape"] == [1, 64, 96, 3]
  (spec_output,) = info["outputs"]
  assert spec_output["name"] == name and spec_output["shape"] == shape
  # MobileNet's [-1, 1] scaling is the image input's own.
  assert info["image_scale"] == pytest.approx(1 / 127.5)
  assert info["image_bias"] == pytest.approx([-1.0, -1.0, -1.0])
  if output == "probabilities":
    assert "sigmoid" in info["ops"] and "softmax" not in info["ops"]
