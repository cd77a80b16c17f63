"""Faults in configs and checkpoints through the real entry points (issue 26).

As in test_bad_inputs.py: each case runs an entry point as a user would and
asserts exit status 2, exactly one `error:` line naming the path or field,
no traceback; and where the command would write something, that nothing
half-written is left. The values behind the messages are tested by value at
the end (the memory floor, the finite check, the nesting limit, reading a
damaged checkpoint).
"""

import os
import shutil

from google.protobuf import text_format
import pytest
import tensorflow as tf
import tf_keras as keras

from fast_seg.builders import optimizer_builder
from fast_seg.protos import optimizer_pb2
from fast_seg.tools.migrate_config import reader
from fast_seg.utils import checkpoint_util
from fast_seg.utils import config_util
from fast_seg.utils import memory
from tests import helpers

NESTING = 50_000


def flip_bytes(path):
  """Flips one byte in every 997 of a file: each tensor of a checkpoint data
  shard then fails its checksum when it is read."""
  data = bytearray(path.read_bytes())
  for i in range(0, len(data), 997):
    data[i] ^= 0xFF
  path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def files(tiny_dataset, trained_run, tmp_path_factory):
  """Configs and checkpoints shared by the cases, written once."""
  root = tmp_path_factory.mktemp("faults_config")
  good = helpers.train_pipeline_text(tiny_dataset)
  paths = {"root": root, "logdir": trained_run[1], "data": tiny_dataset}

  def write(name, text):
    (root / name).write_text(text)
    return root / name

  paths["good"] = write("good.config", good)
  # ckpt-4 of the trained run, its data shard with flipped bytes.
  damaged = root / "damaged"
  damaged.mkdir()
  for path in tf.io.gfile.glob(os.path.join(trained_run[1], "ckpt-4.*")):
    shutil.copy(path, damaged)
  flip_bytes(damaged / "ckpt-4.data-00000-of-00001")
  paths["damaged"] = damaged / "ckpt-4"
  paths["fine_tune_damaged"] = write("fine_tune.config", good.replace(
      "log_every_n_steps: 2", f'log_every_n_steps: 2 fine_tune_checkpoint: '
      f'"{damaged / "ckpt-4"}" fine_tune_checkpoint_type: SEGMENTATION'))
  paths["wider"] = write("wider.config", good.replace("filter_scale: 0.25",
                                                      "filter_scale: 0.5"))
  paths["huge_crop"] = write("crop.config", good.replace(
      "crop_height: 64 crop_width: 64",
      "crop_height: 100000 crop_width: 100000"))
  paths["one_class"] = write("one_class.config", good.replace(
      "num_classes: 6", "num_classes: 1"))
  paths["nan_l2"] = write("nan_l2.config", good.replace(
      "loss { softmax_cross_entropy {} }",
      "loss { softmax_cross_entropy {} }\n"
      "    hyperparams { regularizer { l2_regularizer { weight: nan } } }"))
  nested = "model {\n" + "a {" * NESTING + "}" * NESTING + "\n}\n"
  paths["nested"] = write("nested.config", nested)
  (root / "no_images").mkdir()
  (root / "labels").mkdir()
  return paths


def resumable_copy(files, name):
  """A copy of the trained run's logdir (ckpt-2, ckpt-4), to damage."""
  logdir = files["root"] / name
  shutil.copytree(files["logdir"], logdir)
  return logdir


