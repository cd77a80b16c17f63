"""The served labels tail: 'boundary' equals 'resize' (the reference) exactly."""

import json

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.export import export_lib
from fast_seg.export import export_request
from fast_seg.export import full_resolution_labels as labels_lib
from fast_seg.export import runtimes
from fast_seg.utils import config_util
from tests import helpers

ZOO_MODEL = helpers.REPO_ROOT / "model_zoo/camvid/icnet_mobilenet_v2_1.0_camvid_360"
CAMVID_IMAGE = helpers.SHARED_DATA / "camvid/images/0001TP_006690.jpg"


@pytest.fixture(scope="module")
def model():
  return model_builder.build(helpers.model_config(num_classes=6))


def _regions(shape, num_classes, block, seed=0, noise=0.3):
  """Logits [N, h, w, C] of blocky class regions: few mixed cells."""
  rng = np.random.default_rng(seed)
  n, h, w = shape
  coarse = rng.integers(0, num_classes, (n, -(-h // block), -(-w // block)))
  regions = coarse.repeat(block, 1).repeat(block, 2)[:, :h, :w]
  logits = 4.0 * np.eye(num_classes)[regions] + noise * rng.normal(
      size=(n, h, w, num_classes))
  return tf.constant(logits, tf.float32)


def _mixed_fraction(logits):
  """The fraction of 2x2 cells (edge-padded) whose corners disagree."""
  labels = np.pad(np.argmax(logits, -1), [(0, 0), (1, 1), (1, 1)], "edge")
  top_left = labels[:, :-1, :-1]
  mixed = ((top_left != labels[:, :-1, 1:]) | (top_left != labels[:, 1:, :-1])
           | (top_left != labels[:, 1:, 1:]))
  return mixed.mean()


def _both(model, logits, size):
  boundary = tf.function(lambda l: labels_lib.labels(
      model, l, size, labels_lib.BOUNDARY))(logits).numpy()
  resize = labels_lib.labels(model, logits, size, labels_lib.RESIZE).numpy()
  return boundary, resize


def test_axis_layout_by_hand():
  # x4: output i reads (i + 0.5) / 4 - 0.5; outputs 0, 1 fall between the
  # edge padding and pixel 0 (cell 0), so two outputs lie before 0.
  factor, offset, lerps = labels_lib._axis_layout(90, 360)
  assert (factor, offset) == (4, 2)
  np.testing.assert_array_equal(lerps, [0.125, 0.375, 0.625, 0.875])
  factor, offset, lerps = labels_lib._axis_layout(45, 360)
  assert (factor, offset) == (8, 4)
  np.testing.assert_array_equal(lerps, (2 * np.arange(8) + 1) / 16)
  # Not an integer factor, no resize, or float32 positions that do not
  # repeat exactly (x3): the reference resize is used.
  for low, high in ((90, 713), (64, 64), (30, 90)):
    assert labels_lib._axis_layout(low, high) is None


@pytest.mark.parametrize("low,size,block", [
    ((2, 16, 20), (64, 80), 4),    # x4, a batch of two
    ((1, 8, 10), (64, 80), 3),     # x8
    ((1, 16, 10), (64, 40), 5),    # x4 rows, x4 columns of another length
    ((1, 16, 20), (128, 80), 4),   # x8 rows, x4 columns
])
def test_boundary_labels_equal_the_resized_logits_argmax(model, low, size,
                                                         block):
  logits = _regions(low, 6, block)
  assert _mixed_fraction(logits.numpy()) < labels_lib.MAX_MIXED_FRACTION
  boundary, resize = _both(model, logits, size)
  assert boundary.shape == resize.shape == (low[0], *size)
  np.testing.assert_array_equal(boundary, resize)
  # The low-resolution arg-max upsampled is not the same: the test can fail.
  nearest = labels_lib.labels(model, logits, size, labels_lib.NEAREST).numpy()
  assert (nearest != resize).any()


def test_noise_takes_the_resize_branch_with_the_same_labels(model):
  logits = tf.random.stateless_normal((1, 16, 20, 6), seed=(1, 2))
  assert _mixed_fraction(logits.numpy()) > labels_lib.MAX_MIXED_FRACTION
  boundary, resize = _both(model, logits, (64, 80))
  np.testing.assert_array_equal(boundary, resize)


def test_binary_model_thresholds_the_interpolated_logit():
  binary = model_builder.build(helpers.model_config(
      num_classes=2, loss="binary_cross_entropy {}",
      extra="binary_output { threshold: 0.3 }"))
  logits = _regions((1, 16, 20), 2, 4)[..., 1:] - 2.0  # one channel
  boundary, resize = _both(binary, logits, (64, 80))
  assert 0 < resize.mean() < 1
  np.testing.assert_array_equal(boundary, resize)


def test_unknown_method_and_flags_refused():
  with pytest.raises(ValueError, match="--labels_method must be one of auto, "
                     "boundary, resize, nearest"):
    labels_lib.check_method("fast")
  with pytest.raises(ValueError, match="contradicts --labels_method resize"):
    labels_lib.from_flags("resize", fast_labels=True)
  assert labels_lib.from_flags("auto", fast_labels=True) == labels_lib.NEAREST
  assert labels_lib.resolve("auto") == labels_lib.BOUNDARY
  assert labels_lib.resolve("auto", "tflite") == labels_lib.BOUNDARY
  assert labels_lib.resolve("auto", "tflite_int8") == labels_lib.RESIZE
  assert labels_lib.resolve("auto", "onnx") == labels_lib.RESIZE
  assert labels_lib.resolve("nearest", "onnx") == labels_lib.NEAREST
  assert labels_lib.resolve("boundary", "coreml") == labels_lib.RESIZE
  with pytest.raises(ValueError, match="boundary cannot be calibrated"):
    labels_lib.resolve("boundary", "tflite_int8")


@pytest.mark.skipif(not CAMVID_IMAGE.exists(),
                    reason=f"CamVid sample not found at {CAMVID_IMAGE}")
def test_trained_camvid_model_labels_equal_at_two_sizes():
  """A trained model on a real frame: the boundary branch runs, and its
  labels are the reference's at 360x480 (x4) and 720x960 (x4)."""
  config = config_util.load_pipeline_config(str(ZOO_MODEL / "pipeline.config"))
  zoo = export_lib.load_model(config, str(ZOO_MODEL))[0]
  image = tf.io.decode_jpeg(tf.io.read_file(str(CAMVID_IMAGE)))
  for size in ((360, 480), (720, 960)):
    images = tf.image.resize(tf.cast(image, tf.float32), size)[tf.newaxis]
    logits = zoo.predict(zoo.preprocess(images))[
        fields.PredictionFields.logits]
    assert _mixed_fraction(logits.numpy()) < labels_lib.MAX_MIXED_FRACTION
    boundary, resize = _both(zoo, logits, size)
    np.testing.assert_array_equal(boundary, resize)


def test_export_gives_each_runtime_its_exact_tail(trained_run, tmp_path):
  """auto: boundary in TensorFlow and float LiteRT, resize in ONNX."""
  config, logdir = trained_run
  export_lib.export(config, logdir, str(tmp_path), (1, 64, 64, 3),
                    formats=("saved_model", "frozen_graph", "tflite", "onnx"),
                    labels_dtype="uint8", log=lambda line: None)
  report = json.loads((tmp_path / "export_report.json").read_text())
  assert report["labels_method"] == {
      "saved_model": "boundary", "frozen_graph": "boundary",
      "tflite": "boundary", "onnx": "resize"}
  for name in ("saved_model", "frozen_graph", "tflite", "onnx"):
    assert report["formats"][name]["pixel_agreement"] >= 0.999, name
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString((tmp_path / "frozen_inference_graph.pb").read_bytes())
  ops = {node.op for node in graph_def.node}
  ops |= {node.op for f in graph_def.library.function for node in f.node_def}
  assert {"Where", "TensorScatterUpdate", "GatherNd"} <= ops
  # The mixed-cell branch is a subgraph of the IF op.
  assert {"IF", "NOT_EQUAL"} <= set(report["formats"]["tflite"]["ops"])
  onnx_ops = set(report["formats"]["onnx"]["ops"])
  assert "Resize" in onnx_ops and not {"NonZero", "ScatterND"} & onnx_ops
  images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), np.uint8)
  served = runtimes.run_once(graph_def, images)
  assert served.dtype == np.uint8 and served.shape == (1, 64, 64)
  assert runtimes.run_once(str(tmp_path / "model.tflite"), images).dtype == np.uint8


def test_export_refusals():
  with pytest.raises(ValueError, match="--labels_method boundary cannot be "
                     "calibrated for int8 TFLite"):
    export_request.ExportRequest((1, 64, 64, 3), formats=("tflite",),
                                 quantize="int8",
                                 labels_method="boundary").check()
  export_request.ExportRequest((1, 64, 64, 3), formats=("tflite",),
                               quantize="int8", labels_method="auto").check()
  with pytest.raises(ValueError, match="--labels_method must be one of"):
    export_request.ExportRequest((1, 64, 64, 3), labels_method="fast").check()
  request = dict(input_shape=(1, 64, 64, 3), labels_dtype="uint8")
  with pytest.raises(ValueError, match="--labels_dtype sets the type of "
                     "--output labels"):
    export_request.ExportRequest(**request, output="probabilities").check()
  with pytest.raises(ValueError, match="Core ML's labels are int32"):
    export_request.ExportRequest(**request, formats=("coreml",)).check()
  with pytest.raises(ValueError, match="--labels_dtype must be one of"):
    export_request.ExportRequest((1, 64, 64, 3),
                                 labels_dtype="float32").check()
  with pytest.raises(ValueError, match="uint8 holds ids up to 255; the model "
                     "has 300 classes"):
    export_request.ExportRequest(**request).check_num_classes(300)
  export_request.ExportRequest(**request).check_num_classes(256)


def test_converted_boundary_graphs_with_and_without_mixed_cells(model):
  """LiteRT and onnxruntime run the boundary graph on a frame with no class
  boundary (zero mixed cells: empty gathers and scatter) and on one with."""
  tf2onnx = pytest.importorskip("tf2onnx")
  onnxruntime = pytest.importorskip("onnxruntime")
  spec = tf.TensorSpec((1, 16, 20, 6), tf.float32)
  boundary = tf.function(lambda l: labels_lib.labels(
      model, l, (64, 80), labels_lib.BOUNDARY), input_signature=[spec])
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [boundary.get_concrete_function()], boundary)
  interpreter = runtimes.litert().Interpreter(
      model_content=converter.convert())
  interpreter.allocate_tensors()

  def lite(logits):
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], logits)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

  proto, _ = tf2onnx.convert.from_function(boundary, input_signature=[spec])
  session = onnxruntime.InferenceSession(proto.SerializeToString())
  uniform = tf.constant(np.eye(6)[np.full((1, 16, 20), 3)], tf.float32)
  for logits in (uniform, _regions((1, 16, 20), 6, 4)):
    resize = labels_lib.labels(model, logits, (64, 80), labels_lib.RESIZE)
    np.testing.assert_array_equal(boundary(logits), resize)
    np.testing.assert_array_equal(lite(logits.numpy()), resize)
    np.testing.assert_array_equal(
        session.run(None, {session.get_inputs()[0].name: logits.numpy()})[0],
        resize)
