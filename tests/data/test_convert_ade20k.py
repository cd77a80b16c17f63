"""ADE20K: SceneParsing (ADEChallengeData2016) from the real samples in
shared/data/ade20k, and the full release (ADE20K_2016_07_26,
ADE20K_2021_17_01) from synthetic trees with hand-written _seg.png files."""

import csv
import json
import pickle
import re
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import scipy.io

from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.data.converters import ade20k
from tests import helpers

SOURCE = helpers.SHARED_DATA / "ade20k"
# The small thumbnail goes to training, the two full-size images to validation.
SPLITS = {"train": ["ADE_val_00001267"],
          "val": ["ADE_val_00000278", "ADE_val_00001519"]}
# ADE ids (annotation values) of the classes the whitelist tests use.
WALL, FLOOR, PERSON, PLANT, CAR, TRUCK, VAN = 1, 4, 13, 18, 21, 84, 103


def _quiet(**kwargs):
  return {"workers": 1, "progress": False, "log": lambda line: None, **kwargs}


def _require_source():
  if not SOURCE.is_dir():
    pytest.skip(f"real ADE20K samples not found at {SOURCE}")


def _source_label(name):
  return np.asarray(Image.open(SOURCE / "labels" / f"{name}.png"))


@pytest.fixture(name="ade_dir")
def fixture_ade_dir(tmp_path):
  """The parent of ADEChallengeData2016/{images,annotations}/{training,...}."""
  _require_source()
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
  _require_source()
  with open(SOURCE / "object150_info.csv", newline="", encoding="utf-8") as f:
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


def _assert_scene_parsing_ids(out):
  """Every split's records are the samples' 150-class ids, 0 -> ignore."""
  for split, names in SPLITS.items():
    records = helpers.read_records(str(out / f"{split}-*.tfrecord"))
    assert sorted(records) == names
    for name, (image, label) in records.items():
      source = _source_label(name)
      np.testing.assert_array_equal(
          label, np.where(source == 0, 255, source.astype(np.int32) - 1))
      assert image.shape[:2] == source.shape


def test_full_150_class_relabelling(ade_dir, tmp_path):
  out = tmp_path / "out"
  convert.convert(ade20k.ADE20KConverter(str(ade_dir)), str(out),
                  **_quiet(workers=2))
  _assert_scene_parsing_ids(out)
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


# ----------------------------------------------------------------------------
# The full release: synthetic trees, an index file and hand-written _seg.png.

# Class values (1-based positions in the index's objectnames) of real object
# names of the 2016 index, as SceneParsing's mapFromADE.txt and MaskFormer's
# ADE-847 table give them; every other position holds a made-up name.
REAL_NAMES = {
    2978: "wall",
    1831: "person, individual, someone, somebody, mortal, soul",
    165: "bed",
    774: "door", 783: "double door",  # both SceneParsing's 15 'door'
    533: "closet", 2985: "wardrobe, closet, press",  # both 36
    246: "booth", 247: "booth, cubicle, stall, kiosk",  # both 89
    3109: "screen, crt screen",  # 142 'crt screen'
    2733: "television receiver, television, television set, tv, tv set, "
          "idiot box, boob tube, telly, goggle box",  # 90, synonyms reordered
    # Names that are only a synonym of a class, or no class: "other".
    1974: "pot", 490: "chest", 1481: "machine", 3087: "work surface",
}
NUM_OBJECT_NAMES = 3148
# value grids of the three images, and their 150-class ids worked out by hand
# (ADE id - 1; 255 = ignore).
FULL_IMAGES = {
    "train": {
        "a/abbey/ADE_train_00000001": (
            [[2978, 2978, 1831, 774, 783, 0],
             [533, 2985, 246, 247, 3109, 2733]],
            [[0, 0, 12, 14, 14, 255],
             [35, 35, 88, 88, 141, 89]]),
        "b/bathroom/ADE_train_00000002": (
            [[1974, 490, 1481, 3087, 165, 3148]],
            [[255, 255, 255, 255, 7, 255]]),
    },
    "val": {
        "a/airport/ADE_val_00000001": (
            [[2978, 1831], [165, 0]],
            [[0, 12], [7, 255]]),
    },
}
RELEASES = {  # release -> (folder, index file, images folder below it)
    "2016": ("ADE20K_2016_07_26", "index_ade20k.mat", "images"),
    "2021": ("ADE20K_2021_17_01", "index_ade20k.pkl", "images/ADE"),
}


def _object_names(names=None):
  object_names = [f"made-up object {v}" for v in range(1, NUM_OBJECT_NAMES + 1)]
  for value, name in (names or REAL_NAMES).items():
    object_names[value - 1] = name
  return object_names


