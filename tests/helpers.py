"""Small configs shared by the tests."""

import contextlib
import io
import logging
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
from PIL import Image
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import model_builder
from fast_seg.core import standard_fields
from fast_seg.export import inference_graph
from fast_seg.export import runtimes
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def model_text(arch="icnet", extractor="mobilenet_v2", num_classes=5,
               filter_scale=1.0, output_stride=8, extra="",
               loss="softmax_cross_entropy {}"):
  """A `model { ... }` block with fast, test-sized settings.

  `loss` is the inside of the loss message; `extra` adds fields of the
  architecture message (e.g. 'binary_output {}')."""
  return f"""
model {{
  {arch} {{
    num_classes: {num_classes}
    feature_extractor {{ type: "{extractor}" filter_scale: {filter_scale}
                         output_stride: {output_stride} }}
    loss {{ {loss} }}
    {extra}
  }}
}}"""


def pipeline_config(text):
  return config_util.parse_pipeline_config(text)


def model_config(**kwargs):
  return pipeline_config(model_text(**kwargs)).model


def train_pipeline_text(data_dir, num_steps=4, model=None, extra_train="",
                        optimizer=None, image_size=64, checkpoint_every=2):
  """A complete, tiny pipeline config over a synthetic dataset in `data_dir`."""
  model = model or model_text(arch="icnet", extractor="mobilenet_v2",
                              num_classes=6, filter_scale=0.25)
  optimizer = optimizer or (
      "adam_optimizer { learning_rate { constant_learning_rate "
      "{ learning_rate: 0.003 } } }")
  return f"""
{model}
train_config {{
  batch_size: 4
  num_steps: {num_steps}
  optimizer {{ {optimizer} }}
  data_augmentation_options {{ random_crop {{ crop_height: {image_size} crop_width: {image_size} }} }}
  data_augmentation_options {{ random_horizontal_flip {{}} }}
  checkpoint_every_n_steps: {checkpoint_every}
  log_every_n_steps: 2
  {extra_train}
}}
train_input_reader {{ tf_record_input_path: "{data_dir}/train-*.tfrecord" }}
eval_config {{ num_visualizations: 2 }}
eval_input_reader {{ tf_record_input_path: "{data_dir}/val-*.tfrecord" }}
"""


def deterministic_train_pipeline_text(data_dir, **kwargs):
  """train_pipeline_text without randomness: no shuffle, no flip, a crop of
  the full 64x64 images; so two runs see the same batches."""
  text = train_pipeline_text(data_dir, **kwargs)
  text = text.replace(
      "data_augmentation_options { random_horizontal_flip {} }", "")
  return text.replace("train_input_reader {",
                      "train_input_reader { shuffle: false")


def read_records(pattern):
  """Decodes every example of the TFRecords matching `pattern`.

  Returns:
    dict image/filename -> (image uint8 [H, W, 3], label uint8 [H, W]).
  """
  keys = standard_fields.TfExampleFields
  files = sorted(tf.io.gfile.glob(pattern))
  assert files, f"no files match {pattern}"
  records = {}
  for serialized in tf.data.TFRecordDataset(files).as_numpy_iterator():
    example = tf.train.Example.FromString(serialized)
    feature = example.features.feature
    name = feature[keys.image_filename].bytes_list.value[0].decode()
    image = np.asarray(Image.open(io.BytesIO(
        feature[keys.image_encoded].bytes_list.value[0])).convert("RGB"))
    label = Image.open(io.BytesIO(feature[keys.label_encoded].bytes_list.value[0]))
    assert label.mode == "L", (name, label.mode)
    assert feature[keys.height].int64_list.value[0] == image.shape[0]
    assert feature[keys.width].int64_list.value[0] == image.shape[1]
    assert name not in records, f"duplicate {name}"
    records[name] = (image, np.asarray(label))
  return records


def randomize_batch_norms(model, seed=0):
  """Non-trivial BN statistics, so zeroing only gamma and beta is tested."""
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      shape = layer.gamma.shape
      layer.set_weights([rng.uniform(0.5, 1.5, shape).astype(np.float32),
                         rng.normal(0, 0.1, shape).astype(np.float32),
                         rng.normal(0, 0.1, shape).astype(np.float32),
                         rng.uniform(0.5, 1.5, shape).astype(np.float32)])



def logit_agreement(got, expected):
  """(max |difference| / max |expected|, fraction of equal arg-max labels):
  how imports and exports are compared with a reference's logits."""
  relative = np.abs(got - expected).max() / np.abs(expected).max()
  return relative, np.mean(got.argmax(-1) == expected.argmax(-1))


