"""The conversion engine: checks, fail/skip, atomic shards, overwrite, CLI."""

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.data.converters import folder
from tests import helpers


def _quiet(**kwargs):
  kwargs.setdefault("workers", 1)
  return dict(progress=False, log=lambda line: None, **kwargs)


def _write_pairs(root, count=6, size=(12, 16), num_classes=3, seed=0):
  """Writes `count` random RGB images and index labels; returns the labels."""
  rng = np.random.default_rng(seed)
  images_dir, labels_dir = root / "images", root / "labels"
  images_dir.mkdir(parents=True, exist_ok=True)
  labels_dir.mkdir(parents=True, exist_ok=True)
  labels = {}
  for i in range(count):
    image = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    label = rng.integers(0, num_classes, size, dtype=np.uint8)
    Image.fromarray(image).save(images_dir / f"img_{i}.png")
    Image.fromarray(label).save(labels_dir / f"img_{i}.png")
    labels[f"img_{i}"] = label
  return labels


def _converter(root, **kwargs):
  kwargs.setdefault("class_names", ["a", "b", "c"])
  return folder.FolderConverter(str(root / "images"), str(root / "labels"),
                                **kwargs)


def test_convert_writes_exact_pairs_and_info(tmp_path):
  labels = _write_pairs(tmp_path / "src", count=5)
  out = tmp_path / "out"
  summary = convert.convert(_converter(tmp_path / "src"), str(out),
                            num_shards=2, **_quiet())
  records = helpers.read_records(str(out / "train-*.tfrecord"))
  assert sorted(records) == sorted(labels)
  for name, (image, label) in records.items():
    np.testing.assert_array_equal(label, labels[name])
    np.testing.assert_array_equal(
        image, np.asarray(Image.open(tmp_path / "src/images" / f"{name}.png")))
  assert sorted(os.listdir(out)) == [
      "dataset_info.json", "train-00000-of-00002.tfrecord",
      "train-00001-of-00002.tfrecord"]
  assert summary["splits"]["train"]["images_per_shard"] == [3, 2]
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["num_classes"] == 3 and info["class_names"] == ["a", "b", "c"]
  assert info["num_examples"] == {"train": 5}
  counts = np.bincount(np.concatenate([l.ravel() for l in labels.values()]),
                       minlength=3)
  np.testing.assert_allclose(info["class_pixel_frequency"]["train"],
                             counts / counts.sum(), atol=1e-6)
  assert info["image_sizes"]["train"] == {"12x16": 5}


def test_worker_processes_give_the_same_records(tmp_path):
  _write_pairs(tmp_path / "src", count=9)
  convert.convert(_converter(tmp_path / "src"), str(tmp_path / "one"),
                  num_shards=2, **_quiet(workers=1))
  convert.convert(_converter(tmp_path / "src"), str(tmp_path / "two"),
                  num_shards=2, **_quiet(workers=2))
  for shard in ("train-00000-of-00002.tfrecord",
                "train-00001-of-00002.tfrecord"):
    assert ((tmp_path / "one" / shard).read_bytes()
            == (tmp_path / "two" / shard).read_bytes())


def test_val_fraction_is_deterministic_and_disjoint(tmp_path):
  _write_pairs(tmp_path / "src", count=10)
  first = convert.list_splits(_converter(tmp_path / "src"), None, 0.3, seed=1)[0]
  again = convert.list_splits(_converter(tmp_path / "src"), None, 0.3, seed=1)[0]
  other = convert.list_splits(_converter(tmp_path / "src"), None, 0.3, seed=2)[0]
  names = lambda s: [x.name for x in s]
  assert len(first["val"]) == 3 and len(first["train"]) == 7
  assert names(first["val"]) == names(again["val"])
  assert names(first["val"]) != names(other["val"])
  assert not set(names(first["val"])) & set(names(first["train"]))