def _encode_seg(values):
  """A _seg.png's pixels: class = R / 10 * 256 + G, an instance id in B."""
  values = np.asarray(values, np.int64)
  rgb = np.zeros(values.shape + (3,), np.uint8)
  rgb[..., 0] = values // 256 * 10
  rgb[..., 1] = values % 256
  rgb[..., 2] = np.where(values > 0, 3, 0)
  return rgb


def _write_index(path, object_names):
  """index_ade20k.mat as MATLAB's struct `index`, or the 2021 pickled dict."""
  if path.suffix == ".mat":
    scipy.io.savemat(path, {"index": {
        "objectnames": np.array(object_names, dtype=object).reshape(1, -1),
        "filename": np.array(["ADE_train_00000001.jpg"], dtype=object)}})
  else:
    with open(path, "wb") as f:
      pickle.dump({"objectnames": object_names,
                   "filename": ["ADE_train_00000001.jpg"]}, f)


def _write_full_release(parent, release, images, object_names=None):
  """parent/<release folder>/ with its index and `images` {split: {path: values}}."""
  folder, index_file, images_dir = RELEASES[release]
  root = parent / folder
  for split, entries in images.items():
    for path, values in entries.items():
      stem = root / images_dir / ade20k._SPLIT_DIRS[split] / path
      stem.parent.mkdir(parents=True, exist_ok=True)
      seg = _encode_seg(values)
      Image.fromarray(seg).save(f"{stem}_seg.png")
      Image.fromarray(np.full(seg.shape, 90, np.uint8)).save(f"{stem}.jpg")
  if object_names is not False:
    _write_index(root / index_file, object_names or _object_names())
  return root


@pytest.fixture(name="full_dir", params=sorted(RELEASES))
def fixture_full_dir(request, tmp_path):
  """The parent of a synthetic full release (2016 .mat, 2021 .pkl layout)."""
  images = {split: {path: values for path, (values, _) in entries.items()}
            for split, entries in FULL_IMAGES.items()}
  _write_full_release(tmp_path / "src", request.param, images)
  return tmp_path / "src"


def _expected_full(split):
  return {path.split("/")[-1]: np.array(ids, np.uint8)
          for path, (_, ids) in FULL_IMAGES[split].items()}


def test_full_release_names_map_to_the_150_classes():
  ids = ade20k.full_release_ade_ids(_object_names())
  assert ids.shape == (NUM_OBJECT_NAMES + 1,) and ids[0] == 0
  mapped = {v: int(ids[v]) for v in np.flatnonzero(ids)}
  assert mapped == {2978: 1, 1831: 13, 165: 8, 774: 15, 783: 15, 533: 36,
                    2985: 36, 246: 89, 247: 89, 3109: 142, 2733: 90}
  # Case, spacing and synonym order do not matter; a synonym alone does.
  assert ade20k.full_release_ade_ids(
      ["Bed ", "flooring,floor", "window", "screen", "ground"]).tolist() == [
          0, 8, 4, 0, 0, 0]


def test_full_release_conversion(full_dir, tmp_path):
  out = tmp_path / "out"
  converter = ade20k.ADE20KConverter(str(full_dir))
  assert converter.full_release
  convert.convert(converter, str(out), **_quiet())
  for split in FULL_IMAGES:
    records = helpers.read_records(str(out / f"{split}-*.tfrecord"))
    expected = _expected_full(split)
    assert sorted(records) == sorted(expected)
    for name, (image, label) in records.items():
      np.testing.assert_array_equal(label, expected[name])
      assert image.shape[:2] == label.shape
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["num_classes"] == 150 and info["class_names"][12] == "person"
  assert info["num_examples"] == {"train": 2, "val": 1}
  full = info["ade20k_full_release"]
  assert full["index_file"].endswith(("index_ade20k.mat", "index_ade20k.pkl"))
  assert full["object_names"] == NUM_OBJECT_NAMES
  # The synthetic index names 8 of the 150 classes.
  assert len(full["classes_without_object_name"]) == 142
  assert "wall" not in full["classes_without_object_name"]


def test_full_release_whitelist_and_threshold(full_dir, tmp_path):
  converter = ade20k.ADE20KConverter(
      str(full_dir), whitelist="person|wall|door:bed", whitelist_threshold=1.0)
  out = tmp_path / "out"
  summary = convert.convert(converter, str(out), **_quiet())
  # Objects outside the 150 stay ignore; the 150 outside the whitelist are
  # background. ADE_train_00000002 has only door:bed, 1 of the 3 classes.
  assert summary["splits"]["train"]["filtered"] == 1
  records = helpers.read_records(str(out / "train-*.tfrecord"))
  np.testing.assert_array_equal(records["ADE_train_00000001"][1], [
      [2, 2, 1, 3, 3, 255], [0, 0, 0, 0, 0, 0]])
  records = helpers.read_records(str(out / "val-*.tfrecord"))
  np.testing.assert_array_equal(records["ADE_val_00000001"][1],
                                [[2, 1], [3, 255]])
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["label_map"]["door+bed"] == [15, 8]


