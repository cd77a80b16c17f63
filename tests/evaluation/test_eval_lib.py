"""Evaluation: metrics files, pixel accounting, padded eval, continuous mode."""

import json
import shutil

import numpy as np
import pytest

from fast_seg.data import synthetic
from fast_seg.evaluation import eval_lib
from fast_seg.training import train_lib
from fast_seg.utils import checkpoint_util
from fast_seg.utils import visualization
from tests import helpers

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
  tags = helpers.summary_tags(tmp_path)
  assert "metrics/miou" in tags
  assert not [t for t in tags if t.startswith("visualizations/")]


def test_image_summaries_put_the_panels_in_tensorboard(trained_run, config,
                                                       tmp_path):
  config.eval_config.image_summaries = True
  eval_lib.evaluate(config, trained_run[1], str(tmp_path))
  pngs = sorted(p.stem for p in (tmp_path / "visualizations" / "step_4").glob("*.png"))
  tags = helpers.summary_tags(tmp_path)
  assert sorted(t for t, kind in tags.items() if kind == "image") == [
      f"visualizations/{name}" for name in pngs]
  assert len(pngs) == 2 and "metrics/miou" in tags


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


def test_padded_size_below_the_image_sizes_fails_before_any_step(
    tiny_dataset, config, tmp_path):
  """dataset_info.json counts 64x64 eval images: a 48x72 padded size fails
  when the Evaluator is built (at the start of training with validation),
  not when the first batch is read."""
  config.eval_config.padded_height = 48
  config.eval_config.padded_width = 72
  message = (r"eval_config.padded_height/padded_width 48x72 is smaller than "
             r"the eval images: up to 64x64 \(HxW\) per .*dataset_info.json; "
             r"set them to at least 64x72")
  with pytest.raises(ValueError, match=message):
    eval_lib.Evaluator(config)
  train = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset))
  train.eval_config.CopyFrom(config.eval_config)
  train.train_config.eval_every_n_steps = 2
  with pytest.raises(ValueError, match=message):
    train_lib.train(train, str(tmp_path / "run"))
  assert not list((tmp_path / "run").glob("ckpt-*"))


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


def _matrix(config, logdir, eval_dir):
  result = eval_lib.evaluate(config, None, str(eval_dir), checkpoint=logdir)[0]
  return np.array(result["confusion_matrix"]), result


def test_scale_one_without_flip_equals_plain_eval(trained_run, config, tmp_path):
  logdir = trained_run[1]
  plain, _ = _matrix(config, logdir, tmp_path / "plain")
  config.eval_config.scales.append(1.0)
  same, result = _matrix(config, logdir, tmp_path / "scale_one")
  np.testing.assert_array_equal(same, plain)
  assert result["test_time"] == {"scales": [1.0], "flip": False, "sliding_window": None}


def test_window_as_large_as_the_image_equals_whole_image_eval(trained_run, config, tmp_path):
  logdir = trained_run[1]
  plain, _ = _matrix(config, logdir, tmp_path / "plain")
  config.eval_config.sliding_window.height = 64
  config.eval_config.sliding_window.width = 64
  config.eval_config.sliding_window.stride = 32
  same, result = _matrix(config, logdir, tmp_path / "window")
  np.testing.assert_array_equal(same, plain)
  assert result["test_time"]["sliding_window"] == {"height": 64, "width": 64, "stride": 32}


@pytest.mark.slow  # overlaps the default suite; make test-all
def test_multi_scale_flip_window_padded_eval_counts_only_real_pixels(
    trained_run, config, tmp_path):
  logdir = trained_run[1]
  plain, _ = _matrix(config, logdir, tmp_path / "plain")
  config.eval_config.padded_height = 72
  config.eval_config.padded_width = 80
  config.eval_input_reader.batch_size = 4
  config.eval_config.scales.extend([0.75, 1.0, 1.5])
  config.eval_config.flip = True
  config.eval_config.sliding_window.height = 48
  config.eval_config.sliding_window.width = 48
  config.eval_config.sliding_window.stride = 32
  matrix, result = _matrix(config, logdir, tmp_path / "tta")
  assert result["num_pixels"] == VAL_PIXELS
  # Same ground truth (rows), other predictions (columns).
  np.testing.assert_array_equal(matrix.sum(1), plain.sum(1))
  assert not np.array_equal(matrix, plain)


def test_continuous_eval_keeps_the_best_checkpoint(tiny_dataset, tmp_path):
  logdir = tmp_path / "train"
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, num_steps=6))
  train_lib.train(config, str(logdir))
  eval_dir = tmp_path / "eval"
  results = eval_lib.evaluate(config, str(logdir), str(eval_dir), timeout=3)
  best = max(results, key=lambda r: r["miou"])
  record = json.loads((eval_dir / "best" / checkpoint_util.BEST_FILE).read_text())
  assert record["metric"] == "miou" and record["step"] == best["step"]
  assert record["value"] == pytest.approx(best["miou"])
  # The copy is a complete checkpoint: evaluating it gives the same mIoU.
  again = eval_lib.evaluate(config, None, str(tmp_path / "again"),
                            checkpoint=str(eval_dir / "best"))[0]
  assert again["step"] == best["step"]
  assert again["miou"] == pytest.approx(best["miou"])
