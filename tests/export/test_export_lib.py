"""Export: the frozen graph and the SavedModel give the Keras model's labels."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields as fields
from fast_seg.export import export_lib
from fast_seg.export import formats
from fast_seg.export import inference_graph
from fast_seg.export import runtimes
from fast_seg.export import serving
from fast_seg.utils import checkpoint_util
from fast_seg.utils import cli
from tests import helpers


def _keras_labels(config, checkpoint, images):
  model = model_builder.build(config.model)
  checkpoint_util.restore_layers(
      [l for l in model.inference_model.layers if l.weights], checkpoint)
  logits = model.predict(model.preprocess(images))[fields.PredictionFields.logits]
  return model.postprocess(logits, images.shape[1:3])[fields.PredictionFields.labels].numpy()


def _run_frozen_graph(path, images):
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString(open(path, "rb").read())
  graph = tf.Graph()
  with graph.as_default():
    tf.compat.v1.import_graph_def(graph_def, name="")
  assert graph.get_tensor_by_name("inputs:0").dtype == tf.uint8
  with tf.compat.v1.Session(graph=graph) as session:
    return session.run("predictions:0", {"inputs:0": images})


def test_frozen_graph_and_saved_model_match_keras(trained_run, tmp_path):
  config = trained_run[0]
  logdir = helpers.seeded_checkpoint(config, tmp_path)
  out = tmp_path / "export"
  info = export_lib.export(config, logdir, str(out), (2, 64, 80, 3))
  assert (out / "pipeline.config").exists()
  assert json.loads((out / "export_info.json").read_text())["params"] == info["params"]
  assert info["params"] > 0 and info["flops"] > 0

  images = np.random.default_rng(0).integers(0, 256, size=(2, 64, 80, 3), dtype=np.uint8)
  expected = _keras_labels(config, logdir, tf.constant(images))
  assert len(np.unique(expected)) > 1  # a constant map would prove nothing

  frozen = _run_frozen_graph(out / serving.FROZEN_GRAPH_NAME, images)
  assert frozen.dtype == np.int32 and frozen.shape == (2, 64, 80)
  np.testing.assert_array_equal(frozen, expected)

  serve = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"]
  saved = serve(inputs=tf.constant(images))["predictions"].numpy()
  np.testing.assert_array_equal(saved, expected)

  # No auxiliary heads in the exported graph.
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString((out / serving.FROZEN_GRAPH_NAME).read_bytes())
  assert not any("aux" in node.name for node in graph_def.node)


def test_pad_to_shape_pads_then_crops(trained_run, tmp_path):
  config, logdir = trained_run
  out = tmp_path / "padded"
  export_lib.export(config, logdir, str(out), (1, 50, 60, 3), pad_to_shape=(64, 64))
  images = np.random.default_rng(1).integers(0, 256, size=(1, 50, 60, 3), dtype=np.uint8)
  padded = np.full((1, 64, 64, 3), serving.CONTRACTS["fast_seg"].pad_value, np.float32)
  padded[:, :50, :60] = images
  frozen = _run_frozen_graph(out / serving.FROZEN_GRAPH_NAME, images)
  assert frozen.shape == (1, 50, 60)
  # Equal to running the mean-grey padded 64x64 image and cropping.
  reference = _keras_labels(config, logdir, tf.constant(padded))
  np.testing.assert_array_equal(frozen, reference[:, :50, :60])


@pytest.mark.parametrize("text, rank, flag", [("1,2,3", 4, "--input_shape"),
                                              ("a,b", 2, "--pad_to_shape"),
                                              ("1,0,4,3", 4, "--input_shape")])
def test_parse_shape_errors(text, rank, flag):
  with pytest.raises(ValueError, match=flag):
    cli.parse_shape(text, rank, flag)


def test_pad_smaller_than_input_raises(trained_run):
  config, _ = trained_run
  model = model_builder.build(config.model)
  with pytest.raises(ValueError, match="pad_to_shape"):
    inference_graph.build_inference_function(model, (1, 64, 64, 3), (32, 64))


def test_fast_labels_upsample_the_low_resolution_argmax(trained_run, tmp_path):
  config, logdir = trained_run
  # int8: the label map is quantized too, so this also checks its rounding.
  export_lib.export(config, logdir, str(tmp_path), (1, 64, 64, 3),
                    formats=("saved_model", "frozen_graph", "tflite"),
                    quantize="int8", num_calibration_images=4,
                    labels_method="nearest", log=lambda line: None)
  report = json.loads((tmp_path / "export_report.json").read_text())
  assert report["formats"]["saved_model"]["pixel_agreement"] == 1.0
  # BN folding reorders float sums: a near-tied pixel may flip its argmax.
  assert report["formats"]["frozen_graph"]["pixel_agreement"] >= 0.999
  assert report["formats"]["tflite"]["pixel_agreement"] >= 0.9
  # Labels differ from the exact (bilinear logits) ones only near boundaries.
  assert 0.8 <= report["fast_labels_agreement_with_exact"] <= 1.0
  # Each 4x4 block (the logits' stride) carries one label: the arg-max there.
  images = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), np.uint8)
  labels = runtimes.run_once(_graph_def(tmp_path), images)[0]
  blocks = labels.reshape(16, 4, 16, 4)
  assert (blocks == blocks[:, :1, :, :1]).all()
  model = model_builder.build(config.model)
  checkpoint_util.restore_layers(
      [l for l in model.inference_model.layers if l.weights],
      checkpoint_util.resolve_checkpoint(logdir))
  logits = model.predict(model.preprocess(tf.constant(images)))[
      fields.PredictionFields.logits]
  np.testing.assert_array_equal(blocks[:, 0, :, 0],
                                np.argmax(logits.numpy()[0], axis=-1))


def _graph_def(export_dir):
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString((export_dir / "frozen_inference_graph.pb").read_bytes())
  return graph_def


def test_failed_export_keeps_the_earlier_one_and_stale_files_go(trained_run,
                                                               tmp_path):
  config, logdir = trained_run
  out = tmp_path / "export"
  out.mkdir()
  (out / "model.onnx").write_bytes(b"an earlier, broken export")
  (out / "notes.txt").write_text("the user's own file")
  no_eval_data = type(config)()
  no_eval_data.CopyFrom(config)
  no_eval_data.eval_input_reader.tf_record_input_path[:] = [str(tmp_path / "none-*.tfrecord")]
  # int8 without calibration images fails after the SavedModel was written.
  with pytest.raises(ValueError, match="needs calibration images"):
    export_lib.export(no_eval_data, logdir, str(out), (1, 64, 64, 3),
                      formats=("saved_model", "frozen_graph", "tflite"),
                      quantize="int8", log=lambda line: None)
  # Nothing of it is left (its staging folder is gone); the earlier
  # export's files are as they were.
  assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "notes.txt"]
  assert (out / "model.onnx").read_bytes() == b"an earlier, broken export"
  export_lib.export(config, logdir, str(out), (1, 64, 64, 3), log=lambda line: None)
  assert not (out / "model.onnx").exists()  # not this export's: not kept beside it
  assert (out / "saved_model").is_dir() and (out / "notes.txt").exists()


def test_every_format_has_a_writer():
  # The SavedModel first: the converters start from it.
  assert export_lib.format_names() == (
      "saved_model", "frozen_graph", "tflite", "onnx", "coreml")
  assert set(export_lib.DEFAULT_FORMATS) <= set(export_lib.format_names())
  for name, writer in formats.FORMATS.items():
    assert callable(writer.write) and writer.file_names
    # Each format module registered its own writer.
    assert writer.write.__module__.startswith("fast_seg.export."), name


def test_formats_are_written_by_rank_whatever_the_import_order():
  # predict.py and the benchmark import onnx_format before export_lib.
  code = ("from fast_seg.export import onnx_format, coreml_format\n"
          "from fast_seg.export import export_lib\n"
          "print(','.join(export_lib.format_names()))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True,
                        text=True, timeout=300, cwd=helpers.REPO_ROOT)
  assert done.stdout.split()[-1] == "saved_model,frozen_graph,tflite,onnx,coreml"
  formats.register("first", lambda job: {}, ("x",), rank=-1)
  try:
    assert export_lib.format_names()[:2] == ("first", "saved_model")
  finally:
    formats.unregister("first")


def test_export_lib_imports_without_the_export_extra():
  """The converters load their runtimes on first use, so the default
  formats (saved_model, frozen_graph) need none of the [export] extra."""
  blocked = ("coremltools", "tf2onnx", "onnx", "onnxruntime", "ai_edge_litert")
  code = (f"import sys\nsys.modules.update(dict.fromkeys({blocked!r}))\n"
          "from fast_seg.export import export_lib\n"
          "from fast_seg.tools import benchmark, predict\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, cwd=helpers.REPO_ROOT, timeout=600)
  assert result.returncode == 0, result.stderr[-2000:]
