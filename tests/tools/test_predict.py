"""predict.py: every runtime gives the same labels through the same processing."""

import json
import os
import re
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
from fast_seg.tools import predict_geometry
from fast_seg.utils import video_io
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
      # The frozen graph folds batch norms (float sums reordered): a
      # near-tied pixel may flip, as export_report allows (>= 99.9%).
      assert labels[name].shape == reference[name].shape
      assert np.mean(labels[name] != reference[name]) <= 0.001


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


def test_video_without_imageio_is_a_clear_error(monkeypatch, tmp_path):
  video = tmp_path / "drive.mp4"
  video.write_bytes(b"")
  assert predict.list_inputs(str(video)) == ("video", str(video))
  monkeypatch.setitem(sys.modules, "imageio", None)  # import imageio -> ImportError
  with pytest.raises(ValueError, match=r"^videos need imageio, which is not "
                     r"installed: pip install 'fast_seg\[video\]'$"):
    predict.read_inputs(str(video))


def test_video_without_imageio_ffmpeg_names_it(monkeypatch, tmp_path):
  pytest.importorskip("imageio")
  monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
  monkeypatch.delitem(sys.modules, "imageio.plugins.ffmpeg", raising=False)
  video = tmp_path / "drive.mp4"
  video.write_bytes(b"")
  with pytest.raises(ValueError, match=r"^videos need imageio-ffmpeg, .*"
                     r"pip install 'fast_seg\[video\]'$"):
    predict.read_inputs(str(video))


def test_a_video_that_cannot_be_opened_is_one_line(tmp_path):
  pytest.importorskip("imageio")
  video = tmp_path / "drive.mp4"
  video.write_bytes(b"not a video at all")
  with pytest.raises(ValueError, match="drive.mp4: not a readable video") as e:
    predict.read_inputs(str(video))
  assert "\n" not in str(e.value)


_CLIP_FRAMES, _CLIP_FPS, _CLIP_SIZE = 12, 5, (48, 64)


def _clip_frames():
  pairs = synthetic.generate_split(_CLIP_FRAMES, size=_CLIP_SIZE, seed=7)
  return [image for image, _ in pairs]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
  """A 12-frame 64x48 mp4 at 5 fps (2.4 s) of synthetic scenes."""
  iio = pytest.importorskip("imageio.v2")
  path = tmp_path_factory.mktemp("video") / "clip.mp4"
  with iio.get_writer(str(path), "ffmpeg", fps=_CLIP_FPS, codec="libx264",
                      quality=9, macro_block_size=1,
                      ffmpeg_log_level="error") as writer:
    for frame in _clip_frames():
      writer.append_data(frame)
  return path


def _read_video(path):
  """(frames, fps, (width, height)) of a written video."""
  iio = pytest.importorskip("imageio.v2")
  with iio.get_reader(str(path), "ffmpeg") as reader:
    meta = reader.get_meta_data()
    return [np.asarray(f) for f in reader], meta["fps"], tuple(meta["size"])


def _expected_overlays(export_dir, clip_path):
  """The overlay of each frame of clip_path, drawn by predict's functions."""
  predictor = predict.open_predictor(str(export_dir))
  palette = predict.load_palette(str(export_dir))
  overlays = []
  for _, frame in predict.read_inputs(str(clip_path)):
    batch = predict_geometry.preprocess(
        frame, predict_geometry.model_size(predictor.input_shape), 1,
        predictor.input_dtype)
    labels, _ = predict_geometry.postprocess(predictor(batch)[0],
                                             frame.shape[:2])
    overlays.append(predict.overlay(frame, labels, None, palette, 0.5))
  return overlays