CASES = {
    # Item 3: a checkpoint data shard that fails its checksum.
    "train: fine_tune_checkpoint fails its checksum": (
        lambda f: ("train.py", "--config_path", f["fine_tune_damaged"],
                   "--logdir", f["root"] / "r1"),
        ["fine_tune.config: train_config.fine_tune_checkpoint: checkpoint ",
         "damaged/ckpt-4 cannot be read", "Checksum does not match"]),
    "eval: checkpoint fails its checksum": (
        lambda f: ("eval.py", "--config_path", f["good"], "--checkpoint",
                   f["damaged"], "--eval_dir", f["root"] / "e1"),
        ["damaged/ckpt-4 cannot be read", "Checksum does not match"]),
    "export: checkpoint fails its checksum": (
        lambda f: ("export.py", "--config_path", f["good"],
                   "--trained_checkpoint", f["damaged"], "--output_dir",
                   f["root"] / "x1", "--input_shape", "1,64,64,3"),
        ["damaged/ckpt-4 cannot be read", "Checksum does not match"]),
    "compress: checkpoint fails its checksum": (
        lambda f: ("compress.py", "--config_path", f["good"], "--checkpoint",
                   f["damaged"], "--output_dir", f["root"] / "p1",
                   "--filter_scale", "0.125"),
        ["damaged/ckpt-4 cannot be read", "Checksum does not match"]),
    # Item 4: sizes no machine can hold.
    "train: a crop of 100000x100000": (
        lambda f: ("train.py", "--config_path", f["huge_crop"], "--logdir",
                   f["root"] / "r2"),
        ["crop.config: train_config.batch_size x train_config."
         "data_augmentation_options[0].random_crop cannot fit in memory",
         "4 x 100000x100000 pixels"]),
    "eval: padded to 100000x100000": (
        lambda f: ("eval.py", "--config_path", f["good"], "--config_override",
                   "eval_config { padded_height: 100000 padded_width: 100000 }",
                   "--checkpoint", f["logdir"], "--eval_dir", f["root"] / "e2"),
        ["eval_input_reader.batch_size x eval_config.padded_height/"
         "padded_width cannot fit in memory"]),
    "export: an input of 100000x100000": (
        lambda f: ("export.py", "--config_path", f["good"],
                   "--trained_checkpoint", f["logdir"], "--output_dir",
                   f["root"] / "x2", "--input_shape", "1,100000,100000,3"),
        ["--input_shape cannot fit in memory"]),
    # Item 5: 50,000 nested braces.
    "migrate_config: 50000 nested braces": (
        lambda f: ("-m", "fast_seg.tools.migrate_config", "--input",
                   f["nested"], "--output", f["root"] / "migrated.config"),
        ["nested.config: line 2: blocks nested deeper than 100"]),
    "train: 50000 nested braces": (
        lambda f: ("train.py", "--config_path", f["nested"], "--logdir",
                   f["root"] / "r3"),
        ["nested.config: 2:1", 'has no field named "a"']),
    # Item 12: one class, without or with binary_output.
    "export: a 1-class softmax model": (
        lambda f: ("export.py", "--config_path", f["one_class"],
                   "--random_weights", "--output_dir", f["root"] / "x3",
                   "--input_shape", "1,64,64,3"),
        ["one_class.config: model.icnet.num_classes is 1, but a model needs "
         ">= 2 classes", "binary_output"]),
    # Item 15: nan and inf where Keras would say it without the field.
    "train: l2_regularizer weight nan": (
        lambda f: ("train.py", "--config_path", f["nan_l2"], "--logdir",
                   f["root"] / "r4"),
        ["nan_l2.config: model.icnet.hyperparams.regularizer.l2_regularizer."
         "weight is nan; it must be a finite number"]),
    "train: learning rate inf in an override": (
        lambda f: ("train.py", "--config_path", f["good"], "--config_override",
                   "train_config { optimizer { adam_optimizer { learning_rate "
                   "{ constant_learning_rate { learning_rate: inf } } } } }",
                   "--logdir", f["root"] / "r5"),
        ["--config_override #1", "train_config.optimizer.adam_optimizer."
         "learning_rate.constant_learning_rate.learning_rate is inf"]),
    # Item 16: an empty images folder.
    "convert: empty images folder": (
        lambda f: ("-m", "fast_seg.data.convert", "--dataset", "folder",
                   "--images_dir", f["root"] / "no_images", "--labels_dir",
                   f["root"] / "labels", "--num_classes", "2", "--output_dir",
                   f["root"] / "converted"),
        ["no train images found for --dataset folder in --images_dir ",
         "no_images (files ending .png"]),
}