def seeded_checkpoint(config, directory, seed=0):
  """A weights-only checkpoint of config's model with every weight drawn
  from `seed`: labels that vary over an image on every run, where the 4-step
  trained_run fixture sometimes predicts one class everywhere (a test
  comparing two label maps then proves nothing)."""
  model = model_builder.build(config.model)
  rng = np.random.default_rng(seed)
  layers = [l for l in model.keras_model.layers if l.weights]
  for layer in layers:
    layer.set_weights([rng.normal(0.0, 0.2, w.shape).astype(np.float32)
                       for w in layer.get_weights()])
  randomize_batch_norms(model.keras_model, seed)
  prefix = str(directory / "seeded" / "model")
  checkpoint_util.write_weights_only(layers, prefix)
  return prefix


def check_pruning_keeps_outputs(full, half, image_shape, max_param_ratio):
  """Soft-prunes `full` to `half`'s widths, hard-prunes it into `half`, and
  asserts both give the same outputs (so pruning removed exactly the zeroed
  filters) and that `half` has at most `max_param_ratio` of the params.

  Returns:
    The channel graph of the hard pruning, for further checks.
  """
  from fast_seg.compression import filter_pruning  # pylint: disable=g-import-not-at-top
  randomize_batch_norms(full.keras_model)
  graph, masks, _ = filter_pruning.plan(full.keras_model, half.keras_model)
  assert any(not mask.all() for mask in masks.values())
  filter_pruning.apply(full.keras_model, full.keras_model, graph, masks,
                       soft=True)
  graph, masks, _ = filter_pruning.plan(full.keras_model, half.keras_model)
  filter_pruning.apply(full.keras_model, half.keras_model, graph, masks)
  ratio = half.keras_model.count_params() / full.keras_model.count_params()
  assert ratio < max_param_ratio, ratio
  images = tf.constant(np.random.default_rng(1).uniform(
      -1.0, 1.0, image_shape), tf.float32)
  expected = full.inference_model(images, training=False).numpy()
  got = half.inference_model(images, training=False).numpy()
  assert np.abs(expected).max() > 1e-3  # not a dead network
  np.testing.assert_allclose(got, expected, rtol=1e-4,
                             atol=1e-4 * np.abs(expected).max())
  return graph


def restore_every_weight(config, checkpoint):
  """The model `config` builds, restored from `checkpoint`; asserts that
  every one of its weights (aux heads included) came from it."""
  model = model_builder.build(config.model)
  restored = checkpoint_util.restore_layers(
      [l for l in model.keras_model.layers if l.weights], checkpoint)
  assert restored == len(model.keras_model.weights)
  return model


def save_serving_model(model, directory, shape, output):
  """A SavedModel as export_lib.export writes it; returns images -> predictions."""
  serve = inference_graph.build_inference_function(model, shape, output=output)
  inference_graph.save_saved_model(model, serve, str(directory))
  return runtimes.SavedModel(str(directory))


def summary_tags(directory):
  """{tag: kind} of every summary in the TensorBoard event files of `directory`
  (kind: 'image' for image summaries, else 'scalar' / 'tensor')."""
  tags = {}
  for path in sorted(Path(directory).glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        plugin = value.metadata.plugin_data.plugin_name
        tags[value.tag] = "image" if plugin == "images" else plugin or "scalar"
  return tags


class _Records(logging.Handler):

  def __init__(self):
    super().__init__()
    self.records = []

  def emit(self, record):
    self.records.append(record)


@contextlib.contextmanager
def log_records(logger):
  """Yields the list of the records `logger` handles in the body (whatever
  the level its handlers print), to test what a command would print."""
  handler = _Records()
  logger.addHandler(handler)
  try:
    yield handler.records
  finally:
    logger.removeHandler(handler)


def run_entry_point(*args, timeout=600):
  """Runs an entry point as a user would (a subprocess from the repo root):
  `run_entry_point("train.py", "--config_path", path, ...)` or with "-m"."""
  env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT,
                        env=env, capture_output=True, text=True,
                        timeout=timeout)


def assert_one_named_error(result, fragments):
  """Exit 2, no traceback, exactly one `error:` line holding every fragment
  (the file, the field, the allowed values); returns that line."""
  assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
  assert "Traceback" not in result.stderr, result.stderr[-3000:]
  errors = [line for line in result.stderr.splitlines()
            if line.startswith("error:")]
  assert len(errors) == 1, result.stderr[-3000:]
  for fragment in fragments:
    assert fragment in errors[0], errors[0]
  return errors[0]
