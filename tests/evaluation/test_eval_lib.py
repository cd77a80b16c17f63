"""Evaluation: metrics files, pixel accounting, padded eval, continuous mode."""

import json
import shutil

import numpy as np
import pytest

from fast_seg.data import synthetic
from fast_seg.evaluation import eval_lib
from fast_seg.utils import visualization

VAL_PIXELS = 6 * 64 * 64  # tiny_dataset: 6 val images of 64x64, no ignore pixels


@pytest.fixture
def config(trained_run):
  """A fresh copy per test, which may change it."""
  copy = type(trained_run[0])()
  copy.CopyFrom(trained_run[0])
  return copy


def test_evaluate_latest_writes_metrics(trained_run, config, tmp_path):
  logdir = trained_run[1]
  results = eval_lib.evaluate(config, logdir, str(tmp_path))
  assert len(results) == 1
  result = results[0]
  assert result["step"] == 4 and result["num_examples"] == 6
  assert result["num_pixels"] == VAL_PIXELS
  matrix = np.array(result["confusion_matrix"])
  assert matrix.shape == (6, 6) and matrix.sum() == VAL_PIXELS
  assert 0.0 <= result["miou"] <= 1.0
  on_disk = json.loads((tmp_path / eval_lib.METRICS_FILE).read_text())
  assert on_disk["miou"] == pytest.approx(result["miou"])
  assert len(list((tmp_path / "visualizations" / "step_4").glob("*.png"))) == 2
  assert (tmp_path / "pipeline.config").exists()
  assert list(tmp_path.glob("events.out.tfevents.*"))


def test_padded_eval_counts_only_real_pixels(trained_run, config, tmp_path):
  logdir = trained_run[1]
  config.eval_config.padded_height = 80
  config.eval_config.padded_width = 72
  config.eval_input_reader.batch_size = 4
  config.eval_config.num_examples = 5
  result = eval_lib.evaluate(config, None, str(tmp_path), checkpoint=logdir)[0]
  assert result["num_examples"] == 5
  assert result["num_pixels"] == 5 * 64 * 64


def test_continuous_eval_stops_after_final_step(trained_run, config, tmp_path):
  logdir = trained_run[1]
  results = eval_lib.evaluate(config, logdir, str(tmp_path), timeout=5)
  assert [r["step"] for r in results] == [4]
  history = (tmp_path / eval_lib.HISTORY_FILE).read_text().splitlines()
  assert len(history) == 1


def test_eval_errors_name_the_field(trained_run, config, tmp_path):
  logdir = trained_run[1]
  config.eval_config.class_names.extend(["a", "b"])
  with pytest.raises(ValueError, match="eval_config.class_names has 2 names"):
    eval_lib.evaluate(config, logdir, str(tmp_path))
  del config.eval_config.class_names[:]
  config.eval_config.padded_height = 64
  with pytest.raises(ValueError, match="padded_height and padded_width"):
    eval_lib.evaluate(config, logdir, str(tmp_path))
  config.eval_config.padded_height = 0
  with pytest.raises(ValueError, match="no checkpoint found"):
    eval_lib.evaluate(config, str(tmp_path), str(tmp_path))


def test_class_names_and_palette_come_from_dataset_info(tiny_dataset, config, tmp_path):
  evaluator = eval_lib.Evaluator(config)
  assert evaluator.dataset_info_path == str(tiny_dataset / "dataset_info.json")
  assert evaluator.class_names == list(synthetic.CLASS_NAMES)
  np.testing.assert_array_equal(evaluator.palette, synthetic.PALETTE)
  # eval_config.class_names win over the dataset's.
  names = [f"c{i}" for i in range(6)]
  config.eval_config.class_names.extend(names)
  assert eval_lib.Evaluator(config).class_names == names
  # Without a dataset_info.json: class_i and the default palette.
  for path in tiny_dataset.glob("val-*.tfrecord"):
    shutil.copy(path, tmp_path)
  del config.eval_config.class_names[:]
  config.eval_input_reader.tf_record_input_path[:] = [str(tmp_path / "val-*.tfrecord")]
  evaluator = eval_lib.Evaluator(config)
  assert evaluator.dataset_info_path is None
  assert evaluator.class_names == [f"class_{i}" for i in range(6)]
  np.testing.assert_array_equal(evaluator.palette, visualization.default_palette(6))


def test_num_classes_disagreeing_with_dataset_info_fails(tiny_dataset, config):
  config.model.icnet.num_classes = 5
  with pytest.raises(ValueError, match=r"model\.icnet\.num_classes is 5") as error:
    eval_lib.Evaluator(config)
  assert str(tiny_dataset / "dataset_info.json") in str(error.value)