def test_video_becomes_an_annotated_mp4_and_a_gif(export_dir, clip, tmp_path,
                                                  capsys):
  out = tmp_path / "out"
  result = predict.predict(str(export_dir), str(clip), str(out))
  printed = capsys.readouterr().out
  # auto: a 2.4 s clip gets the mp4 and the GIF, and no PNGs.
  assert result["outputs"] == [str(out / "clip_overlay.mp4"),
                               str(out / "clip_overlay.gif")]
  assert sorted(p.name for p in out.iterdir()) == ["clip_overlay.gif",
                                                  "clip_overlay.mp4"]
  assert result["num_skipped"] == 0 and len(result["names"]) == _CLIP_FRAMES
  assert f"{_CLIP_FRAMES} frames, latency mean" in printed
  assert re.search(r"median [\d.]+ ms, p90 [\d.]+ ms", printed)
  assert re.search(r"end to end [\d.]+ fps", printed)

  frames, fps, size = _read_video(out / "clip_overlay.mp4")
  assert (len(frames), fps, size) == (_CLIP_FRAMES, _CLIP_FPS, (64, 48))
  inputs = [frame for _, frame in predict.read_inputs(str(clip))]
  for frame, expected, original in zip(frames, _expected_overlays(export_dir, clip),
                                       inputs):
    # Within x264's loss of the overlay (mostly 4:2:0 chroma at the class
    # borders of a tiny frame: mean 4-6), far from the undrawn frame (30-47).
    error = np.abs(frame.astype(int) - expected)
    assert error.mean() < 8.0 and np.median(error) <= 4, error.mean()
    assert np.abs(frame.astype(int) - original).mean() > 3 * error.mean()
  ffmpeg = subprocess.run(
      [video_io._imageio().plugins.ffmpeg.get_exe(), "-hide_banner", "-i",
       str(out / "clip_overlay.mp4")], capture_output=True, text=True, check=False)
  assert "Video: h264" in ffmpeg.stderr and "Audio:" not in ffmpeg.stderr

  gif = Image.open(out / "clip_overlay.gif")
  assert (gif.n_frames, gif.size) == (_CLIP_FRAMES, (64, 48))
  assert gif.info["duration"] == 1000 // _CLIP_FPS and gif.info["loop"] == 0


def test_video_frames_fps_and_max_frames(export_dir, clip, tmp_path):
  out = tmp_path / "out"
  result = predict.predict(str(export_dir), str(clip), str(out),
                           video_output="mp4,frames", fps=10, max_frames=3,
                           log=lambda line: None)
  names = [f"clip_{i:06d}" for i in range(3)]
  assert result["names"] == names and result["outputs"] == [
      str(out / "clip_overlay.mp4")]
  for name in names:
    labels = np.asarray(Image.open(out / f"{name}_labels.png"))
    assert labels.shape == _CLIP_SIZE and labels.max() < 6
    assert (out / f"{name}_overlay.png").is_file()
  frames, fps, size = _read_video(out / "clip_overlay.mp4")
  assert (len(frames), fps, size) == (3, 10, (64, 48))
  with pytest.raises(ValueError, match="--video_output must be"):
    predict.predict(str(export_dir), str(clip), str(out), video_output="avi")


def test_video_output_rules():
  assert predict.video_outputs("auto", 15.0) == ("mp4", "gif")
  assert predict.video_outputs("auto", 15.1) == ("mp4",)
  assert predict.video_outputs("none", 3.0) == ()
  assert predict.video_outputs("gif, mp4,gif", 99.0) == ("gif", "mp4")
  for bad in ("", "mp4,none", "png"):
    with pytest.raises(ValueError, match="--video_output must be auto, none"):
      predict.video_outputs(bad, 1.0)


def test_gif_of_a_long_clip_is_capped(tmp_path):
  pytest.importorskip("imageio")
  # 20 s at 25 fps, 720 px wide: every 3rd frame of the first 15 s, 480 wide.
  gif = video_io.GifWriter(str(tmp_path / "long.gif"), fps=25)
  for i in range(20 * 25):
    gif.add(np.full((36, 720, 3), i % 256, np.uint8))
  gif.close()
  written = Image.open(tmp_path / "long.gif")
  assert written.n_frames == 15 * 25 // 3 and written.size == (480, 24)
  assert written.info["duration"] == 120


def _mjpeg_avi_with_a_corrupt_frame(path, bad):
  """An MJPEG AVI of the clip's frames whose frame `bad` holds no JPEG.

  The container stays intact (ffmpeg finds every packet); the decoder
  rejects that one frame, as it would a damaged frame in real footage.
  """
  iio = pytest.importorskip("imageio.v2")
  with iio.get_writer(str(path), "ffmpeg", fps=_CLIP_FPS, codec="mjpeg",
                      quality=9, pixelformat="yuvj420p", macro_block_size=1,
                      ffmpeg_log_level="error") as writer:
    for frame in _clip_frames():
      writer.append_data(frame)
  data = bytearray(path.read_bytes())
  chunk = data.index(b"movi")
  for _ in range(bad + 1):
    chunk = data.index(b"00dc", chunk + 4)
  size = int.from_bytes(data[chunk + 4:chunk + 8], "little")
  data[chunk + 8:chunk + 8 + size] = bytes(size)
  path.write_bytes(bytes(data))


