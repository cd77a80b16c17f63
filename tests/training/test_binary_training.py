"""Binary (sigmoid) models end to end: class weights, train, eval, export."""

import json

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.builders import input_reader_builder
from fast_seg.builders import model_builder
from fast_seg.core import losses
from fast_seg.core import metrics
from fast_seg.core import standard_fields as fields
from fast_seg.data import dataset_info
from fast_seg.evaluation import eval_lib
from fast_seg.export import export_lib
from fast_seg.export import runtimes
from fast_seg.training import train_lib
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from tests import helpers

# Synthetic classes: background, circle, rectangle, triangle, ellipse, stripe.
_BINARY_MODEL = helpers.model_text(
    arch="icnet", num_classes=6, filter_scale=0.25,
    extra="binary_output { foreground_class_ids: [1, 2] threshold: 0.4 }",
    loss=("binary_cross_entropy {} dice_weight: 0.5 "
          "class_weighting: MEDIAN_FREQUENCY "
          "auxiliary_target { class_ids: 3 weight: 0.3 }"))


@pytest.fixture(scope="module")
def binary_run(tiny_dataset, tmp_path_factory):
  logdir = str(tmp_path_factory.mktemp("binary_run"))
  text = helpers.train_pipeline_text(tiny_dataset, num_steps=2,
                                     model=_BINARY_MODEL)
  text = text.replace("eval_config { num_visualizations: 2 }", """
eval_config { num_visualizations: 2 binary_thresholds: [0.3, 0.7]
              preprocessing { fixed_resize { height: 48 width: 48 } } }
""")
  config = helpers.pipeline_config(text)
  result = train_lib.train(config, logdir)
  return config, logdir, result


def test_median_frequency_weights_are_computed_and_saved(tiny_dataset, binary_run):
  _, logdir, result = binary_run
  info = dataset_info.load(str(tiny_dataset / "dataset_info.json"))
  frequency = info["class_pixel_frequency"]["train"]
  foreground = frequency[1] + frequency[2]
  expected = losses.median_frequency_weights([1 - foreground, foreground])
  saved = config_util.load_pipeline_config(f"{logdir}/pipeline.config")
  weights = list(saved.model.icnet.loss.class_weights)
  assert weights == pytest.approx(expected, rel=1e-6)
  # Two values, median of two = their mean: weights sum to mean * (1/f + 1/b).
  assert weights[1] > weights[0]  # shapes 1 and 2 cover less than the rest
  assert {"logits_loss", "aux_target_loss", "aux_1_8_loss"} <= set(result)
  assert all(np.isfinite(v) for k, v in result.items() if k.endswith("loss"))


def test_binary_model_outputs_one_channel_and_thresholds():
  model = model_builder.build(helpers.model_config(
      arch="icnet", num_classes=6, filter_scale=0.25,
      extra="binary_output { foreground_class_ids: 1 threshold: 0.4 }",
      loss="focal_loss { gamma: 2 alpha: 0.25 }"))
  logits = tf.constant([[[[-1.0], [np.log(0.4 / 0.6) + 1e-3]],
                         [[0.0], [3.0]]]])  # 2x2, p = .27, .40+, .5, .95
  out = model.postprocess(logits, (2, 2), with_probabilities=True)
  np.testing.assert_array_equal(out[fields.PredictionFields.labels][0],
                                [[0, 1], [1, 1]])
  assert out[fields.PredictionFields.probabilities].shape == (1, 2, 2, 1)
  high = model.postprocess(logits, (2, 2), threshold=0.9)
  np.testing.assert_array_equal(high[fields.PredictionFields.labels][0],
                                [[0, 0], [0, 1]])
  names = model.output_class_names(["bg", "a", "b", "c", "d", "e"])
  assert names == ["not a", "a"]
  train = model.predict(model.preprocess(tf.zeros((1, 64, 64, 3))), training=True)
  assert {k: v.shape[-1] for k, v in train.items()} == {
      "logits": 1, "aux_1_8": 1, "aux_1_16": 1}