def test_full_release_gives_the_scene_parsing_ids(ade_dir, tmp_path):
  """The real samples' annotations, re-coded as full-release _seg.png files
  (class v at a made-up position), convert to the SceneParsing ids."""
  position = lambda ade_id: np.where(
      np.asarray(ade_id) > 0, 200 + 17 * np.asarray(ade_id, np.int64), 0)
  names = {int(position(i)): ade20k.CLASS_NAMES[i - 1] for i in range(1, 151)}
  names[int(position(15))] = "door"  # 'door, double door' is not one name
  images = {split: {f"s/scene/{name}": position(_source_label(name))
                    for name in names_}
            for split, names_ in SPLITS.items()}
  root = _write_full_release(tmp_path / "full", "2016", images,
                             _object_names(names))
  for split, split_names in SPLITS.items():  # real images, not grey ones
    for name in split_names:
      Image.open(SOURCE / "images" / f"{name}.png").save(
          root / "images" / ade20k._SPLIT_DIRS[split] / "s" / "scene"
          / f"{name}.jpg")
  out = tmp_path / "out"
  convert.convert(ade20k.ADE20KConverter(str(root)), str(out), **_quiet())
  _assert_scene_parsing_ids(out)


def test_full_release_layout_detection(full_dir):
  root = next(full_dir.iterdir())
  for path in (full_dir, root):
    converter = ade20k.ADE20KConverter(str(path))
    assert converter.full_release and converter.root == str(root)
    samples, problems = converter.list_pairs("train")
    assert [s.name for s in samples] == ["ADE_train_00000001",
                                         "ADE_train_00000002"]
    assert not problems
  assert samples[0].label_path == samples[0].image_path[:-4] + "_seg.png"


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_full_release_without_index_file(tmp_path, release):
  root = _write_full_release(tmp_path, release, {"train": {
      "a/abbey/ADE_train_00000001": [[2978]]}}, object_names=False)
  expected, other = ("index_ade20k.mat", "pkl") if release == "2016" else (
      "index_ade20k.pkl", "mat")
  for path in (tmp_path, root):
    with pytest.raises(convert_lib.LayoutError,
                       match=re.escape(f"missing {root / expected} (or "
                                       f"index_ade20k.{other})")):
      ade20k.ADE20KConverter(str(path))


def test_full_release_bad_index_file(tmp_path):
  root = _write_full_release(tmp_path, "2021", {"train": {
      "a/abbey/ADE_train_00000001": [[2978]]}}, object_names=False)
  with open(root / "index_ade20k.pkl", "wb") as f:
    pickle.dump({"filename": ["ADE_train_00000001.jpg"]}, f)
  with pytest.raises(convert_lib.ConversionError,
                     match=r"index_ade20k.pkl: not an ADE20K index"):
    ade20k.ADE20KConverter(str(root))
  (root / "index_ade20k.pkl").unlink()
  (root / "index_ade20k.mat").write_bytes(b"not a MATLAB file")
  with pytest.raises(convert_lib.ConversionError,
                     match=r"index_ade20k.mat: not an ADE20K index"):
    ade20k.ADE20KConverter(str(root))


@pytest.mark.parametrize("seg,message", [
    (np.zeros((1, 2), np.uint8), r"expected an RGB ADE20K _seg.png"),
    (_encode_seg([[2978, 2978]]) + np.array([3, 0, 0], np.uint8),
     r"red values \[113\] are not multiples of 10"),
    (_encode_seg([[2978, NUM_OBJECT_NAMES + 1]]),
     r"label values \[3149\] out of range.*1\.\.3148, the object names of"),
])
def test_full_release_malformed_seg_png(tmp_path, seg, message):
  root = _write_full_release(tmp_path, "2016", {"train": {
      "a/abbey/ADE_train_00000001": [[2978, 2978]]}})
  path = root / "images/training/a/abbey/ADE_train_00000001_seg.png"
  Image.fromarray(seg).save(path)
  with pytest.raises(convert_lib.ConversionError,
                     match=re.escape(str(path)) + ": " + message):
    convert.convert(ade20k.ADE20KConverter(str(root)), str(tmp_path / "o"),
                    splits=["train"], **_quiet())


def test_full_release_image_without_seg_png(tmp_path):
  root = _write_full_release(tmp_path, "2016", {"train": {
      "a/abbey/ADE_train_00000001": [[2978]],
      "b/bar/ADE_train_00000002": [[2978]]}})
  seg = root / "images/training/b/bar/ADE_train_00000002_seg.png"
  seg.rename(root / "images/training/a/abbey/ADE_train_00000002_seg.png")
  samples, problems = ade20k.ADE20KConverter(str(root)).list_pairs("train")
  assert [s.name for s in samples] == ["ADE_train_00000001"]
  assert sorted(p.message.split(" (")[0] for p in problems) == [
      "label without an image", "no label file"]
