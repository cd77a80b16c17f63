"""TFLite conversion: every quantization mode keeps the SavedModel's answers.

The trained_run model had only 4 steps, and its training is not deterministic:
its probabilities are soft, and from run to run 30-96% of the pixels have a
top-2 margin under 0.06. An int8 model's probabilities are off by up to
~0.02, so int8 flips the arg-max of 2-6% of the pixels however well it
converted. So the int8 and dynamic-range tests bound the probability error,
require full agreement where the float model is not near a tie
(margin >= CLEAR_MARGIN) and ask for only a loose overall agreement."""

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.export import inference_graph
from fast_seg.export import runtimes
from fast_seg.export import tflite_format
from fast_seg.utils import checkpoint_util
from tests import helpers

pytest.importorskip("ai_edge_litert.interpreter")

INPUT_SHAPE = (1, 64, 64, 3)
CAMVID_IMAGES = helpers.SHARED_DATA / "camvid" / "images"
# Top-2 probability margin above which int8 must give the float arg-max.
CLEAR_MARGIN = 0.06


def _save(model, directory, output, input_shape=INPUT_SHAPE):
  """A SavedModel of build_inference_function, saved as export() saves it."""
  serve = inference_graph.build_inference_function(model, input_shape, output=output)
  inference_graph.save_saved_model(model, serve, str(directory))
  return str(directory)


def _run_each(path, images):
  """The .tflite model on each image in turn (its batch size is 1)."""
  return np.concatenate([runtimes.run_once(path, image[np.newaxis])
                         for image in images])


def _agreement(probabilities, reference):
  return np.mean(probabilities.argmax(-1) == reference.argmax(-1))


def _clear_agreement(labels, reference):
  """Arg-max agreement on the pixels where `reference` is not near a tie."""
  top = np.sort(reference, -1)
  clear = top[..., -1] - top[..., -2] >= CLEAR_MARGIN
  # Training is not deterministic: 4-70% of the pixels are clear, by run.
  assert clear.mean() > 0.01
  return np.mean(labels[clear] == reference.argmax(-1)[clear])


@pytest.fixture(scope="module")
def model(trained_run):
  config, logdir = trained_run
  built = model_builder.build(config.model)
  checkpoint_util.restore_layers(
      [l for l in built.inference_model.layers if l.weights], logdir)
  return built


@pytest.fixture(scope="module")
def saved_model(model, tmp_path_factory):
  """saved_model/ of the trained run, with probabilities out."""
  return _save(model, tmp_path_factory.mktemp("tflite") / "saved_model",
               "probabilities")


@pytest.fixture(scope="module")
def val_images(tiny_dataset):
  records = helpers.read_records(str(tiny_dataset / "val-*.tfrecord"))
  images = np.stack([image for image, _ in records.values()])
  assert images.shape[1:] == INPUT_SHAPE[1:], images.shape
  return images


def _camvid_crops(count):
  """64x64 crops of the first `count` CamVid images, if the shared data is there."""
  paths = sorted(CAMVID_IMAGES.glob("*.png")) + sorted(CAMVID_IMAGES.glob("*.jpg"))
  return [np.asarray(Image.open(path).convert("RGB"))[150:214, 100:164]
          for path in paths[:count]]


@pytest.fixture(scope="module")
def images(val_images):
  """A 64x64 CamVid crop when the shared data is there, then the val images."""
  return np.concatenate([np.reshape(_camvid_crops(1), (-1,) + INPUT_SHAPE[1:]),
                         val_images])


@pytest.fixture(scope="module")
def reference(saved_model, images):
  """The SavedModel's probabilities [K, 64, 64, C] for `images`."""
  serve = tf.saved_model.load(saved_model).signatures["serving_default"]
  probabilities = np.concatenate([
      serve(inputs=tf.constant(image[np.newaxis]))["predictions"].numpy()
      for image in images])
  assert len(np.unique(probabilities.argmax(-1))) > 1
  return probabilities


@pytest.fixture(scope="module")
def converted(saved_model, val_images, tmp_path_factory):
  """mode -> convert()'s result, each converted once, when first asked for.

  int8 calibrates on the val images, their mirror images and, when there,
  crops of two CamVid images other than the tested one: calibrated on
  synthetic images only, int8 clipped the CamVid crop's activations (58%
  agreement on it in one run).
  """
  directory = tmp_path_factory.mktemp("tflite_models")
  calibration = np.concatenate(
      [val_images, val_images[:, :, ::-1],
       np.reshape(_camvid_crops(3)[1:], (-1,) + INPUT_SHAPE[1:])])
  results = {}

  def get(mode):
    if mode not in results:
      representative = None
      if mode == "int8":
        representative = lambda: iter(calibration)  # one [64, 64, 3] at a time
      results[mode] = tflite_format.convert(
          saved_model, str(directory / f"{mode}.tflite"), mode, representative)
      print(f"{mode}: {results[mode]['bytes']} B, {results[mode]['op_count']} "
            f"ops {results[mode]['ops']}")
    return results[mode]
  return get


