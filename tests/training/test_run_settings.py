"""What a run settles before its first step, as the console reads it."""

import logging

from fast_seg.builders import losses_builder
from fast_seg.training import run_settings
from tests import helpers


def _build_loss(config):
  return losses_builder.build(config.model.icnet.loss, 6, 255, "logits", {},
                              "model.icnet.loss")


def _class_weight_lines(caplog):
  return [r for r in caplog.records if "class weights" in r.getMessage()
          or "class_weights" in r.getMessage()]


def test_class_weights_are_logged_once_per_process_and_weights(
    tiny_dataset, caplog, monkeypatch):
  monkeypatch.setattr(losses_builder, "_LOGGED_CLASS_WEIGHTS", set())
  caplog.set_level(logging.INFO, logger="absl")
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset).replace("softmax_cross_entropy {}",
                            "softmax_cross_entropy {} "
                            "class_weighting: MEDIAN_FREQUENCY"))
  run_settings.read_dataset_facts(config)  # computes them: one line
  # Then the trainer's model, and compress.py's one per table row and
  # search step, all from that config: no more lines (there were 25).
  for _ in range(3):
    _build_loss(config)
  lines = _class_weight_lines(caplog)
  assert len(lines) == 1, [r.getMessage() for r in lines]
  assert lines[0].getMessage().startswith(
      f"MEDIAN_FREQUENCY class weights over {tiny_dataset}/train-*.tfrecord: ")
  assert lines[0].pathname.endswith("run_settings.py")  # where it was said
  # Other weights are news: their own line, once.
  config.model.icnet.loss.class_weights[0] = 2.0
  _build_loss(config)
  _build_loss(config)
  lines = _class_weight_lines(caplog)
  assert len(lines) == 2
  assert lines[1].getMessage().startswith(
      "model.icnet.loss: using class_weights 2.000, ")