# What each case must not leave behind (its output folder), by case.
NOT_WRITTEN = {
    "export: checkpoint fails its checksum": "x1",
    "compress: checkpoint fails its checksum": "p1",
    "train: a crop of 100000x100000": "r2",
    "eval: padded to 100000x100000": "e2",
    "export: an input of 100000x100000": "x2",
    "migrate_config: 50000 nested braces": "migrated.config",
    "export: a 1-class softmax model": "x3",
    "train: l2_regularizer weight nan": "r4",
    "convert: empty images folder": "converted",
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_fault_ends_in_one_named_error(files, case):
  arguments, fragments = CASES[case]
  result = helpers.run_entry_point(*arguments(files))
  helpers.assert_one_named_error(result, fragments)
  if case in NOT_WRITTEN:
    assert not (files["root"] / NOT_WRITTEN[case]).exists()


@pytest.mark.slow
def test_resumed_logdir_whose_latest_checkpoint_fails_its_checksum(files):
  logdir = resumable_copy(files, "resume_damaged")
  flip_bytes(logdir / "ckpt-4.data-00000-of-00001")
  result = helpers.run_entry_point("train.py", "--config_path", files["good"],
                                   "--logdir", logdir, "--num_steps", "6")
  helpers.assert_one_named_error(result, [
      f"checkpoint {logdir}/ckpt-4 cannot be read", "Checksum does not match",
      "delete ckpt-4.* to resume from ckpt-2, or train in a new --logdir"])


@pytest.mark.slow
def test_resumed_logdir_with_another_filter_scale(files):
  logdir = resumable_copy(files, "resume_wider")
  config_before = (logdir / "pipeline.config").read_text()
  result = helpers.run_entry_point("train.py", "--config_path", files["wider"],
                                   "--logdir", logdir)
  helpers.assert_one_named_error(result, [
      f"--logdir {logdir}: its checkpoint ckpt-4 does not fit the model of "
      "this config: shape mismatch: mobilenet_v2_Conv/kernel: checkpoint "
      "(3, 3, 3, 8), model (3, 3, 3, 16) (and ",
      f"resume with the config it was trained with ({logdir}/pipeline.config)"
      " or train in a new --logdir"])
  # TensorFlow's warning per unmatched variable is not printed either.
  assert "could not be found in the restored object" not in result.stderr
  assert (logdir / "pipeline.config").read_text() == config_before


# -- the values behind the messages ------------------------------------------


def test_memory_floor_keeps_real_sizes_and_refuses_impossible_ones():
  machine = 24 * memory.GIB
  assert memory.min_batch_bytes(8, 1024, 2048) == 8 * 1024 * 2048 * 24
  memory.check_batch_fits(8, (1024, 2048), "cityscapes", available=machine)
  memory.check_batch_fits(1, (4096, 4096), "an aerial tile", available=machine)
  with pytest.raises(ValueError) as e:
    memory.check_batch_fits(4, (100000, 100000), "the crop",
                            available=machine)
  assert str(e.value).startswith(
      "the crop cannot fit in memory: a batch of 4 x 100000x100000 pixels "
      "needs at least 894 GiB")
  assert "this machine has 24.0 GiB" in str(e.value)
  assert memory.physical_memory() > memory.GIB


@pytest.mark.parametrize("text, field", [
    ("model { icnet { hyperparams { regularizer { l2_regularizer { weight: "
     "nan } } } } }",
     "model.icnet.hyperparams.regularizer.l2_regularizer.weight is nan"),
    ("model { icnet { loss { class_weights: [1, 2, -inf] } } }",
     "model.icnet.loss.class_weights[2] is -inf"),
    ("train_config { data_augmentation_options { random_crop {} } "
     "data_augmentation_options { random_scale { max_scale_ratio: inf } } }",
     "train_config.data_augmentation_options[1].random_scale.max_scale_ratio"
     " is inf"),
])
def test_finite_check_names_the_field(text, field):
  with pytest.raises(config_util.ConfigError) as e:
    config_util.parse_pipeline_config(text, source="x.config")
  assert str(e.value) == f"x.config: {field}; it must be a finite number"


def test_finite_values_pass():
  config = config_util.parse_pipeline_config(
      "model { icnet { loss { class_weights: [0, 1.5, 1e30] } } }")
  assert list(config.model.icnet.loss.class_weights)[2] == pytest.approx(1e30)


_LR = "learning_rate { constant_learning_rate {} } "


@pytest.mark.parametrize("text, message", [
    ("momentum_optimizer { " + _LR + "momentum: -0.5 }",
     "opt.momentum_optimizer.momentum must be in [0, 1], got -0.5"),
    ("adam_optimizer { " + _LR + "beta_1: 1 }",
     "opt.adam_optimizer.beta_1 must be in [0, 1), got 1"),
    ("adamw_optimizer { " + _LR + "weight_decay: -0.01 }",
     "opt.adamw_optimizer.weight_decay must be >= 0, got -0.01"),
    ("adam_optimizer { " + _LR + "epsilon: 0 }",
     "opt.adam_optimizer.epsilon must be > 0, got 0"),
])
def test_optimizer_values_out_of_range_name_the_field(text, message):
  config = text_format.Parse(text, optimizer_pb2.Optimizer())
  with pytest.raises(ValueError) as e:
    optimizer_builder.build(config, 10, "opt")
  assert str(e.value) == message


def test_migrate_reader_nesting_limit():
  depth = reader.MAX_DEPTH
  tree = reader.parse_tf1("a {" * depth + "}" * depth, "ok.config")
  assert tree.fields[0].name == "a"
  with pytest.raises(ValueError, match=r"^deep.config: line 1: blocks nested "
                     r"deeper than 100"):
    reader.parse_tf1("a {" * (depth + 1) + "}" * (depth + 1), "deep.config")


def test_reading_names_a_checkpoint_that_fails_its_checksum(files, trained_run):
  config = trained_run[0]
  with pytest.raises(ValueError) as e:
    helpers.restore_every_weight(config, str(files["damaged"]))
  message = str(e.value)
  assert message.startswith(f"checkpoint {files['damaged']} cannot be read (")
  assert "Checksum does not match" in message and "\n" not in message
  # Its index is intact: only reading the tensors finds the damage.
  assert checkpoint_util.open_reader(str(files["damaged"])).has_tensor(
      "step/.ATTRIBUTES/VARIABLE_VALUE")


def _dense_model(units):
  inputs = keras.Input([3])
  return keras.Model(inputs, keras.layers.Dense(units, name="head")(inputs))


def test_check_resumable_names_the_variable_and_both_shapes(tmp_path):
  """What train.py says when a logdir's checkpoint does not fit (the slow
  case above runs it through train.py)."""
  saved = _dense_model(4)
  prefix = checkpoint_util.make_checkpoint(saved).write(str(tmp_path / "ckpt-7"))
  checkpoint_util.check_resumable(_dense_model(4).layers, prefix, "run")
  with pytest.raises(ValueError) as e:
    checkpoint_util.check_resumable(_dense_model(5).layers, prefix, "run")
  assert str(e.value) == (
      "--logdir run: its checkpoint ckpt-7 does not fit the model of this "
      "config: shape mismatch: head/kernel: checkpoint (3, 4), model (3, 5) "
      "(and 1 more); resume with the config it was trained with "
      "(run/pipeline.config) or train in a new --logdir")
