"""The zoo's accuracy / latency chart: the Pareto front and the PNG."""

import numpy as np
from PIL import Image
import pytest

from fast_seg.tools import zoo_chart


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
  assert image.shape == (500, 800, 3)
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
  assert rows.min() < 250  # in the upper half: above both points


def _reddish(image):
  return (image[..., 0] > 170) & (image[..., 1] < 110) & (image[..., 2] < 110)
