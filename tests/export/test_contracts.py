"""export.py --contract and flexible --input_shape: the interfaces apps of the
replaced projects were written against, checked by running the exports."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.export import export_lib
from fast_seg.export import export_request
from fast_seg.export import serving
from fast_seg.utils import checkpoint_util
from fast_seg.utils import cli
from tests import helpers


def _keras(config, checkpoint, images, probabilities=False):
  """The Keras model's labels (or probabilities) of float images [N,H,W,3]."""
  model = model_builder.build(config.model)
  checkpoint_util.restore_layers(
      [l for l in model.inference_model.layers if l.weights], checkpoint)
  logits = model.predict(model.preprocess(tf.constant(images, tf.float32)))[
      fields.PredictionFields.logits]
  result = model.postprocess(logits, images.shape[1:3],
                             with_probabilities=probabilities)
  kind = "probabilities" if probabilities else "labels"
  return result[kind].numpy()


def _frozen_graph(path):
  """(inputs tensor, run) of a frozen graph, as a TF1 app would load it."""
  graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.import_graph_def(graph_def, name="")
  session = tf.compat.v1.Session(graph=graph)
  run = lambda images: session.run("predictions:0", {"inputs:0": images})
  return graph.get_tensor_by_name("inputs:0"), run


def _images(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _val_image(tiny_dataset, height, width):
  """A 64x64 synthetic val image (shapes a trained model tells apart), cut."""
  records = helpers.read_records(str(tiny_dataset / "val-*.tfrecord"))
  image = records[sorted(records)[0]][0]
  return image[None, :height, :width]


def test_tf1_contract_int64_labels_with_a_channel_and_zero_padding(trained_run, tiny_dataset,
                                                                  tmp_path):
  config = trained_run[0]
  logdir = helpers.seeded_checkpoint(config, tmp_path)
  out = tmp_path / "tf1"
  info = export_lib.export(config, logdir, str(out), (1, 50, 60, 3),
                           pad_to_shape=(64, 64), formats=("frozen_graph", "onnx"),
                           contract="tf1")
  assert info["contract"] == "tf1" and info["output"].endswith("int64")
  images = _val_image(tiny_dataset, 50, 60)
  inputs, run = _frozen_graph(out / serving.FROZEN_GRAPH_NAME)
  assert inputs.dtype == tf.uint8
  got = run(images)
  assert got.dtype == np.int64 and got.shape == (1, 50, 60, 1)
  # TF1's pad_to_bounding_box: zeros at the bottom and right, not grey.
  padded = np.zeros((1, 64, 64, 3), np.float32)
  padded[:, :50, :60] = images
  expected = _keras(config, logdir, padded)[:, :50, :60]
  assert len(np.unique(expected)) > 1
  np.testing.assert_array_equal(got[..., 0], expected)
  report = json.loads((out / serving.REPORT_NAME).read_text())
  assert report["formats"]["onnx"]["pixel_agreement"] == 1.0


def test_rank_3_and_dynamic_input_shapes(trained_run, tmp_path):
  config, logdir = trained_run
  rank3 = tmp_path / "rank3"
  export_lib.export(config, logdir, str(rank3), (48, 56, 3), contract="tf1")
  inputs, run = _frozen_graph(rank3 / serving.FROZEN_GRAPH_NAME)
  assert inputs.shape.as_list() == [48, 56, 3]
  image = _images((48, 56, 3), seed=1)
  got = run(image)
  assert got.shape == (1, 48, 56, 1)
  np.testing.assert_array_equal(got[..., 0], _keras(config, logdir, image[None]))

  dynamic = tmp_path / "dynamic"
  info = export_lib.export(config, logdir, str(dynamic), (None, None, None, 3),
                           formats=("saved_model", "frozen_graph", "onnx"))
  assert info["input_shape"] == [None, None, None, 3]
  # Counted at the check input's shape: two eval images at their own size.
  assert info["flops"] > 0 and info["flops_input_shape"][0] == 2
  report = json.loads((dynamic / serving.REPORT_NAME).read_text())
  # ONNX too: its integer Div truncates, so the pyramid pooling's bands of a
  # dynamic size avoid negative floor divisions (they lost a row: 97.9%).
  assert {n: e["pixel_agreement"] for n, e in report["formats"].items()} == {
      "saved_model": 1.0, "frozen_graph": 1.0, "onnx": 1.0}
  inputs, run = _frozen_graph(dynamic / serving.FROZEN_GRAPH_NAME)
  assert inputs.shape.as_list() == [None, None, None, 3]
  serve = tf.saved_model.load(str(dynamic / "saved_model")).signatures[
      "serving_default"]
  for shape in ((1, 40, 72, 3), (3, 66, 50, 3)):
    images = _images(shape, seed=shape[0])
    expected = _keras(config, logdir, images)
    np.testing.assert_array_equal(run(images), expected)
    np.testing.assert_array_equal(serve(inputs=tf.constant(images))[
        "predictions"].numpy(), expected)


def test_dynamic_size_with_pad_to_shape_runs_the_network_at_one_size(trained_run, tmp_path):
  config, logdir = trained_run
  out = tmp_path / "padded_dynamic"
  export_lib.export(config, logdir, str(out), (1, None, None, 3),
                    pad_to_shape=(64, 64), contract="tf1")
  _, run = _frozen_graph(out / serving.FROZEN_GRAPH_NAME)
  for shape in ((1, 64, 64, 3), (1, 33, 47, 3)):
    images = _images(shape, seed=2)
    padded = np.zeros((1, 64, 64, 3), np.float32)
    padded[:, :shape[1], :shape[2]] = images
    expected = _keras(config, logdir, padded)[:, :shape[1], :shape[2]]
    np.testing.assert_array_equal(run(images)[..., 0], expected)
  with pytest.raises(tf.errors.InvalidArgumentError, match="larger than --pad_to_shape"):
    run(_images((1, 65, 64, 3)))


@pytest.mark.parametrize("kwargs, message", [
    ({"input_shape": (None, 64, 64, 3), "formats": ("tflite",)},
     "can be written as saved_model, frozen_graph, onnx; tflite need a static"),
    ({"input_shape": (64, 64, 3), "formats": ("coreml",)}, "coreml need a static"),
    ({"contract": "tf1", "output": "probabilities"},
     "--contract tf1 serves --output labels, got 'probabilities'"),
    ({"contract": "tf1", "formats": ("coreml",)}, "not as coreml"),
    ({"contract": "keras_coreml"}, "--contract keras_coreml serves --output probabilities"),
    ({"contract": "caffe"}, "--contract must be one of fast_seg, tf1, keras_coreml"),
])
def test_refused_before_any_work(kwargs, message, tmp_path):
  request = {"input_shape": (1, 64, 64, 3), **kwargs}
  with pytest.raises(ValueError, match=message.replace("(", r"\(")):
    export_request.ExportRequest(**request).check()


@pytest.mark.parametrize("text, shape", [("1,360,480,3", (1, 360, 480, 3)),
                                         ("360,480,3", (360, 480, 3)),
                                         ("-1,-1,-1,3", (None, None, None, 3))])
def test_input_shape_flag(text, shape):
  assert cli.parse_input_shape(text) == shape


@pytest.mark.parametrize("text", ["1,360,480", "0,360,480,3", "-2,3,3,3", "a,b,3"])
def test_input_shape_flag_refused(text):
  with pytest.raises(ValueError, match="--input_shape must be N,H,W,3 or H,W,3"):
    cli.parse_input_shape(text)


@pytest.mark.slow
def test_keras_coreml_contract_names_the_output_and_puts_channels_first(tmp_path):
  pytest.importorskip("coremltools")
  config = helpers.pipeline_config(helpers.model_text(num_classes=5, filter_scale=0.25))
  out = tmp_path / "coreml"
  export_lib.export(config, None, str(out), (1, 64, 96, 3), formats=("coreml",),
                    output="probabilities", random_weights=True,
                    contract="keras_coreml")
  report = json.loads((out / serving.REPORT_NAME).read_text())
  for kind in ("mlprogram", "neuralnetwork"):
    spec = report["formats"][f"coreml_{kind}"]["spec"]
    assert [i["name"] for i in spec["inputs"]] == ["image"]
    (output,) = spec["outputs"]
    assert output["name"] == "output" and output["shape"] == [5, 64, 96]
    assert output["data_type"] in ("FLOAT32", "DOUBLE")


@pytest.mark.slow
def test_cli_contract_flag(trained_run, tmp_path):
  config, logdir = trained_run
  config_path = tmp_path / "pipeline.config"
  config_path.write_text(str(config))
  result = subprocess.run(
      [sys.executable, "export.py", "--config_path", str(config_path),
       "--trained_checkpoint", str(logdir), "--output_dir", str(tmp_path / "o"),
       "--input_shape", "-1,-1,3", "--pad_to_shape", "64,64", "--contract", "tf1"],
      cwd=helpers.REPO_ROOT, capture_output=True, text=True, timeout=600,
      env=dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT)))
  assert result.returncode == 0, result.stderr[-2000:]
  info = json.loads((tmp_path / "o" / serving.INFO_NAME).read_text())
  assert info["input_shape"] == [None, None, 3] and info["contract"] == "tf1"
  assert info["flops_input_shape"] == [64, 64, 3]
