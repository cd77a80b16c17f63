"""Pictures people can read: titled panels and a legend of the classes present."""

import numpy as np
import pytest

from fast_seg.utils import visualization

PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [250, 250, 0]], np.uint8)
NAMES = ["road", "car", "sky", "pole"]


def test_legend_lists_only_the_classes_present_in_id_order():
  truth = np.array([[2, 0], [255, 0]])
  prediction = np.array([[2, 2], [1, 0]])
  assert visualization.legend_entries([truth, prediction], PALETTE, NAMES) == [
      ("road", (255, 0, 0)), ("car", (0, 255, 0)), ("sky", (0, 0, 255))]
  assert visualization.legend_entries([truth], PALETTE)[0] == ("class_0", (255, 0, 0))


def test_side_by_side_has_titles_panels_and_swatches():
  image = np.full((40, 50, 3), 128, np.uint8)
  truth = np.zeros((40, 50), int)
  prediction = np.full((40, 50), 3)
  picture = visualization.side_by_side(image, truth, prediction, PALETTE, NAMES)
  top = visualization.TITLE_HEIGHT
  assert picture.shape[1] == 150 and picture.shape[0] > top + 40
  # The panels sit under the title row, unchanged.
  np.testing.assert_array_equal(picture[top:top + 40, :50], image)
  np.testing.assert_array_equal(picture[top + 20, 75], [192, 64, 64])   # road over grey
  # Titles are dark text on white; the legend holds the two classes' swatches.
  titles = picture[:top]
  assert (titles < 100).all(-1).any() and (titles == 255).all(-1).mean() > 0.5
  legend = picture[top + 40:]
  for colour in ([255, 0, 0], [250, 250, 0]):
    assert (legend == colour).all(-1).sum() >= 100
  assert not (legend == [0, 0, 255]).all(-1).any()  # sky is absent


def test_legend_wraps_to_the_width():
  entries = [(f"a_long_class_name_{i}", (i, i, i)) for i in range(12)]
  one_row = visualization.annotate(np.zeros((10, 2000, 3), np.uint8), [], entries)
  wrapped = visualization.annotate(np.zeros((10, 200, 3), np.uint8), [], entries)
  assert wrapped.shape[0] > one_row.shape[0] and wrapped.shape[1] == 200


def _rgb_distances(palette):
  """Pairwise Euclidean RGB distances of a palette's colours."""
  colours = np.asarray(palette, float)
  return np.linalg.norm(colours[:, None] - colours[None], axis=-1)[
      np.triu_indices(len(colours), k=1)]


@pytest.mark.parametrize("num_classes, min_distance", [
    (11, 100.0), (19, 70.0), (24, 60.0), (256, 14.0)])
def test_default_palette_hues_are_far_apart(num_classes, min_distance):
  palette = visualization.default_palette(num_classes)
  assert palette.shape == (num_classes, 3) and palette.dtype == np.uint8
  assert _rgb_distances(palette).min() >= min_distance
  # No grey, black or white: each colour has a hue (max - min channel).
  spread = palette.max(axis=1).astype(int) - palette.min(axis=1)
  assert spread.min() >= 60


def test_default_palette_is_one_sequence():
  # Class i keeps its colour whatever the number of classes (a legend of
  # the classes present and the overlay's colours agree).
  np.testing.assert_array_equal(visualization.default_palette(300)[:6],
                                visualization.default_palette(6))
  assert visualization.default_palette(5000).shape == (5000, 3)


def test_voc_colormap_is_vocs_own():
  colormap = visualization.voc_colormap(256)
  assert colormap[:5].tolist() == [[0, 0, 0], [128, 0, 0], [0, 128, 0],
                                   [128, 128, 0], [0, 0, 128]]
  assert colormap[15].tolist() == [192, 128, 128]  # person
  assert colormap[255].tolist() == [224, 224, 192]  # the boundary band


def test_ignored_pixels_are_the_image_not_class_0():
  # Background drawn black (VOC, hair) and the ignore label must differ:
  # the ignored pixel keeps the image, class 0 is blended towards black.
  image = np.full((1, 3, 3), 200, np.uint8)
  labels = np.array([[0, 255, 1]])
  palette = np.array([[0, 0, 0], [0, 0, 250]], np.uint8)
  blended = visualization.overlay(image, labels, palette, alpha=0.5).numpy()
  assert blended[0, 0].tolist() == [100, 100, 100]
  assert blended[0, 1].tolist() == [200, 200, 200]
  assert blended[0, 2].tolist() == [100, 100, 225]
  # Batches too (the training summaries).
  batch = visualization.overlay(image[None], labels[None], palette).numpy()
  np.testing.assert_array_equal(batch[0], blended)


def _legend_height(height, width):
  picture = visualization.annotate(np.zeros((height, width, 3), np.uint8), [],
                                   [("road", (255, 0, 0)), ("car", (0, 0, 255))])
  return picture.shape[0] - height


def test_legend_grows_with_the_image():
  small, phone, frame = (_legend_height(360, 480), _legend_height(768, 1024),
                         _legend_height(1024, 2048))
  assert small == 14 + 2 * 4  # one row of the base size
  assert small < phone < frame
  # In proportion: 1/40 of the shorter side, so ~2.5% of a 1024-high frame.
  assert frame == round(1024 / 40) + 2 * round(round(1024 / 40) * 4 / 14)
  # The swatch grows with the text.
  picture = visualization.annotate(np.zeros((1024, 2048, 3), np.uint8), [],
                                   [("road", (255, 0, 0))])
  swatch = (picture[1024:] == [255, 0, 0]).all(-1)
  assert swatch.any(1).sum() >= 18 and swatch.any(0).sum() >= 18
