"""ADE20K (ADEChallengeData2016) from the real samples in shared/data/ade20k."""

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.data.converters import ade20k
from tests import helpers

SOURCE = helpers.SHARED_DATA / "ade20k"
pytestmark = pytest.mark.skipif(
    not SOURCE.is_dir(), reason=f"real ADE20K samples not found at {SOURCE}")
# The small thumbnail goes to training, the two full-size images to validation.
SPLITS = {"train": ["ADE_val_00001267"],
          "val": ["ADE_val_00000278", "ADE_val_00001519"]}
# ADE ids (annotation values) of the classes the whitelist tests use.
WALL, FLOOR, PERSON, PLANT, CAR, TRUCK, VAN = 1, 4, 13, 18, 21, 84, 103


def _quiet(**kwargs):
  return {"workers": 1, "progress": False, "log": lambda line: None, **kwargs}


def _source_label(name):
  return np.asarray(Image.open(SOURCE / "labels" / f"{name}.png"))


@pytest.fixture(name="ade_dir")
def fixture_ade_dir(tmp_path):
  """The parent of ADEChallengeData2016/{images,annotations}/{training,...}."""
  root = tmp_path / "src" / ade20k.ROOT_NAME
  for split, folder in (("train", "training"), ("val", "validation")):
    (root / "images" / folder).mkdir(parents=True)
    (root / "annotations" / folder).mkdir(parents=True)
    for name in SPLITS[split]:
      Image.open(SOURCE / "images" / f"{name}.png").save(
          root / "images" / folder / f"{name}.jpg", quality=95)
      shutil.copy(SOURCE / "labels" / f"{name}.png",
                  root / "annotations" / folder / f"{name}.png")
  return tmp_path / "src"


def _expected(source, groups, unlisted):
  """The whitelist mapping, written out independently of the converter."""
  first = 1 if unlisted == "background" else 0
  expected = np.full(source.shape, 0 if first else 255, np.uint8)
  for i, ids in enumerate(groups):
    expected[np.isin(source, ids)] = first + i
  expected[source == 0] = 255
  return expected