def _break(root, kind):
  """Damages img_2's pair in one of the ways users' datasets are damaged."""
  label_path = root / "labels" / "img_2.png"
  if kind == "wrong_size":
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(label_path)
    return label_path, "but its image img_2.png is 16x12"
  if kind == "out_of_range":
    Image.fromarray(np.full((12, 16), 7, np.uint8)).save(label_path)
    return label_path, "label values [7] out of range"
  if kind == "truncated":
    image_path = root / "images" / "img_2.png"
    data = image_path.read_bytes()
    image_path.write_bytes(data[:len(data) // 2])
    return image_path, "unreadable or truncated image"
  if kind == "missing":
    label_path.unlink()
    return root / "images" / "img_2.png", "no label file"
  raise ValueError(kind)


@pytest.mark.parametrize("kind",
                         ["wrong_size", "out_of_range", "truncated", "missing"])
def test_bad_input_fails_naming_the_file_and_writes_nothing(tmp_path, kind):
  _write_pairs(tmp_path / "src", count=5)
  bad_path, message = _break(tmp_path / "src", kind)
  out = tmp_path / "out"
  with pytest.raises(convert_lib.ConversionError) as error:
    convert.convert(_converter(tmp_path / "src"), str(out), **_quiet())
  assert str(error.value).startswith(str(bad_path))
  assert message in str(error.value)
  assert "--on_error skip" in str(error.value)
  leftovers = os.listdir(out) if out.exists() else []
  assert not leftovers, leftovers


@pytest.mark.parametrize("kind",
                         ["wrong_size", "out_of_range", "truncated", "missing"])
def test_bad_input_is_skipped_counted_and_listed(tmp_path, kind):
  labels = _write_pairs(tmp_path / "src", count=5)
  bad_path, message = _break(tmp_path / "src", kind)
  lines = []
  summary = convert.convert(_converter(tmp_path / "src"), str(tmp_path / "out"),
                            on_error="skip", workers=1, progress=False,
                            log=lines.append)
  split = summary["splits"]["train"]
  assert split["written"] == 4 and split["skipped"] == 1
  assert split["problems"] == [f"{bad_path}: " + split["problems"][0].split(
      ": ", 1)[1]]
  assert message in split["problems"][0]
  assert any(str(bad_path) in line for line in lines)
  records = helpers.read_records(str(tmp_path / "out/train-*.tfrecord"))
  assert sorted(records) == sorted(set(labels) - {"img_2"})
  info = json.loads((tmp_path / "out/dataset_info.json").read_text())
  assert info["skipped"] == {"train": 1} and info["num_examples"] == {"train": 4}


def test_progress_lines_agree_with_their_counts(tmp_path, capsys):
  # Two images once printed "1/2 images (25%)" and "1/2 images (50%)".
  _write_pairs(tmp_path / "src", count=2)
  convert.convert(_converter(tmp_path / "src"), str(tmp_path / "out"),
                  workers=1, log=lambda line: None)
  lines = [line.split(",")[0].strip()
           for line in capsys.readouterr().out.splitlines()]
  assert lines == ["1/2 images (50%)", "2/2 images (100%)"]


def test_label_without_image_is_reported(tmp_path):
  _write_pairs(tmp_path / "src", count=3)
  Image.fromarray(np.zeros((12, 16), np.uint8)).save(
      tmp_path / "src/labels/orphan.png")
  summary = convert.convert(_converter(tmp_path / "src"), str(tmp_path / "out"),
                            **_quiet(on_error="skip"))
  assert summary["splits"]["train"]["written"] == 3
  assert "orphan.png: label without an image" in " ".join(
      summary["splits"]["train"]["problems"])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grey_rgba_and_palette_images_are_converted_and_noted(tmp_path, mode):
  labels = _write_pairs(tmp_path / "src", count=2)
  path = tmp_path / "src/images/img_1.png"
  rgb = np.asarray(Image.open(path))
  converted = Image.fromarray(rgb).convert(mode)
  converted.save(path)
  summary = convert.convert(_converter(tmp_path / "src"), str(tmp_path / "out"),
                            **_quiet())
  assert summary["splits"]["train"]["notes"] == {
      f"converted {mode} image to RGB": 1}
  image, label = helpers.read_records(
      str(tmp_path / "out/train-*.tfrecord"))["img_1"]
  np.testing.assert_array_equal(image, np.asarray(converted.convert("RGB")))
  np.testing.assert_array_equal(label, labels["img_1"])


def test_rerun_refuses_without_overwrite_and_keeps_old_shards_on_failure(
    tmp_path):
  _write_pairs(tmp_path / "src", count=4)
  out = tmp_path / "out"
  convert.convert(_converter(tmp_path / "src"), str(out), **_quiet())
  before = (out / "train-00000-of-00001.tfrecord").read_bytes()
  with pytest.raises(ValueError, match="pass --overwrite"):
    convert.convert(_converter(tmp_path / "src"), str(out), **_quiet())
  # An overwrite that fails halfway leaves the earlier, complete shards.
  _break(tmp_path / "src", "out_of_range")
  with pytest.raises(convert_lib.ConversionError):
    convert.convert(_converter(tmp_path / "src"), str(out), overwrite=True,
                    **_quiet())
  assert sorted(os.listdir(out)) == ["dataset_info.json",
                                     "train-00000-of-00001.tfrecord"]
  assert (out / "train-00000-of-00001.tfrecord").read_bytes() == before
  # A successful overwrite replaces them, with a different shard count too.
  convert.convert(_converter(tmp_path / "src"), str(out), overwrite=True,
                  num_shards=2, **_quiet(on_error="skip"))
  assert sorted(os.listdir(out)) == ["dataset_info.json",
                                     "train-00000-of-00002.tfrecord",
                                     "train-00001-of-00002.tfrecord"]


def test_refuses_a_directory_with_other_files(tmp_path):
  _write_pairs(tmp_path / "src", count=2)
  (tmp_path / "out").mkdir()
  (tmp_path / "out/notes.txt").write_text("mine")
  with pytest.raises(ValueError, match="notes.txt"):
    convert.convert(_converter(tmp_path / "src"), str(tmp_path / "out"),
                    **_quiet())


def test_splits_converted_one_by_one_share_the_info_file(tmp_path):
  _write_pairs(tmp_path / "src", count=6)
  out = str(tmp_path / "out")
  convert.convert(_converter(tmp_path / "src"), out, splits=["train"],
                  val_fraction=0.5, **_quiet())
  convert.convert(_converter(tmp_path / "src"), out, splits=["val"],
                  val_fraction=0.5, **_quiet())
  info = json.loads((tmp_path / "out/dataset_info.json").read_text())
  assert info["num_examples"] == {"train": 3, "val": 3}
  train = helpers.read_records(out + "/train-*.tfrecord")
  val = helpers.read_records(out + "/val-*.tfrecord")
  assert len(train) == 3 and len(val) == 3 and not set(train) & set(val)


def test_more_shards_than_images_writes_only_non_empty_shards(tmp_path):
  _write_pairs(tmp_path / "src", count=2)
  summary = convert.convert(_converter(tmp_path / "src"), str(tmp_path / "out"),
                            num_shards=8, **_quiet())
  assert [os.path.basename(p) for p in summary["splits"]["train"]["files"]] == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]


def test_unknown_split_and_bad_arguments(tmp_path):
  _write_pairs(tmp_path / "src", count=2)
  with pytest.raises(ValueError, match="choose from train"):
    convert.convert(_converter(tmp_path / "src"), str(tmp_path / "o"),
                    splits=["test"], **_quiet())
  with pytest.raises(ValueError, match="--on_error"):
    convert.convert(_converter(tmp_path / "src"), str(tmp_path / "o"),
                    **_quiet(on_error="ignore"))


def _cli(*args):
  return subprocess.run(
      [sys.executable, "-m", "fast_seg.data.convert", *args],
      capture_output=True, text=True, cwd=helpers.REPO_ROOT, timeout=300)


def test_cli_converts_and_reports_user_errors(tmp_path):
  _write_pairs(tmp_path / "src", count=4)
  out = tmp_path / "out"
  common = ["--dataset", "folder", "--images_dir", str(tmp_path / "src/images"),
            "--labels_dir", str(tmp_path / "src/labels"), "--class_names",
            "a,b,c", "--output_dir", str(out), "--workers", "2"]
  result = _cli(*common, "--val_fraction", "0.25", "--noprogress")
  assert result.returncode == 0, result.stderr
  assert "| train | 3 | 0 | 0 | 1 (3) |" in result.stdout
  assert "| val | 1 | 0 | 0 | 1 (1) |" in result.stdout
  again = _cli(*common)
  assert again.returncode == 2
  assert "error: --output_dir" in again.stderr and "--overwrite" in again.stderr
  assert "Traceback" not in again.stderr
  wrong_flag = _cli(*common, "--lane", "--overwrite")
  assert wrong_flag.returncode == 2
  assert "--lane does not apply to --dataset folder" in wrong_flag.stderr
  listing = _cli("--list_datasets")
  assert listing.returncode == 0
  for name in convert.CONVERTERS:
    assert name in listing.stdout


@pytest.mark.parametrize("name", sorted(convert.CONVERTERS))
def test_every_converter_shows_its_layout(name):
  layout = convert.CONVERTERS.get(name).layout()
  assert layout.strip() and all(line.startswith("    ") or line == "  or"
                                for line in layout.splitlines())


def test_missing_folder_prints_the_expected_tree(tmp_path):
  (tmp_path / "CamVid").mkdir()
  result = _cli("--dataset", "camvid", "--input_dir", str(tmp_path),
                "--output_dir", str(tmp_path / "out"))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  lines = result.stderr.splitlines()
  errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
  assert len(errors) == 1
  assert lines[errors[0]] == f"error: missing directory: {tmp_path / 'CamVid' / 'train'}"
  hint = "\n".join(lines[errors[0] + 1:])
  assert "--dataset camvid reads:" in hint
  assert "CamVid/train/*.png  CamVid/trainannot/*.png" in hint
  assert "images/<name>.png|jpg  labels/<name>.png  train.txt val.txt test.txt" in hint
  assert "--dataset folder --images_dir DIR --labels_dir DIR" in hint
