"""The zoo's accuracy / latency chart: the Pareto front and the PNG."""

import json

from matplotlib import pyplot as plt
from matplotlib import text as mtext
import numpy as np
from PIL import Image
import pytest

from fast_seg.tools import zoo_chart
from tests import helpers


def test_pareto_front_by_hand():
  points = [("fast", 10.0, 0.40), ("slow_better", 50.0, 0.55),
            ("dominated", 60.0, 0.50), ("tie_slower", 10.0, 0.39),
            ("best", 200.0, 0.60)]
  assert zoo_chart.pareto_front(points) == ["fast", "slow_better", "best"]


def test_chart_writes_a_png_and_names_models_without_the_latency(tmp_path):
  results = {"dataset": "CamVid test", "models": [
      {"name": "a", "miou": 0.4, "latency_ms": {"x": 10}},
      {"name": "b", "miou": 0.5, "latency_ms": {"x": 40}},
      {"name": "c", "miou": 0.45, "latency_ms": {"x": 80}},
      {"name": "d", "miou": 0.6, "latency_ms": {"y": 5}}]}
  path = tmp_path / "chart.png"
  plotted, front, left_out = zoo_chart.chart(results, str(path), "x")
  assert plotted == ["a", "b", "c"] and front == ["a", "b"] and left_out == ["d"]
  image = np.asarray(Image.open(path).convert("RGB"))
  assert image.shape == (600, 800, 3)  # no parameters: the latency panel
  assert ((image[..., 2] > 150) & (image[..., 0] < 60)).sum() > 50  # the blue front


def test_chart_without_any_latency_is_an_error(tmp_path):
  with pytest.raises(ValueError, match="latency_ms.z"):
    zoo_chart.chart({"models": [{"name": "a", "miou": 0.4, "latency_ms": {}}]},
                    str(tmp_path / "c.png"), "z")


def test_published_results_are_dashed_lines_not_points(tmp_path):
  results = {"models": [{"name": "a", "miou": 0.4, "latency_ms": {"x": 10}},
                        {"name": "b", "miou": 0.5, "latency_ms": {"x": 40}}],
             "published": [{"name": "CGNet", "miou": 0.656,
                            "note": "GPU, trainval, 800 epochs"}]}
  with_lines, without = tmp_path / "with.png", tmp_path / "without.png"
  plotted, front, _ = zoo_chart.chart(results, str(with_lines), "x")
  assert plotted == ["a", "b"] and front == ["a", "b"]
  zoo_chart.chart({"models": results["models"]}, str(without), "x")
  red = lambda path: np.sum(_reddish(np.asarray(Image.open(path).convert("RGB"))))
  assert red(with_lines) > 200 and red(without) == 0
  # The axis reaches up to the published line.
  rows = np.nonzero(_reddish(np.asarray(Image.open(with_lines).convert("RGB"))).any(axis=1))[0]
  assert rows.min() < 300  # in the upper half: above both points


def _reddish(image):
  return (image[..., 0] > 170) & (image[..., 1] < 110) & (image[..., 2] < 110)


def _zoo():
  with open(helpers.REPO_ROOT / "docs" / "camvid_zoo.json", encoding="utf-8") as f:
    return json.load(f)


@pytest.fixture(name="zoo_figure")
def fixture_zoo_figure():
  figure, _, _, _ = zoo_chart.draw(_zoo(), "tflite_int8_1024x2048")
  figure.canvas.draw()
  yield figure
  plt.close(figure)


def test_log_ticks_are_plain_numbers(zoo_figure):
  latency, params = zoo_figure.axes[:2]
  shown = lambda axes: [t.get_text() for t in axes.xaxis.get_ticklabels()
                        if t.get_text() and axes.get_xlim()[0] <= t.get_position()[0]
                        <= axes.get_xlim()[1]]
  assert shown(latency) == ["50", "100", "200", "500"]
  assert shown(params) == ["0.1", "0.2", "0.5", "1", "2", "5", "10"]
  for axes in (latency, params):
    assert not any(t.get_text() for t in axes.xaxis.get_ticklabels(minor=True))


def test_names_overlap_nothing_and_stay_inside(zoo_figure):
  renderer = zoo_figure.canvas.get_renderer()
  boxes = []
  for axes in zoo_figure.axes[:2]:
    for text in axes.texts:
      box = mtext.Text.get_window_extent(text, renderer)
      frame = axes.bbox
      assert (frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0
              and box.y1 <= frame.y1), text.get_text()
      boxes.append((text.get_text(), box))
  # 7 models and 4 anchors in each panel.
  assert len(boxes) == 22
  for i, (name, box) in enumerate(boxes):
    for other, other_box in boxes[i + 1:]:
      assert not box.overlaps(other_box), (name, other)


def test_published_anchors_are_points_by_parameters(zoo_figure):
  params = zoo_figure.axes[1]
  diamonds = [c for c in params.collections if c.get_paths()
              and len(c.get_paths()[0].vertices) == 5]  # the "D" marker
  anchors = sorted(tuple(np.round(c.get_offsets()[0], 2)) for c in diamonds)
  assert anchors == [(0.36, 51.3), (0.36, 55.6), (0.5, 65.6), (0.76, 66.4)]
  names = {t.get_text() for t in params.texts}
  assert {"ENet 51.3", "ESPNet 55.6", "CGNet 65.6", "DABNet 66.4"} <= names
  legend = [t.get_text() for t in zoo_figure.legends[0].get_texts()]
  assert "published: GPU, train+val, 800-1000 epochs (not timed here)" in legend