def test_float32_matches_saved_model(converted, images, reference):
  info = converted("none")
  assert info["quantize"] == "none" and info["op_count"] == sum(info["ops"].values())
  assert info["ops"]["CONV_2D"] > 40 and "DEQUANTIZE" not in info["ops"]
  assert set(tflite_format.weight_types(info["path"])) == {"float32"}
  probabilities = _run_each(info["path"], images)
  assert probabilities.dtype == np.float32 and probabilities.shape == reference.shape
  np.testing.assert_allclose(probabilities, reference, rtol=0, atol=1e-4)


def test_float16_weights_agree(converted, images, reference):
  info = converted("float16")
  assert set(tflite_format.weight_types(info["path"])) == {"float16"}
  probabilities = _run_each(info["path"], images)
  print(f"float16: agreement {_agreement(probabilities, reference):.4%}, max "
        f"error {np.abs(probabilities - reference).max():.2e}")
  assert _agreement(probabilities, reference) >= 0.995
  assert np.abs(probabilities - reference).max() < 5e-3


def test_dynamic_range_weights_agree(converted, images, reference):
  info = converted("dynamic")
  types = tflite_format.weight_types(info["path"])
  # The converter leaves weights under 1024 values in float32.
  assert types["int8"] > types.get("float32", 0)
  probabilities = _run_each(info["path"], images)
  agreement = _agreement(probabilities, reference)
  clear = _clear_agreement(probabilities.argmax(-1), reference)
  print(f"dynamic: {types}, agreement {agreement:.4%} ({clear:.4%} where "
        f"clear), max error {np.abs(probabilities - reference).max():.2e}")
  assert clear >= 0.999 and agreement >= 0.95
  assert np.abs(probabilities - reference).mean() < 5e-3


def test_int8_full_integer_agrees(converted, images, reference):
  info = converted("int8")
  assert set(tflite_format.weight_types(info["path"])) == {"int8"}
  # Same interface as the float model: uint8 pixels in, float32 out; the
  # graph quantizes after the preprocessing and dequantizes the softmax.
  assert info["ops"]["QUANTIZE"] == 1 and info["ops"]["DEQUANTIZE"] == 1
  probabilities = _run_each(info["path"], images)
  assert probabilities.dtype == np.float32
  error = np.abs(probabilities - reference)
  agreement = _agreement(probabilities, reference)
  clear = _clear_agreement(probabilities.argmax(-1), reference)
  print(f"int8: agreement {agreement:.4%} ({clear:.4%} where clear), per "
        f"image {[float(round(_agreement(p, r), 4)) for p, r in zip(probabilities, reference)]}, "
        f"mean error {error.mean():.2e}, max {error.max():.2e}")
  assert clear >= 0.999 and agreement >= 0.9
  assert error.mean() < 5e-3 and error.max() < 0.05


def test_int8_labels_model_returns_int32_labels(model, images, reference,
                                                tmp_path):
  saved = _save(model, tmp_path / "saved_model", "labels")
  # An array [K, 64, 64, 3] is cut into batches of the exported size.
  info = tflite_format.convert(saved, str(tmp_path / "labels.tflite"), "int8",
                               [images])
  assert info["ops"]["ARG_MAX"] == 1 and "DEQUANTIZE" not in info["ops"]
  labels = np.concatenate([runtimes.run_once(info["path"], image[np.newaxis])
                           for image in images])
  assert labels.dtype == np.int32 and labels.shape == images.shape[:3]
  agreement = np.mean(labels == reference.argmax(-1))
  clear = _clear_agreement(labels, reference)
  print(f"int8 labels: agreement {agreement:.4%} ({clear:.4%} where clear)")
  assert clear >= 0.999 and agreement >= 0.9


def test_sizes(converted):
  sizes = {mode: converted(mode)["bytes"] for mode in tflite_format.QUANTIZE_MODES}
  print("sizes:", sizes)
  assert sizes["float16"] < 0.6 * sizes["none"]
  assert sizes["dynamic"] < 0.45 * sizes["none"]
  # Not 0.25: per-channel scales and zero points (12 B a channel) and int32
  # biases weigh more in this 0.3M-parameter model than in a full-size one.
  assert sizes["int8"] < 0.45 * sizes["none"]


def test_run_needs_the_exported_shape_and_dtype(converted, images):
  path = converted("none")["path"]
  with pytest.raises(ValueError, match="shape"):
    runtimes.run_once(path, images[:2])
  with pytest.raises(ValueError, match="uint8"):
    runtimes.run_once(path, images[:1].astype(np.float32))


@pytest.mark.parametrize("quantize, images, qat, match", [
    ("int4", None, False, "--quantize must be one of"),
    ("int8", None, False, "--num_calibration_images"),
    ("float16", [np.zeros(INPUT_SHAPE, np.uint8)], False,
     "--num_calibration_images"),
    ("dynamic", None, True, "--quantize int8"),
    ("int8", [np.zeros(INPUT_SHAPE, np.uint8)], True,
     "--num_calibration_images"),
])
def test_bad_combinations(quantize, images, qat, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    tflite_format.convert(str(tmp_path), str(tmp_path / "x.tflite"), quantize,
                          images, qat=qat)
