"""docs/extending.md's checklists, each followed by a test that adds a toy one.

Every extension registers itself: nothing central is edited here, which is
what the checklists promise. Registrations are undone after each test.
"""

import json

from absl import flags
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from fast_seg.builders import losses_builder
from fast_seg.builders import model_builder
from fast_seg.core import losses
from fast_seg.core import standard_fields as fields
from fast_seg.data import convert
from fast_seg.data import convert_lib
from fast_seg.export import export_lib
from fast_seg.export import formats
from fast_seg.export import size_report
from fast_seg.training import train_lib
from tests import helpers


# -- a dataset ----------------------------------------------------------------

STRIPE_VALUE = convert_lib.Flag(
    "integer", "stripe_value", 200, "Label value that marks a stripe.")


class _StripesConverter(convert_lib.Converter):
  """X.png + X_gt.png; grey value --stripe_value is class 1, 0 is class 0."""
  name = "toy_stripes"
  splits = ("train",)
  description = "a toy layout for tests/test_extending.py"
  flags = (convert_lib.INPUT_DIR, STRIPE_VALUE)
  fixed_class_names = ("ground", "stripe")
  fixed_palette = ((0, 0, 0), (255, 255, 0))

  def __init__(self, input_dir, stripe_value=200):
    self.root = convert_lib.require_dir(input_dir, "--input_dir")
    self.table = convert_lib.lookup_table({0: 0, stripe_value: 1})

  def list_pairs(self, split):
    images = [p for p in convert_lib.list_files(self.root)
              if not p.endswith("_gt.png")]
    samples = [convert_lib.Sample(p.rsplit("/", 1)[-1][:-4], p,
                                  p[:-4] + "_gt.png") for p in images]
    return samples, []

  def read_label(self, sample, image_size):
    del image_size
    raw = convert_lib.read_label_array(sample.label_path)
    return convert_lib.apply_lut(raw, self.table, sample.label_path)


@pytest.fixture
def stripes_registered():
  convert_lib.register(_StripesConverter)
  yield _StripesConverter
  convert_lib.CONVERTERS.remove(_StripesConverter.name)


def _write_stripes(root, count=3):
  root.mkdir()
  expected = {}
  for i in range(count):
    label = np.zeros((8, 10), np.uint8)
    label[:, i::3] = 200
    Image.fromarray(np.full((8, 10, 3), 40 * i, np.uint8)).save(root / f"s{i}.png")
    Image.fromarray(label).save(root / f"s{i}_gt.png")
    expected[f"s{i}"] = (label == 200).astype(np.uint8)
  return expected


def test_a_registered_dataset_converts_with_its_own_flag(
    stripes_registered, tmp_path):
  expected = _write_stripes(tmp_path / "src")
  values = flags.FlagValues()
  convert._define_flags(values)
  values(["convert", "--dataset", "toy_stripes", "--input_dir",
          str(tmp_path / "src"), "--stripe_value", "200"])
  assert "toy_stripes" in values["stripe_value"].help
  converter = convert.make_converter("toy_stripes", values)
  assert isinstance(converter, stripes_registered)
  convert.convert(converter, str(tmp_path / "out"), workers=1, progress=False,
                  log=lambda line: None)
  records = helpers.read_records(str(tmp_path / "out" / "train-*.tfrecord"))
  assert sorted(records) == sorted(expected)
  for name, (_, label) in records.items():
    np.testing.assert_array_equal(label, expected[name])
  info = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
  assert info["class_names"] == ["ground", "stripe"]
  assert info["num_examples"] == {"train": 3}


def test_a_flag_of_another_dataset_is_refused(stripes_registered, tmp_path):
  _write_stripes(tmp_path / "src")
  values = flags.FlagValues()
  convert._define_flags(values)
  values(["convert", "--input_dir", str(tmp_path / "src"), "--lane"])
  with pytest.raises(ValueError, match="--lane does not apply to --dataset "
                     "toy_stripes"):
    convert.make_converter("toy_stripes", values)


def test_registering_a_clashing_flag_or_name_fails(stripes_registered):
  clash = type("Clash", (convert_lib.Converter,), {
      "name": "toy_clash",
      "flags": (convert_lib.Flag("bool", "stripe_value", False, "other"),)})
  with pytest.raises(ValueError, match="declares --stripe_value unlike"):
    convert_lib.register(clash)
  twin = type("Twin", (convert_lib.Converter,), {"name": "toy_stripes"})
  with pytest.raises(ValueError, match="registered twice"):
    convert_lib.register(twin)
  assert "toy_clash" not in convert_lib.CONVERTERS