def test_eval_counts_binary_pixels_at_each_threshold(binary_run, tmp_path):
  config, logdir, _ = binary_run
  results = eval_lib.evaluate(config, logdir, str(tmp_path))
  result = results[0]
  assert result["class_names"] == ["not circle+rectangle", "circle+rectangle"]
  assert np.asarray(result["confusion_matrix"]).shape == (2, 2)
  assert [row["threshold"] for row in result["thresholds"]] == [0.3, 0.7]
  # Recompute the matrices from the restored model on the same 48x48 images.
  model = model_builder.build(config.model)
  checkpoint_util.restore_layers(
      [l for l in model.inference_model.layers if l.weights],
      checkpoint_util.resolve_checkpoint(logdir))
  dataset = input_reader_builder.build(
      config.eval_input_reader, is_training=False, batch_size=1,
      num_classes=6, ignore_label=255,
      augmentations=list(config.eval_config.preprocessing))
  expected = {0.4: 0, 0.3: 0, 0.7: 0}
  for batch in dataset:
    images = batch[fields.InputFields.image]
    assert images.shape[1:3] == (48, 48)
    logits = model.predict(model.preprocess(images))["logits"]
    probability = tf.sigmoid(tf.image.resize(logits, (48, 48)))[..., 0].numpy()
    labels = batch[fields.InputFields.label][..., 0].numpy()
    truth = np.where(np.isin(labels, [1, 2]), 1, 0)
    for t in expected:
      expected[t] = expected[t] + metrics.confusion_matrix(
          truth, (probability > t).astype(np.int32), 2, 255).numpy()
  np.testing.assert_array_equal(result["confusion_matrix"], expected[0.4])
  for row, t in zip(result["thresholds"], (0.3, 0.7)):
    iou = metrics.compute_metrics(expected[t])["per_class_iou"][1]
    assert row["iou"] == pytest.approx(iou, nan_ok=True)
  assert json.loads((tmp_path / "metrics.json").read_text())["threshold"] == 0.4


def test_binary_exports_a_probability_map(binary_run, tmp_path):
  config, logdir, _ = binary_run
  export_lib.export(config, logdir, str(tmp_path), (1, 64, 64, 3),
                    formats=("saved_model", "frozen_graph", "tflite"),
                    output="probabilities", log=lambda line: None)
  exported = json.loads((tmp_path / "export_report.json").read_text())
  for name in ("saved_model", "frozen_graph", "tflite"):
    entry = exported["formats"][name]
    assert entry["max_abs_diff"] < 1e-4, name
    assert entry["label_agreement"] == 1.0, name
  images = np.random.default_rng(0).integers(0, 255, (1, 64, 64, 3), np.uint8)
  graph_def = tf.compat.v1.GraphDef()
  graph_def.ParseFromString((tmp_path / "frozen_inference_graph.pb").read_bytes())
  probability = runtimes.run_once(graph_def, images)
  assert probability.shape == (1, 64, 64, 1)
  assert 0.0 <= probability.min() and probability.max() <= 1.0


def test_binary_losses_refuse_softmax(tiny_dataset):
  with pytest.raises(ValueError, match=r"model.icnet.loss.softmax_cross_entropy "
                     r"does not apply to a binary"):
    model_builder.build(helpers.model_config(
        arch="icnet", num_classes=6, extra="binary_output {}"))
  with pytest.raises(ValueError, match=r"binary_output.foreground_class_ids \[7\]"):
    model_builder.build(helpers.model_config(
        arch="icnet", num_classes=6, loss="dice_loss {}",
        extra="binary_output { foreground_class_ids: 7 }"))
  with pytest.raises(ValueError, match="binary_cross_entropy does not apply "
                     "to a multi-class"):
    model_builder.build(helpers.model_config(
        arch="icnet", num_classes=6, loss="binary_cross_entropy {}"))
  with pytest.raises(ValueError, match=r"auxiliary_target.class_ids \[9\]"):
    model_builder.build(helpers.model_config(
        arch="icnet", num_classes=6,
        loss="softmax_cross_entropy {} auxiliary_target { class_ids: 9 }"))
  with pytest.raises(ValueError, match="class_weights has 6 values; a binary"):
    model_builder.build(helpers.model_config(
        arch="icnet", num_classes=6, extra="binary_output {}",
        loss="dice_loss {} " + "class_weights: 1 " * 6))