def test_class_names_match_object150_info_csv():
  with open(SOURCE / "object150_info.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [int(r["Idx"]) for r in rows] == list(range(1, 151))
  assert len(ade20k.CLASS_NAMES) == len(ade20k.PALETTE) == 150
  for row, name in zip(rows, ade20k.CLASS_NAMES):
    words = name.replace(", ", ";").replace(" ", ";").split(";")
    csv_words = row["Name"].strip().split(";")
    # The CSV puts class 90's 'television' before 'television receiver'; the
    # SceneParsing objectInfo150 and mmsegmentation start with the latter.
    if row["Idx"] == "90":
      assert sorted(words) == sorted(csv_words)
    else:
      assert words == csv_words, row["Idx"]


def test_palette_and_short_names():
  assert ade20k.PALETTE[:3] == ((120, 120, 120), (180, 120, 120),
                                (6, 230, 230))
  # The challenge colours repeat only for road and skyscraper.
  colors = {}
  for i, color in enumerate(ade20k.PALETTE, 1):
    colors.setdefault(color, []).append(i)
  assert [ids for ids in colors.values() if len(ids) > 1] == [[7, 49]]
  short = [ade20k.short_name(i) for i in range(1, 151)]
  assert len(set(short)) == 150
  assert short[:4] == ["wall", "building", "sky", "floor"]
  assert short[89] == "television receiver" and short[149] == "flag"


def test_full_150_class_relabelling(ade_dir, tmp_path):
  out = tmp_path / "out"
  convert.convert(ade20k.ADE20KConverter(str(ade_dir)), str(out),
                  **_quiet(workers=2))
  for split, names in SPLITS.items():
    records = helpers.read_records(str(out / f"{split}-*.tfrecord"))
    assert sorted(records) == names
    for name, (image, label) in records.items():
      source = _source_label(name)
      np.testing.assert_array_equal(
          label, np.where(source == 0, 255, source.astype(np.int32) - 1))
      assert image.shape[:2] == source.shape
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["num_classes"] == 150 and info["ignore_label"] == 255
  assert info["class_names"][:3] == ["wall", "building", "sky"]
  assert info["palette"][0] == [120, 120, 120]
  assert info["num_examples"] == {"train": 1, "val": 2}
  assert "label_map" not in info


def test_root_or_its_parent_and_missing_layout(ade_dir, tmp_path):
  for path in (ade_dir, ade_dir / ade20k.ROOT_NAME):
    samples, problems = ade20k.ADE20KConverter(str(path)).list_pairs("val")
    assert [s.name for s in samples] == SPLITS["val"] and not problems
  with pytest.raises(FileNotFoundError, match="ADEChallengeData2016"):
    ade20k.ADE20KConverter(str(tmp_path)).list_pairs("train")


@pytest.mark.parametrize("unlisted", ade20k.UNLISTED_CHOICES)
def test_whitelist_merges_and_relabels(ade_dir, tmp_path, unlisted):
  whitelist = " Person |wall|Floor, Flooring|car:truck : VAN|flora"
  groups = [[PERSON], [WALL], [FLOOR], [CAR, TRUCK, VAN], [PLANT]]
  converter = ade20k.ADE20KConverter(str(ade_dir), whitelist=whitelist,
                                     unlisted=unlisted)
  out = tmp_path / "out"
  summary = convert.convert(converter, str(out), **_quiet())
  assert summary["splits"]["val"]["filtered"] == 0
  unlisted_pixels = 0
  for split, names in SPLITS.items():
    records = helpers.read_records(str(out / f"{split}-*.tfrecord"))
    assert sorted(records) == names
    for name, (_, label) in records.items():
      source = _source_label(name)
      np.testing.assert_array_equal(label,
                                    _expected(source, groups, unlisted))
      unlisted_pixels += int((~np.isin(source, sum(groups, [0]))).sum())
  assert unlisted_pixels > 0  # the samples exercise the unlisted mapping
  names = ["person", "wall", "floor", "car+truck+van", "plant"]
  colors = [list(ade20k.PALETTE[g[0] - 1]) for g in groups]
  info = json.loads((out / "dataset_info.json").read_text())
  if unlisted == "background":
    names, colors = ["background"] + names, [[0, 0, 0]] + colors
  assert info["class_names"] == names and info["palette"] == colors
  assert info["whitelist"] == whitelist.strip()
  assert info["unlisted"] == unlisted and info["whitelist_threshold"] == 0
  label_map = info["label_map"]
  if unlisted == "background":
    background = label_map.pop("background")
    assert len(background) == 150 - 7 and PERSON not in background
  assert label_map == dict(zip(names[-5:], groups))


def test_whitelist_threshold_filters_images(ade_dir, tmp_path):
  groups = [[WALL], [FLOOR], [PERSON], [CAR], [PLANT]]
  threshold = 0.6  # at least 3 of the 5 classes
  present = {name: sum(bool(np.isin(_source_label(name), g).any())
                       for g in groups)
             for names in SPLITS.values() for name in names}
  kept = {name for name, n in present.items() if n >= 3}
  assert kept and kept != set(present)  # the samples exercise both outcomes
  converter = ade20k.ADE20KConverter(
      str(ade_dir), whitelist="wall|floor|person|car|plant",
      whitelist_threshold=threshold)
  out = tmp_path / "out"
  summary = convert.convert(converter, str(out), **_quiet())
  written = set()
  for split, names in SPLITS.items():
    stats = summary["splits"][split]
    assert stats["filtered"] == len(set(names) - kept)
    assert stats["skipped"] == 0
    if stats["written"]:
      written.update(helpers.read_records(str(out / f"{split}-*.tfrecord")))
  assert written == kept
  dropped = sorted(set(present) - kept)[0]
  assert any(line.startswith(f"{dropped}: {present[dropped]} of the 5")
             for s in summary["splits"].values()
             for line in s["filtered_images"])
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["whitelist_threshold"] == threshold


def test_threshold_rounds_up_and_one_keeps_only_complete_images(ade_dir):
  converter = ade20k.ADE20KConverter(str(ade_dir), whitelist="wall|car",
                                     whitelist_threshold=1.0)
  both = np.array([[1, 2]], np.uint8)  # output ids of wall and car
  assert converter.filter_reason(both) is None
  assert "1 of the 2" in converter.filter_reason(np.array([[1, 0]], np.uint8))
  ten = "|".join(ade20k.short_name(i) for i in range(1, 11))
  tenth = ade20k.ADE20KConverter(str(ade_dir), whitelist=ten,
                                 whitelist_threshold=0.7)
  assert tenth.min_groups == 7


def test_list_labels():
  text = ade20k.labels_text()
  lines = [l for l in text.splitlines() if l[:3].strip().isdigit()]
  assert len(lines) == 150
  assert lines[0] == "  1: wall" and lines[-1] == "150: flag"
  assert "  4: floor, flooring" in lines
  result = subprocess.run(
      [sys.executable, "-m", "fast_seg.data.convert", "--dataset", "ade20k",
       "--list_labels"], capture_output=True, text=True, check=False,
      cwd=helpers.REPO_ROOT)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == text


@pytest.mark.parametrize("whitelist,message", [
    ("persn|wall", r"'persn' is not an ADE20K class; did you mean 'person'"),
    ("wall|skyscrapr", r"did you mean 'skyscraper'"),
    ("ground", r"ambiguous.*'earth, ground'.*'land, ground, soil'"),
    ("person|wall|individual", r"lists 'person, individual.*twice"),
    ("car:truck|truck", r"twice"),
    ("wall||floor", r"empty class name"),
])
def test_whitelist_errors(ade_dir, whitelist, message):
  with pytest.raises(ValueError, match=message):
    ade20k.ADE20KConverter(str(ade_dir), whitelist=whitelist)


def test_flag_errors(ade_dir):
  with pytest.raises(ValueError, match="needs --whitelist"):
    ade20k.ADE20KConverter(str(ade_dir), whitelist_threshold=0.5)
  with pytest.raises(ValueError, match=r"in \[0, 1\]"):
    ade20k.ADE20KConverter(str(ade_dir), whitelist="wall",
                           whitelist_threshold=1.5)
  with pytest.raises(ValueError, match="--unlisted"):
    ade20k.ADE20KConverter(str(ade_dir), whitelist="wall", unlisted="other")


def test_synonyms_resolve_to_their_class():
  assert ade20k.resolve_name("screen") == 131  # first synonym wins
  assert ade20k.resolve_name("  Double   Door ") == 15
  assert ade20k.resolve_name("chest of drawers, chest, bureau, dresser") == 45
  assert ade20k.resolve_name("counter") == 46


def test_value_above_150_is_an_error(ade_dir, tmp_path):
  path = (ade_dir / ade20k.ROOT_NAME / "annotations" / "training"
          / f"{SPLITS['train'][0]}.png")
  label = np.asarray(Image.open(path)).copy()
  label[0, :3] = 151
  Image.fromarray(label).save(path)
  with pytest.raises(convert_lib.ConversionError,
                     match=r"values \[151\] out of range.*1\.\.150"):
    convert.convert(ade20k.ADE20KConverter(str(ade_dir)), str(tmp_path / "o"),
                    **_quiet())