# -- a loss -------------------------------------------------------------------

def _doubled_cross_entropy(params, path, binary):
  del params, path, binary

  def loss(logits, labels, ignore_label, class_weights=None,
           upsample_logits=False):
    return 2.0 * losses.softmax_cross_entropy(
        logits, labels, ignore_label, class_weights, upsample_logits)

  return loss


def test_a_registered_pixel_loss_is_what_the_model_trains_with(
    tiny_dataset, tmp_path):
  # A new loss also needs its message in protos/losses.proto's oneof; here
  # the registry entry of an existing field is swapped for the toy one.
  builtin = losses_builder.PIXEL_LOSSES.get("dice_loss")
  losses_builder.PIXEL_LOSSES.remove("dice_loss")
  losses_builder.register_pixel_loss("dice_loss")(_doubled_cross_entropy)
  try:
    _check_doubled_loss(tiny_dataset, tmp_path)
  finally:
    losses_builder.PIXEL_LOSSES.remove("dice_loss")
    losses_builder.PIXEL_LOSSES.add("dice_loss", builtin)
  assert losses_builder.PIXEL_LOSSES.get("dice_loss") is builtin
  with pytest.raises(ValueError, match="'dice_loss' is registered twice"):
    losses_builder.register_pixel_loss("dice_loss")(_doubled_cross_entropy)


def _check_doubled_loss(tiny_dataset, tmp_path):
  config = helpers.pipeline_config(helpers.train_pipeline_text(
      tiny_dataset, num_steps=2, model=helpers.model_text(
          num_classes=6, filter_scale=0.25, loss="dice_loss {}")))
  model = model_builder.build(config.model)
  images = tf.random.uniform([2, 64, 64, 3], 0, 255, seed=1)
  labels = tf.random.uniform([2, 64, 64, 1], 0, 6, tf.int32, seed=2)
  predictions = model.predict(model.preprocess(images), training=True)
  got = model.loss(predictions, labels)
  logits = predictions[fields.PredictionFields.logits]
  want = 2.0 * losses.softmax_cross_entropy(logits, labels, 255)
  np.testing.assert_allclose(float(got[fields.PredictionFields.logits + "_loss"]),
                             float(want), rtol=1e-5)
  assert train_lib.train(config, str(tmp_path))["step"] == 2


# -- an export format ------------------------------------------------------------

def _write_npy(job):
  """A toy format: the served output on the check image, as .npy."""
  path = f"{job.output_dir}/check_output.npy"
  np.save(path, job.serve(tf.constant(job.check_input))["predictions"].numpy())
  return {"npy": {"path": path, **size_report.file_sizes(path),
                  **job.agreement(np.load(path))}}


@pytest.fixture
def npy_format_registered():
  formats.register("npy", _write_npy, ("check_output.npy",))
  yield
  formats.unregister("npy")


def test_a_registered_export_format_is_written_checked_and_cleaned(
    npy_format_registered, trained_run, tmp_path):
  config, logdir = trained_run
  out = tmp_path / "export"
  export_lib.export(config, logdir, str(out), (1, 64, 64, 3),
                    formats=("saved_model", "npy"), log=lambda line: None)
  report = json.loads((out / "export_report.json").read_text())
  assert report["formats"]["npy"]["pixel_agreement"] == 1.0
  assert np.load(out / "check_output.npy").shape == (1, 64, 64)
  # An export without it leaves no stale file of the format behind.
  export_lib.export(config, logdir, str(out), (1, 64, 64, 3),
                    log=lambda line: None)
  assert not (out / "check_output.npy").exists()
  with pytest.raises(ValueError, match="registered twice"):
    formats.register("npy", _write_npy, ("x.npy",))


def test_an_unknown_format_is_refused_by_name(trained_run, tmp_path):
  config, logdir = trained_run
  with pytest.raises(ValueError, match="--formats must be among .*; got npy"):
    export_lib.export(config, logdir, str(tmp_path), (1, 64, 64, 3),
                      formats=("saved_model", "npy"), log=lambda line: None)
