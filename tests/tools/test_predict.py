"""predict.py: every runtime gives the same labels through the same processing."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.data import synthetic
from fast_seg.export import export_lib
from fast_seg.export import serving
from fast_seg.tools import predict
from fast_seg.utils import visualization
from tests import helpers

_INFO = standard_fields.DatasetInfoFields
_NAMES = ("sample_000", "sample_001")


@pytest.fixture(scope="module")
def export_dir(trained_run, tmp_path_factory):
  config, logdir = trained_run
  out = tmp_path_factory.mktemp("export")
  info = export_lib.export(config, logdir, str(out), (1, 64, 64, 3))
  assert info["dataset_info"] == str(out / _INFO.file_name)
  return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  folder = tmp_path_factory.mktemp("images")
  synthetic.write_sample_images(str(folder), len(_NAMES), size=(40, 50))
  return folder


@pytest.fixture(scope="module")
def reference(export_dir, images, tmp_path_factory):
  """{name: labels} of the export dir's SavedModel, the others' reference."""
  out = tmp_path_factory.mktemp("reference")
  result = predict.predict(str(export_dir), str(images), str(out),
                           log=lambda line: None)
  assert result["names"] == list(_NAMES)
  return _labels(out)


def _labels(output_dir):
  return {name: np.asarray(Image.open(output_dir / f"{name}_labels.png"))
          for name in _NAMES}


def _predict(model, images, output_dir, **kwargs):
  predict.predict(str(model), str(images), str(output_dir),
                  log=lambda line: None, **kwargs)
  return _labels(output_dir)


def _overlay_colours(output_dir, labels):
  """{class id: its one colour} of an alpha-1 overlay (pure palette colours)."""
  overlay = np.asarray(Image.open(output_dir / "sample_000_overlay.png"))
  overlay = overlay[:labels.shape[0]]  # the legend is below
  colours = {}
  for c in np.unique(labels):
    seen = np.unique(overlay[labels == c], axis=0)
    assert len(seen) == 1, (c, seen)
    colours[int(c)] = tuple(int(v) for v in seen[0])
  return colours


def test_export_copies_dataset_info(export_dir):
  copied = json.loads((export_dir / _INFO.file_name).read_text())
  assert copied[_INFO.class_names] == list(synthetic.CLASS_NAMES)
  listed = json.loads((export_dir / "export_info.json").read_text())
  assert listed["dataset_info"] == str(export_dir / _INFO.file_name)


def test_saved_model_and_frozen_graph_agree(export_dir, images, reference,
                                            tmp_path):
  for labels in reference.values():
    assert labels.shape == (40, 50) and labels.max() < 6
  for i, model in enumerate([export_dir / serving.SAVED_MODEL_DIR,
                             export_dir / serving.FROZEN_GRAPH_NAME]):
    labels = _predict(model, images, tmp_path / str(i))
    for name in _NAMES:
      np.testing.assert_array_equal(labels[name], reference[name])


def test_tflite_and_onnx_agree_with_saved_model(export_dir, images, reference,
                                                tmp_path):
  converter = tf.lite.TFLiteConverter.from_saved_model(
      str(export_dir / serving.SAVED_MODEL_DIR))
  tflite = tmp_path / "model.tflite"
  tflite.write_bytes(converter.convert())
  # The frozen graph is the SavedModel's function; in-process, ~2 s.
  tf2onnx = pytest.importorskip("tf2onnx")
  graph_def = tf.compat.v1.GraphDef.FromString(
      (export_dir / serving.FROZEN_GRAPH_NAME).read_bytes())
  onnx = tmp_path / "model.onnx"
  tf2onnx.convert.from_graph_def(
      graph_def, input_names=[serving.INPUT_TENSOR],
      output_names=[serving.OUTPUT_TENSOR], output_path=str(onnx))
  for model in (tflite, onnx):
    predictor = predict.open_predictor(str(model), num_threads=2)
    assert predictor.input_shape == (1, 64, 64, 3)
    assert predictor.input_dtype == np.uint8
    labels = _predict(model, images, tmp_path / model.suffix[1:])
    for name in _NAMES:
      assert np.mean(labels[name] == reference[name]) >= 0.999, (model, name)


def test_crop_restores_the_original_size(export_dir, images, tmp_path):
  labels = _predict(export_dir, images, tmp_path, crop=(5, 3))["sample_000"]
  assert labels.shape == (40, 50)
  assert np.all(labels[:5] == 255) and np.all(labels[-3:] == 255)
  assert np.all(labels[5:-3] < 6)
  # Cropped rows are drawn as the image is; the rest blended.
  image = np.asarray(Image.open(images / "sample_000.png").convert("RGB"))
  overlay = np.asarray(Image.open(tmp_path / "sample_000_overlay.png"))
  assert overlay.shape[0] > 40 and overlay.shape[1] == 50  # a legend below
  legend = overlay[40:]
  assert (legend != 255).any(-1).mean() > 0.05  # swatches and names
  overlay = overlay[:40]
  np.testing.assert_array_equal(overlay[:5], image[:5])
  np.testing.assert_array_equal(overlay[-3:], image[-3:])
  assert np.any(overlay[5:-3] != image[5:-3])
  with pytest.raises(ValueError, match="removes all 40 rows"):
    _predict(export_dir, images, tmp_path / "b", crop=(30, 10))


def test_glob_and_directory(images, tmp_path):
  assert predict.list_inputs(str(images)) == (
      "images", [str(images / f"{name}.png") for name in _NAMES])
  kind, paths = predict.list_inputs(str(images / "*_001.png"))
  assert (kind, paths) == ("images", [str(images / "sample_001.png")])
  with pytest.raises(ValueError, match="no images"):
    predict.list_inputs(str(tmp_path / "*.jpg"))


def test_video_without_opencv_is_a_clear_error(monkeypatch, tmp_path):
  video = tmp_path / "drive.mp4"
  video.write_bytes(b"")
  assert predict.list_inputs(str(video)) == ("video", str(video))
  monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
  with pytest.raises(ValueError, match="pip install opencv-python"):
    predict.read_inputs(str(video))


def test_video_frames_are_read_in_order(tmp_path):
  cv2 = pytest.importorskip("cv2", reason="OpenCV is optional (videos only)")
  path = str(tmp_path / "drive.avi")
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
  for value in (0, 120, 240):
    writer.write(np.full((24, 32, 3), value, np.uint8))
  writer.release()
  frames = list(predict.read_inputs(path))
  assert [name for name, _ in frames] == [
      "drive_000000", "drive_000001", "drive_000002"]
  assert all(frame.shape == (24, 32, 3) for _, frame in frames)
  means = [frame.mean() for _, frame in frames]
  assert means[0] < 10 and 100 < means[1] < 140 and means[2] > 225


def test_postprocess_output_kinds():
  probabilities = np.zeros((4, 5, 3), np.float32)
  probabilities[..., 2] = 1.0
  labels, colours = predict.postprocess(probabilities, (10, 10), crop=(1, 1))
  assert colours is None and labels.shape == (10, 10)
  assert np.all(labels[1:-1] == 2) and np.all(labels[[0, -1]] == 255)
  painted = np.full((4, 5, 3), 9, np.uint8)
  labels, colours = predict.postprocess(painted, (8, 10))
  assert labels is None and colours.shape == (8, 10, 3) and np.all(colours == 9)
  with pytest.raises(ValueError, match="--resize"):
    predict.model_size((1, 64, 64, 3), (32, 32))
  assert predict.model_size((1, None, None, 3), (32, 48)) == (32, 48)


def test_overlay_palette_sources(export_dir, images, reference, tmp_path):
  # The copy in the export dir: the synthetic palette.
  labels = reference["sample_000"]
  _predict(export_dir, images, tmp_path / "a", alpha=1.0)
  colours = _overlay_colours(tmp_path / "a", labels)
  assert colours == {c: synthetic.PALETTE[c] for c in colours}

  # --palette wins.
  info = dataset_info.load(str(export_dir))
  info[_INFO.palette] = [[7, 11 * i, 200] for i in range(6)]
  custom = dataset_info.write(str(tmp_path), info)
  _predict(export_dir, images, tmp_path / "b", alpha=1.0, palette_path=custom)
  colours = _overlay_colours(tmp_path / "b", labels)
  assert colours == {c: (7, 11 * c, 200) for c in colours}

  # One for another number of classes is refused.
  info[_INFO.num_classes] = 3
  for key in (_INFO.palette, _INFO.class_names):
    info[key] = info[key][:3]
  wrong = dataset_info.write(str(tmp_path / "b"), info)
  with pytest.raises(ValueError, match="num_classes") as error:
    _predict(export_dir, images, tmp_path / "c", palette_path=wrong)
  assert wrong in str(error.value)


def test_default_palette_without_dataset_info(export_dir, images, reference,
                                              tmp_path):
  assert predict.load_palette(str(tmp_path)) is None
  frozen = tmp_path / "alone.pb"
  shutil.copy(export_dir / serving.FROZEN_GRAPH_NAME, frozen)
  _predict(frozen, images, tmp_path / "out", alpha=1.0)
  labels = reference["sample_000"]
  colours = _overlay_colours(tmp_path / "out", labels)
  default = visualization.default_palette(6)
  assert colours == {c: tuple(int(v) for v in default[c]) for c in colours}


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT))
  return subprocess.run([sys.executable, "predict.py", *map(str, args)],
                        cwd=helpers.REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


def test_cli(export_dir, images, tmp_path):
  result = _run_cli("--model", export_dir, "--input", images / "*.png",
                    "--output_dir", tmp_path / "out", "--crop", "2,0",
                    "--overlay_alpha", "0.3")
  assert result.returncode == 0, result.stderr[-2000:]
  for name in _NAMES:
    assert f"{name}: " in result.stdout and " ms" in result.stdout
    assert (tmp_path / "out" / f"{name}_labels.png").is_file()
    assert (tmp_path / "out" / f"{name}_overlay.png").is_file()
  assert "2 images, latency mean" in result.stdout and "fps" in result.stdout
  missing = _run_cli("--model", tmp_path / "nope", "--input", images,
                     "--output_dir", tmp_path / "x")
  assert missing.returncode == 2 and "Traceback" not in missing.stderr
  assert "error: --model not found" in missing.stderr


def test_corrupt_image_is_skipped_and_counted(export_dir, images, tmp_path):
  inputs = tmp_path / "inputs"
  shutil.copytree(images, inputs)
  (inputs / "broken.png").write_bytes(b"\x89PNG not really")
  lines = []
  result = predict.predict(str(export_dir), str(inputs), str(tmp_path / "out"),
                           log=lines.append)
  # Every good image after the broken one was still predicted.
  assert result["names"] == list(_NAMES)
  assert len(result["skipped"]) == 1 and "broken.png" in result["skipped"][0]
  assert "1 skipped" in result["summary"]
  with pytest.raises(ValueError, match="broken.png: not a readable image"):
    predict.predict(str(export_dir), str(inputs), str(tmp_path / "out2"),
                    on_error="fail", log=lambda line: None)


@pytest.mark.parametrize("text, crop", [("2,0", (2, 0)), ("150,100", (150, 100)),
                                        ("150,-100", (150, 100)), ("0,-7", (0, 7))])
def test_crop_takes_rows_or_the_road_projects_slice(text, crop):
  assert predict.parse_crop(text) == crop


@pytest.mark.parametrize("text", ["-1,5", "5", "a,b", "1,2,3"])
def test_a_bad_crop_names_the_forms(text):
  with pytest.raises(ValueError, match=r"--crop must be top,bottom .*start,-stop"):
    predict.parse_crop(text)
