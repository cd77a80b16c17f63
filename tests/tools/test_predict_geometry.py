"""How predict.py fits images to a fixed input and maps the output back, and
which colours its overlays take."""

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import dataset_info
from fast_seg.data.converters import camvid
from fast_seg.data.converters import cityscapes
from fast_seg.tools import predict
from fast_seg.tools import predict_geometry
from tests import helpers

CITYSCAPES = helpers.SHARED_DATA / "cityscapes" / "images"

# The official colours, typed from their sources: the SegNet tutorial's
# camvid11 and cityscapesScripts' labels.py (trainIds 0..18).
_CAMVID_COLOURS = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128),
    (60, 40, 222), (128, 128, 0), (192, 128, 128), (64, 64, 128),
    (64, 0, 128), (64, 64, 0), (0, 128, 192)]
_CITYSCAPES_COLOURS = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),
    (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),
    (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100),
    (0, 0, 230), (119, 11, 32)]


def test_fit_boxes():
  # Cityscapes' 2:1 frames into CamVid's 4:3 input.
  assert predict_geometry.fit_box((1024, 2048), (360, 480)) == (0, 0, 360, 480)
  assert predict_geometry.fit_box((1024, 2048), (360, 480), "letterbox") == (
      60, 0, 240, 480)
  # A portrait photo: bars left and right.
  assert predict_geometry.fit_box((1000, 500), (360, 480), "letterbox") == (
      0, 150, 360, 180)
  # Same aspect fills the input; a model without a fixed size takes it as is.
  assert predict_geometry.fit_box((720, 960), (360, 480), "letterbox") == (
      0, 0, 360, 480)
  assert predict_geometry.fit_box((37, 53), None, "letterbox") == (0, 0, 37, 53)


def test_fit_lines():
  describe = predict_geometry.describe_fit
  assert describe("frame", (1024, 2048), (1024, 2048), (360, 480),
                  (60, 0, 240, 480)) == (
      "frames 2048x1024 letterboxed into the model's 480x360 input (scaled "
      "to 480x240, 60 grey rows above and 60 below), the output resized "
      "back: overlays at 2048x1024")
  assert describe("frame", (1024, 2048), (1024, 2048), (360, 480),
                  (0, 0, 360, 480)) == (
      "frames 2048x1024 resized to the model's 480x360 input (aspect 2.00 -> "
      "1.33; --fit letterbox keeps it), the output resized back: overlays at "
      "2048x1024")
  assert describe("image", (720, 960), (720, 960), (360, 480),
                  (0, 0, 360, 480)) == (
      "images 960x720 resized to the model's 480x360 input (same aspect), the "
      "output resized back: overlays at 960x720")
  assert describe("image", (1000, 500), (1000, 500), (360, 480),
                  (0, 150, 360, 180)).startswith(
      "images 500x1000 letterboxed into the model's 480x360 input (scaled to "
      "180x360, 150 grey columns left and 150 right)")
  assert describe("image", (375, 1242), (125, 1242), (125, 1242),
                  (0, 0, 125, 1242)) is None  # fed as it is
  assert describe("image", (360, 480), (360, 480), None, (0, 0, 360, 480)) is None
  assert "frames 1242x375 (cropped to 1242x125) resized" in describe(
      "frame", (375, 1242), (125, 1242), (128, 512), (0, 0, 128, 512))


@pytest.mark.skipif(not CITYSCAPES.is_dir(),
                    reason=f"real Cityscapes samples not found at {CITYSCAPES}")
@pytest.mark.parametrize("fit", predict_geometry.FITS)
@pytest.mark.parametrize("output_scale", [1, 4])
def test_the_image_region_maps_back_to_the_frame(fit, output_scale):
  # A stand-in model that labels bright pixels 1: its labels, mapped back
  # to the 2048x1024 frame, must be the frame's own bright pixels.
  frame = np.asarray(Image.open(sorted(CITYSCAPES.glob("*.png"))[0])
                     .convert("RGB"))
  size = (360, 480)
  box = predict_geometry.fit_box(frame.shape[:2], size, fit)
  batch = predict_geometry.preprocess(frame, size, 1, np.uint8, box)
  if fit == "letterbox":
    assert (batch[0, :60] == 128).all() and (batch[0, 300:] == 128).all()
  output = (batch[0].mean(-1) > 100).astype(np.uint8)
  # A model whose output is at 1/output_scale of its input.
  output = output[::output_scale, ::output_scale]
  labels, _ = predict_geometry.postprocess(
      predict_geometry.unbox(output, size, box), frame.shape[:2])
  assert labels.shape == frame.shape[:2]
  truth = frame.mean(-1) > 100
  agreement = np.mean(labels.astype(bool) == truth)
  assert agreement > (0.97 if output_scale == 1 else 0.92), agreement
  # A shifted mapping (off by the bar) agrees far less.
  if fit == "letterbox":
    shifted, _ = predict_geometry.postprocess(output, frame.shape[:2])
    assert np.mean(shifted.astype(bool) == truth) < agreement - 0.05


@pytest.mark.parametrize("module, colours", [(camvid, _CAMVID_COLOURS),
                                             (cityscapes, _CITYSCAPES_COLOURS)])
def test_known_datasets_overlay_in_their_official_colours(module, colours,
                                                          tmp_path):
  # What the converter writes into dataset_info.json, which the export
  # carries: predict.py's overlays take exactly those colours.
  dataset_info.write(str(tmp_path), {
      "num_classes": len(module.CLASS_NAMES), "ignore_label": 255,
      "class_names": list(module.CLASS_NAMES),
      "palette": [list(map(int, c)) for c in module.PALETTE]})
  palette, names = predict.load_legend(str(tmp_path))
  assert names == list(module.CLASS_NAMES)
  labels = np.arange(len(colours), dtype=np.uint8)[None]
  image = np.zeros(labels.shape + (3,), np.uint8)
  drawn = predict.overlay(image, labels, None, palette, alpha=1.0)
  assert [tuple(c) for c in drawn[0].tolist()] == colours
  assert predict.palette_source(str(tmp_path)).startswith(
      "overlay colours: the dataset's own palette, from ")


def test_without_dataset_info_the_palette_is_distinct_and_said(tmp_path):
  assert predict.load_legend(str(tmp_path)) == (None, None)
  assert predict.load_legend(str(tmp_path), "distinct") == (None, None)
  assert predict.palette_source(str(tmp_path)) == (
      "overlay colours: a distinct hue per class (no dataset_info.json beside "
      "the model, so the legend names class_<id>)")


def test_ignored_rows_are_not_coloured():
  image = np.full((4, 3, 3), 90, np.uint8)
  labels = np.array([[255] * 3, [0] * 3, [1] * 3, [255] * 3], np.uint8)
  palette = np.array([[0, 0, 0], [200, 0, 0]], np.uint8)
  drawn = predict.overlay(image, labels, None, palette, alpha=0.5)
  np.testing.assert_array_equal(drawn[[0, 3]], image[[0, 3]])
  assert drawn[1, 0].tolist() == [45, 45, 45]  # background, blended black
  assert drawn[2, 0].tolist() == [145, 45, 45]
