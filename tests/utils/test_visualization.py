"""Pictures people can read: titled panels and a legend of the classes present."""

import numpy as np

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
