"""predict.py colours overlays with the dataset's palette that export.py copies."""

import json

import numpy as np
from PIL import Image
import pytest

from fast_seg.core import standard_fields
from fast_seg.data import dataset_info
from fast_seg.data import synthetic
from fast_seg.export import export_lib
from fast_seg.tools import predict
from fast_seg.utils import visualization

_INFO = standard_fields.DatasetInfoFields


@pytest.fixture(scope="module")
def export_dir(trained_run, tmp_path_factory):
  config, logdir = trained_run
  out = tmp_path_factory.mktemp("export")
  info = export_lib.export(config, logdir, str(out), (1, 64, 64, 3))
  assert info["dataset_info"] == str(out / _INFO.file_name)
  return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
  folder = tmp_path_factory.mktemp("images")
  synthetic.write_sample_images(str(folder), 1, size=(40, 50))
  return folder


def _overlay_colours(output_dir, labels):
  """{class id: its one colour} of an alpha-1 overlay (pure palette colours)."""
  overlay = np.asarray(Image.open(output_dir / "sample_000_overlay.png"))
  colours = {}
  for c in np.unique(labels):
    seen = np.unique(overlay[labels == c], axis=0)
    assert len(seen) == 1, (c, seen)
    colours[int(c)] = tuple(int(v) for v in seen[0])
  return colours


def test_export_copies_dataset_info(export_dir):
  copied = json.loads((export_dir / _INFO.file_name).read_text())
  assert copied[_INFO.class_names] == list(synthetic.CLASS_NAMES)
  listed = json.loads((export_dir / "export_info.json").read_text())
  assert listed["dataset_info"] == str(export_dir / _INFO.file_name)


def test_overlay_palette_sources(export_dir, images, tmp_path):
  # The copy in the export dir: the synthetic palette.
  results = predict.predict_folder(str(export_dir), str(images),
                                   str(tmp_path / "a"), alpha=1.0)
  labels = next(iter(results.values()))
  colours = _overlay_colours(tmp_path / "a", labels)
  assert colours == {c: synthetic.PALETTE[c] for c in colours}

  # --dataset_info wins.
  info = dataset_info.load(str(export_dir))
  info[_INFO.palette] = [[7, 11 * i, 200] for i in range(6)]
  custom = dataset_info.write(str(tmp_path), info)
  predict.predict_folder(str(export_dir), str(images), str(tmp_path / "b"),
                         alpha=1.0, dataset_info_path=custom)
  colours = _overlay_colours(tmp_path / "b", labels)
  assert colours == {c: (7, 11 * c, 200) for c in colours}

  # One for another number of classes is refused.
  info[_INFO.num_classes] = 3
  for key in (_INFO.palette, _INFO.class_names):
    info[key] = info[key][:3]
  wrong = dataset_info.write(str(tmp_path / "b"), info)
  with pytest.raises(ValueError, match="num_classes") as error:
    predict.predict_folder(str(export_dir), str(images), str(tmp_path / "c"),
                           dataset_info_path=wrong)
  assert wrong in str(error.value)


def test_default_palette_without_dataset_info(trained_run, tmp_path):
  config, _ = trained_run
  np.testing.assert_array_equal(predict.load_palette(config, str(tmp_path)),
                                visualization.default_palette(6))
