"""CamVid (SegNet layout) from the real samples in ../shared/data/camvid."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from fast_seg.data import convert
from fast_seg.data.converters import camvid
from tests import helpers

SOURCE = helpers.SHARED_DATA / "camvid"
pytestmark = pytest.mark.skipif(
    not SOURCE.is_dir(), reason=f"real CamVid samples not found at {SOURCE}")
PER_SPLIT = 3


def _segnet_layout(root):
  """Puts the first samples of each split into CamVid/{split,splitannot}/."""
  names = {}
  for split in camvid.CamVidConverter.splits:
    names[split] = (SOURCE / f"{split}.txt").read_text().split()[:PER_SPLIT]
    (root / "CamVid" / split).mkdir(parents=True)
    (root / "CamVid" / f"{split}annot").mkdir()
    for name in names[split]:
      Image.open(SOURCE / "images" / f"{name}.jpg").save(
          root / "CamVid" / split / f"{name}.png")
      shutil.copy(SOURCE / "labels" / f"{name}.png",
                  root / "CamVid" / f"{split}annot" / f"{name}.png")
  return names


def test_camvid_labels_keep_ids_and_void_becomes_ignore(tmp_path):
  names = _segnet_layout(tmp_path / "src")
  out = tmp_path / "out"
  convert.convert(camvid.CamVidConverter(str(tmp_path / "src")), str(out),
                  workers=2, progress=False, log=lambda line: None)
  void_pixels = 0
  for split, split_names in names.items():
    records = helpers.read_records(str(out / f"{split}-*.tfrecord"))
    assert sorted(records) == sorted(split_names)
    for name, (image, label) in records.items():
      source = np.asarray(Image.open(SOURCE / "labels" / f"{name}.png"))
      expected = np.where(source == camvid.VOID_ID, 255, source)
      np.testing.assert_array_equal(label, expected)
      void_pixels += int((source == camvid.VOID_ID).sum())
      np.testing.assert_array_equal(image, np.asarray(Image.open(
          tmp_path / "src/CamVid" / split / f"{name}.png")))
  assert void_pixels > 0  # the samples do exercise the void mapping
  info = json.loads((out / "dataset_info.json").read_text())
  assert info["num_classes"] == 11 and info["ignore_label"] == 255
  assert info["class_names"][0] == "sky" and info["class_names"][10] == "bicyclist"
  assert info["num_examples"] == {s: PER_SPLIT for s in names}


def test_camvid_label_above_void_is_an_error(tmp_path):
  _segnet_layout(tmp_path / "src")
  label_dir = tmp_path / "src/CamVid/valannot"
  first = sorted(label_dir.iterdir())[0]
  label = np.asarray(Image.open(first)).copy()
  label[0, :4] = 12
  Image.fromarray(label).save(first)
  summary = convert.convert(
      camvid.CamVidConverter(str(tmp_path / "src")), str(tmp_path / "out"),
      on_error="skip", workers=1, progress=False, log=lambda line: None)
  assert summary["splits"]["val"]["skipped"] == 1
  assert summary["splits"]["val"]["problems"] == [
      f"{first}: label values [12] out of range (CamVid ids are 0..10 and "
      "11 = void)"]


def _list_layout(root, per_split=PER_SPLIT):
  """images/ + labels/ + <split>.txt, as ../shared/data/camvid has them; the
  test list in SegNet's "<image> <label>" form."""
  (root / "images").mkdir(parents=True)
  (root / "labels").mkdir()
  names = {}
  for split in camvid.CamVidConverter.splits:
    names[split] = (SOURCE / f"{split}.txt").read_text().split()[:per_split]
    for name in names[split]:
      shutil.copy(SOURCE / "images" / f"{name}.jpg", root / "images")
      shutil.copy(SOURCE / "labels" / f"{name}.png", root / "labels")
    lines = ([f"/SegNet/CamVid/{split}/{n}.png /SegNet/CamVid/{split}annot/{n}.png"
              for n in names[split]] if split == "test" else names[split])
    (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
  return names


def test_camvid_split_list_layout(tmp_path):
  names = _list_layout(tmp_path / "src")
  out = tmp_path / "out"
  convert.convert(camvid.CamVidConverter(str(tmp_path / "src")), str(out),
                  workers=1, progress=False, log=lambda line: None)
  for split, split_names in names.items():
    records = helpers.read_records(str(out / f"{split}-*.tfrecord"))
    assert sorted(records) == sorted(split_names)
    for name, (image, label) in records.items():
      source = np.asarray(Image.open(SOURCE / "labels" / f"{name}.png"))
      np.testing.assert_array_equal(label, np.where(source == camvid.VOID_ID, 255, source))
      np.testing.assert_array_equal(image, np.asarray(Image.open(
          SOURCE / "images" / f"{name}.jpg")))


def test_camvid_listed_name_without_image_is_reported(tmp_path):
  names = _list_layout(tmp_path / "src")
  (tmp_path / "src" / "images" / f"{names['val'][0]}.jpg").unlink()
  summary = convert.convert(
      camvid.CamVidConverter(str(tmp_path / "src")), str(tmp_path / "out"),
      on_error="skip", workers=1, progress=False, log=lambda line: None)
  assert summary["splits"]["val"]["skipped"] == 1
  problems = summary["splits"]["val"]["problems"]
  assert len(problems) == 1 and names["val"][0] in problems[0]


def _default_sigint():
  # A shell starts background jobs with SIGINT ignored, and Python keeps it
  # ignored (no KeyboardInterrupt) when it starts that way: as a terminal
  # would, give the child the default action.
  signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_interrupted_conversion_leaves_no_partial_files(tmp_path, signum):
  out = tmp_path / "out"
  env = dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
  process = subprocess.Popen(
      [sys.executable, "-m", "fast_seg.data.convert", "--dataset", "camvid",
       "--input_dir", str(SOURCE), "--output_dir", str(out), "--workers", "1"],
      cwd=helpers.REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, preexec_fn=_default_sigint)
  deadline = time.time() + 120
  while not list(out.glob("*.partial")) and time.time() < deadline:
    assert process.poll() is None, process.communicate()
    time.sleep(0.02)
  process.send_signal(signum)
  _, stderr = process.communicate(timeout=120)
  assert process.returncode == 130, stderr[-2000:]
  assert "Traceback" not in stderr
  assert stderr.strip().splitlines()[-1].startswith("interrupted; stopped cleanly")
  assert not list(out.glob("*.partial")) and not list(out.glob("*.tfrecord"))
