"""The dataset inspection tool: exact counts on hand-made records, and the CLI."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.data import inspect as inspect_lib
from fast_seg.utils import visualization
from fast_seg.data import tf_example
from tests import helpers

_INFO = standard_fields.DatasetInfoFields
HEIGHT, WIDTH = 6, 8
INFO = {
    _INFO.num_classes: 3,
    _INFO.ignore_label: 255,
    _INFO.class_names: ["sky", "road", "car"],
    _INFO.palette: [[10, 20, 30], [200, 0, 0], [0, 0, 250]],
}
# Label of image a: 20 sky, 20 road, 4 car, 4 ignore; of b: 30 sky, 10 road and
# 8 pixels of value 7, which is no class.
LABEL_A = np.repeat([0, 1, 2, 255], [20, 20, 4, 4]).reshape(HEIGHT, WIDTH)
LABEL_B = np.repeat([0, 1, 7], [30, 10, 8]).reshape(HEIGHT, WIDTH)


def _image(seed, height=HEIGHT, width=WIDTH):
  return np.random.default_rng(seed).integers(
      0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  """Two shards: [a, c (label 3x4 for a 10x12 image), e (not an Example)] and
  [b (JPEG, value 7), d (image bytes that do not decode)]."""
  data_dir = tmp_path_factory.mktemp("inspect")
  png = tf_example.encode_png
  examples = [
      tf_example.make_example(png(_image(0)), png(LABEL_A.astype(np.uint8)),
                              "a.png", HEIGHT, WIDTH),
      tf_example.make_example(tf_example.encode_jpeg(_image(1)),
                              png(LABEL_B.astype(np.uint8)), "b.jpg", HEIGHT,
                              WIDTH, "jpeg"),
      tf_example.make_example(png(_image(2, 10, 12)),
                              png(np.zeros((3, 4), np.uint8)), "c.png", 10, 12),
      tf_example.make_example(b"not an image", png(LABEL_A.astype(np.uint8)),
                              "d.png", HEIGHT, WIDTH),
      b"not a tf.train.Example",
  ]
  paths = tf_example.write_sharded(examples, str(data_dir), "val", 2)
  return data_dir, paths


def test_counts_frequencies_and_problems(records):
  data_dir, paths = records
  report = inspect_lib.inspect_records(str(data_dir / "val-*.tfrecord"),
                                       info=INFO)
  assert report["num_records"] == 5 and report["num_files"] == 2
  assert [f["records"] for f in report["files"]] == [3, 2]
  assert report["image_sizes"] == {"6x8": 2, "10x12": 1}
  assert report["image_formats"] == {"png": 2, "jpeg": 1}
  assert report["class_names"] == ["sky", "road", "car"]
  assert report["class_pixel_counts"] == [50, 30, 4]
  np.testing.assert_allclose(report["class_pixel_frequency"],
                             np.array([50, 30, 4]) / 84)
  assert report["num_pixels"] == 96 and report["ignore_pixels"] == 4
  assert report["ignore_fraction"] == pytest.approx(4 / 96)
  assert report["out_of_range"] == [
      {"value": 7, "pixels": 8, "images": 1, "examples": ["b.jpg"]}]
  assert report["num_label_size_mismatches"] == 1
  assert report["label_size_mismatches"] == [
      {"file": paths[0], "filename": "c.png", "image_size": "10x12",
       "label_size": "3x4"}]
  assert report["num_decode_errors"] == 2
  errors = {(e["file"], e["filename"]) for e in report["decode_errors"]}
  assert errors == {(paths[1], "d.png"), (paths[0], "<unnamed image>")}
  assert not report["num_classes_inferred"] and not report["notes"]
  text = inspect_lib.format_report(report)
  for fragment in ("| 1 | road | 30 |", "| 6x8 | 2 |", "| 7 | 1 | 8 | b.jpg |",
                   "c.png", "d.png"):
    assert fragment in text
  assert report["classes_without_pixels"] == [] and "no pixels" not in text


def test_without_dataset_info_names_and_infers_classes(records):
  data_dir, _ = records
  report = inspect_lib.inspect_records(str(data_dir / "val-*.tfrecord"))
  assert report["dataset_info"] is None and report["num_classes_inferred"]
  assert report["num_classes"] == 8 and report["ignore_label"] == 255
  assert report["class_names"] == [f"class_{i}" for i in range(8)]
  assert report["class_pixel_counts"] == [50, 30, 4, 0, 0, 0, 0, 8]
  assert report["out_of_range"] == []
  assert "largest label value + 1" in report["notes"][0]


def test_dataset_info_beside_the_glob_is_used(records, tmp_path):
  data_dir, paths = records
  local = tmp_path / "data"
  local.mkdir()
  for path in paths:
    (local / os.path.basename(path)).write_bytes(open(path, "rb").read())
  info_path = dataset_info.write(str(local), INFO)
  report = inspect_lib.inspect_records(str(local / "val-*.tfrecord"),
                                       max_examples=1)
  assert report["dataset_info"] == info_path
  assert report["class_names"] == ["sky", "road", "car"]
  assert report["num_records"] == 1 and report["class_pixel_counts"] == [20, 20, 4]
  assert any("--max_examples" in note for note in report["notes"])


TITLE = visualization.TITLE_HEIGHT


def test_previews_show_image_and_overlay(records, tmp_path):
  data_dir, _ = records
  preview_dir = tmp_path / "previews"
  report = inspect_lib.inspect_records(
      str(data_dir / "val-*.tfrecord"), info=INFO, num_previews=2,
      preview_dir=str(preview_dir))
  assert len(report["previews"]) == 2
  assert sorted(os.listdir(preview_dir)) == ["0000_a.png", "0001_b.png"]
  preview = np.asarray(Image.open(preview_dir / "0000_a.png"))
  # A title row above, a legend below the two panels.
  assert preview.shape[1] == 2 * WIDTH and preview.shape[0] > HEIGHT + TITLE
  preview = preview[TITLE:TITLE + HEIGHT]
  np.testing.assert_array_equal(preview[:, :WIDTH], _image(0))
  overlay = preview[:, WIDTH:]
  # Ignore pixels are not coloured: the image shows through.
  np.testing.assert_array_equal(overlay[LABEL_A == 255], _image(0)[LABEL_A == 255])
  car = LABEL_A == 2
  expected = np.round(0.5 * _image(0)[car] + 0.5 * np.array([0, 0, 250]))
  np.testing.assert_allclose(overlay[car], expected, atol=1)
  with pytest.raises(ValueError, match="--preview_dir"):
    inspect_lib.inspect_records(str(data_dir / "val-*.tfrecord"), num_previews=1)


def test_corrupt_file_is_reported_and_the_rest_read(records, tmp_path):
  _, paths = records
  good = tmp_path / "val-00000-of-00002.tfrecord"
  good.write_bytes(open(paths[1], "rb").read())
  corrupt = tmp_path / "val-00001-of-00002.tfrecord"
  corrupt.write_bytes(b"\x00" * 40)
  report = inspect_lib.inspect_records(str(tmp_path / "val-*.tfrecord"), info=INFO)
  assert report["num_records"] == 2 and report["class_pixel_counts"] == [30, 10, 0]
  assert report["num_decode_errors"] == 2
  assert report["decode_errors"][1]["file"] == str(corrupt)
  assert "corrupt TFRecord file" in report["decode_errors"][1]["error"]


def test_classes_without_pixels_are_flagged(tmp_path):
  # Road and sky only: car is absent, which a 0 among the rows hides.
  label = tf_example.encode_png(np.repeat([0, 1], 24).reshape(
      HEIGHT, WIDTH).astype(np.uint8))
  example = tf_example.make_example(tf_example.encode_png(_image(0)), label,
                                    "a.png", HEIGHT, WIDTH)
  tf_example.write_sharded([example], str(tmp_path), "val", 1)
  report = inspect_lib.inspect_records(str(tmp_path / "val-*.tfrecord"),
                                       info=INFO)
  assert report["classes_without_pixels"] == [2]
  lines = inspect_lib.format_report(report).splitlines()
  assert "| 2 | car | 0 (absent) | 0.000000 |" in lines
  assert "| 1 | road | 24 | 0.500000 |" in lines
  assert "1 class has no pixels in val: car" in lines
  # Files that are not one split's shards are named by the pattern.
  other = tmp_path / "mixed.tfrecord"
  other.write_bytes((tmp_path / "val-00000-of-00001.tfrecord").read_bytes())
  info = dict(INFO, **{_INFO.num_classes: 4,
                       _INFO.class_names: ["sky", "road", "car", "bus"],
                       _INFO.palette: INFO[_INFO.palette] + [[9, 9, 9]]})
  pattern = f"{tmp_path / 'val-*.tfrecord'},{other}"
  report = inspect_lib.inspect_records(pattern, info=info)
  assert (f"2 classes have no pixels in {pattern}: car, bus"
          in inspect_lib.format_report(report).splitlines())


def test_empty_glob_names_it(tmp_path):
  with pytest.raises(ValueError, match="nothing-here"):
    inspect_lib.inspect_records(str(tmp_path / "nothing-here-*.tfrecord"))


def test_frequencies_match_the_synthetic_dataset_info(tiny_dataset):
  report = inspect_lib.inspect_records(str(tiny_dataset / "val-*.tfrecord"))
  info = dataset_info.load(str(tiny_dataset))
  assert report["dataset_info"] == str(tiny_dataset / _INFO.file_name)
  assert report["num_records"] == info[_INFO.num_examples]["val"] == 6
  assert report["image_sizes"] == {"64x64": 6}
  assert report["class_names"] == info[_INFO.class_names]
  np.testing.assert_allclose(report["class_pixel_frequency"],
                             info[_INFO.class_pixel_frequency]["val"],
                             rtol=1e-6, atol=1e-6)
  assert report["ignore_pixels"] == 0 and report["out_of_range"] == []


def _run_cli(*args):
  env = dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT))
  return subprocess.run(
      [sys.executable, "-m", "fast_seg.data.inspect", *map(str, args)],
      cwd=helpers.REPO_ROOT, env=env, capture_output=True, text=True,
      timeout=300)


def test_cli_report_json_and_user_error(records, tmp_path):
  data_dir, _ = records
  info_path = dataset_info.write(str(tmp_path), INFO)
  pattern = str(data_dir / "val-*.tfrecord")
  output = tmp_path / "out" / "report.json"
  result = _run_cli("--input_pattern", pattern, "--dataset_info", info_path,
                    "--num_previews", 1, "--preview_dir", tmp_path / "previews",
                    "--output_json", output)
  assert result.returncode == 0, result.stderr[-2000:]
  assert "| 2 | car | 4 |" in result.stdout
  assert "Labels of another size than their image (1" in result.stdout
  on_disk = json.loads(output.read_text())
  expected = inspect_lib.inspect_records(pattern, info=info_path)
  assert on_disk.pop("previews") == [str(tmp_path / "previews" / "0000_a.png")]
  expected.pop("previews")
  assert on_disk == json.loads(json.dumps(expected))

  result = _run_cli("--input_pattern", tmp_path / "none-*.tfrecord")
  assert result.returncode == 2
  assert "error:" in result.stderr and "none-*.tfrecord" in result.stderr
  assert "Traceback" not in result.stderr