def test_corrupt_video_frame_is_skipped_and_counted(export_dir, tmp_path):
  video = tmp_path / "drive.avi"
  _mjpeg_avi_with_a_corrupt_frame(video, bad=6)
  lines = []
  result = predict.predict(str(export_dir), str(video), str(tmp_path / "out"),
                           video_output="mp4", log=lines.append)
  # Every other frame was predicted and written.
  assert len(result["names"]) == _CLIP_FRAMES - 1
  assert result["num_skipped"] == 1
  assert result["skipped"] == [
      f"{video}: 1 of {_CLIP_FRAMES} frames could not be decoded (corrupt?)"]
  assert result["summary"].startswith(f"{_CLIP_FRAMES - 1} frames, ")
  assert result["summary"].endswith("; 1 skipped (unreadable)")
  frames, _, _ = _read_video(tmp_path / "out" / "drive_overlay.mp4")
  assert len(frames) == _CLIP_FRAMES - 1
  with pytest.raises(ValueError, match="1 of 12 frames could not be decoded"):
    predict.predict(str(export_dir), str(video), str(tmp_path / "out2"),
                    video_output="none", on_error="fail", log=lambda line: None)


class _FlakyReader:
  """Five frames whose third cannot be read, as a reader that goes on."""

  def __init__(self):
    self.calls = 0

  def __iter__(self):
    return self

  def __next__(self):
    self.calls += 1
    if self.calls > 5:
      raise StopIteration
    if self.calls == 3:
      raise RuntimeError("Frame is 10 bytes, but expected 9216.\n"
                         "=== stderr ===\nffmpeg's log")
    return np.full((4, 4, 3), self.calls, np.uint8)


def test_a_frame_that_fails_to_read_is_reported_and_skipped():
  # ffmpeg itself drops frames it cannot decode (counted above); this is an
  # error while reading one, which the frame iterator reports like a bad image.
  items = list(video_io.decoded_frames(_FlakyReader(), "drive"))
  assert [name for name, _ in items] == [f"drive_{i:06d}" for i in range(5)]
  error = items[2][1]
  assert isinstance(error, ValueError) and str(error) == (
      "drive_000002: not a readable frame (Frame is 10 bytes, but expected "
      "9216.)")
  assert [int(frame[0, 0, 0]) for _, frame in items if
          not isinstance(frame, Exception)] == [1, 2, 4, 5]


def test_postprocess_output_kinds():
  probabilities = np.zeros((4, 5, 3), np.float32)
  probabilities[..., 2] = 1.0
  labels, colours = predict_geometry.postprocess(probabilities, (10, 10), crop=(1, 1))
  assert colours is None and labels.shape == (10, 10)
  assert np.all(labels[1:-1] == 2) and np.all(labels[[0, -1]] == 255)
  painted = np.full((4, 5, 3), 9, np.uint8)
  labels, colours = predict_geometry.postprocess(painted, (8, 10))
  assert labels is None and colours.shape == (8, 10, 3) and np.all(colours == 9)
  # uint8 labels (--labels_dtype uint8), with the tf1 contract's channel.
  for ids in (np.full((4, 5), 7, np.uint8), np.full((4, 5, 1), 7, np.uint8)):
    labels, colours = predict_geometry.postprocess(ids, (8, 10))
    assert colours is None and labels.shape == (8, 10) and np.all(labels == 7)
  with pytest.raises(ValueError, match="--resize"):
    predict_geometry.model_size((1, 64, 64, 3), (32, 32))
  assert predict_geometry.model_size((1, None, None, 3), (32, 48)) == (32, 48)


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


def test_cli_video_with_a_corrupt_frame(export_dir, tmp_path):
  video = tmp_path / "drive.avi"
  _mjpeg_avi_with_a_corrupt_frame(video, bad=6)
  result = _run_cli("--model", export_dir, "--input", video, "--output_dir",
                    tmp_path / "out", "--video_output", "gif", "--fps", "10")
  # The run went through, then exits 2 saying a frame was lost.
  assert result.returncode == 2, result.stderr[-2000:]
  assert f"{_CLIP_FRAMES - 1} frames, latency mean" in result.stdout
  assert f"Wrote {tmp_path / 'out' / 'drive_overlay.gif'}" in result.stdout
  assert "error: 1 of 12 inputs skipped: " in result.stderr
  assert "1 of 12 frames could not be decoded" in result.stderr
  gif = Image.open(tmp_path / "out" / "drive_overlay.gif")
  assert (gif.n_frames, gif.info["duration"]) == (_CLIP_FRAMES - 1, 100)


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
  assert predict_geometry.parse_crop(text) == crop


@pytest.mark.parametrize("text", ["-1,5", "5", "a,b", "1,2,3"])
def test_a_bad_crop_names_the_forms(text):
  with pytest.raises(ValueError, match=r"--crop must be top,bottom .*start,-stop"):
    predict_geometry.parse_crop(text)


def test_tf1_contract_exports_give_the_same_labels(trained_run, images, reference,
                                                   tmp_path):
  """--contract tf1 (int64 [1,H,W,1]) without a batch axis, the TF1 option:
  predict.py reads it and writes the labels of fast_seg's own export."""
  config, logdir = trained_run
  for shape in ((64, 64, 3),):
    export = tmp_path / f"tf1_{len(shape)}"
    export_lib.export(config, logdir, str(export), shape, contract="tf1")
    out = tmp_path / f"out_{len(shape)}"
    predict.predict(str(export / serving.FROZEN_GRAPH_NAME), str(images), str(out),
                    log=lambda line: None)
    for name, labels in _labels(out).items():
      assert labels.shape == reference[name].shape
      assert np.mean(labels != reference[name]) <= 0.001  # folded BNs


def test_other_aspects_are_resized_or_letterboxed_and_said(export_dir,
                                                           tmp_path):
  # 80x40 (2:1) images into the 64x64 model.
  folder = tmp_path / "wide"
  synthetic.write_sample_images(str(folder), 1, size=(40, 80))
  image = np.asarray(Image.open(folder / "sample_000.png").convert("RGB"))
  lines = []
  predict.predict(str(export_dir), str(folder), str(tmp_path / "a"),
                  log=lines.append)
  assert lines[:2] == [
      "images 80x40 resized to the model's 64x64 input (aspect 2.00 -> 1.00;"
      " --fit letterbox keeps it), the output resized back: overlays at 80x40",
      f"overlay colours: the dataset's own palette, from {export_dir}/"
      "dataset_info.json (--palette distinct gives a distinct hue per class)"]
  lines = []
  predict.predict(str(export_dir), str(folder), str(tmp_path / "b"),
                  fit="letterbox", log=lines.append)
  assert lines[0] == (
      "images 80x40 letterboxed into the model's 64x64 input (scaled to "
      "64x32, 16 grey rows above and 16 below), the output resized back: "
      "overlays at 80x40")
  # The labels are those of the letterbox's image rows, at the image's size.
  predictor = predict.open_predictor(str(export_dir))
  batch = predict_geometry.preprocess(image, (64, 64), 1, np.uint8,
                                      (16, 0, 32, 64))
  assert (batch[0, :16] == predict_geometry.PAD_VALUE).all()
  expected, _ = predict_geometry.postprocess(predictor(batch)[0][16:48],
                                             (40, 80))
  labels = np.asarray(Image.open(tmp_path / "b" / "sample_000_labels.png"))
  np.testing.assert_array_equal(labels, expected)
  overlay = np.asarray(Image.open(tmp_path / "b" / "sample_000_overlay.png"))
  assert overlay.shape[1] == 80 and overlay.shape[0] > 40  # legend below
  with pytest.raises(ValueError, match="--fit must be one of resize, "
                     "letterbox"):
    predict.predict(str(export_dir), str(folder), str(tmp_path / "c"),
                    fit="stretch")


def test_palette_distinct_keeps_the_names(export_dir, images, reference,
                                          tmp_path):
  lines = []
  predict.predict(str(export_dir), str(images), str(tmp_path), alpha=1.0,
                  palette_path="distinct", log=lines.append)
  assert "overlay colours: a distinct hue per class (--palette distinct)" in lines
  colours = _overlay_colours(tmp_path, reference["sample_000"])
  distinct = visualization.default_palette(6)
  assert colours == {c: tuple(int(v) for v in distinct[c]) for c in colours}
  palette, names = predict.load_legend(str(export_dir), "distinct")
  np.testing.assert_array_equal(palette, distinct)
  assert names == list(synthetic.CLASS_NAMES)


def test_mp4_keeps_a_480x360_frame_size(export_dir, tmp_path):
  # imageio's default writer would store 480x368 (a multiple of 16).
  iio = pytest.importorskip("imageio.v2")
  clip = tmp_path / "clip.mp4"
  with iio.get_writer(str(clip), "ffmpeg", fps=5, codec="libx264",
                      macro_block_size=1, ffmpeg_log_level="error") as writer:
    for frame in synthetic.generate_split(3, size=(360, 480), seed=1):
      writer.append_data(frame[0])
  result = predict.predict(str(export_dir), str(clip), str(tmp_path / "out"),
                           video_output="mp4", log=lambda line: None)
  frames, _, size = _read_video(result["outputs"][0])
  assert size == (480, 360) and frames[0].shape == (360, 480, 3)
