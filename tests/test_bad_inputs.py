"""A guard: bad inputs through the real entry points end in one named error.

Each case runs an entry point as a user would (a subprocess) and asserts exit
status 2, exactly one `error:` line, no traceback, and the words that tell
the user what to fix (the file, the field, the allowed values). A new code
path that lets a raw traceback through fails here.
"""

import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from fast_seg.data import tf_example
from tests import helpers


@pytest.fixture(scope="module")
def files(tiny_dataset, trained_run, tmp_path_factory):
  """Good and bad inputs shared by the cases, written once."""
  root = tmp_path_factory.mktemp("bad_inputs")
  good = helpers.train_pipeline_text(tiny_dataset)
  paths = {"root": root, "logdir": trained_run[1]}

  def write(name, text, mode="w"):
    path = root / name
    with open(path, mode) as f:
      f.write(text)
    return path

  paths["good"] = write("good.config", good)
  paths["no_model"] = write("no_model.config",
                            "train_config" + good.split("train_config", 1)[1])
  paths["two_models"] = write("two.config", good.replace(
      "model {\n  icnet {", "model {\n  pspnet { num_classes: 6 }\n  icnet {", 1))
  paths["garbage"] = write("garbage.config", bytes(range(128, 256)) * 4, "wb")
  paths["negative_warmup"] = write("warmup.config", good.replace(
      "constant_learning_rate { learning_rate: 0.003 } }",
      "constant_learning_rate { learning_rate: 0.003 } "
      "warmup { steps: 2 start_learning_rate: -1 } }"))
  paths["zero_checkpoints"] = write("ckpt.config", good.replace(
      "checkpoint_every_n_steps: 2", "checkpoint_every_n_steps: 0"))
  paths["eval_negative"] = write("eval.config", good.replace(
      "eval_config {", "eval_config { num_examples: -1"))
  paths["unbatchable_validation"] = write("validation.config", good.replace(
      "log_every_n_steps: 2", "log_every_n_steps: 2 eval_every_n_steps: 2").replace(
          "eval_input_reader {", "eval_input_reader { batch_size: 4"))
  paths["a_file"] = write("a_file", "not a folder")
  corrupt = root / "corrupt"
  corrupt.mkdir()
  (corrupt / "ckpt-1.index").write_bytes(os.urandom(200))
  (corrupt / "ckpt-1.data-00000-of-00001").write_bytes(os.urandom(200))
  paths["corrupt_ckpt"] = corrupt / "ckpt-1"
  paths["garbage_onnx"] = write("model.onnx", os.urandom(300), "wb")
  images = root / "images"
  images.mkdir()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.new("RGB", (32, 32)).save(images / "a.png")
  paths["images"] = images
  # A copy of the data with one training shard cut in half, and an eval
  # shard holding an image that is not a JPEG.
  broken = root / "broken_data"
  broken.mkdir()
  for path in sorted(tiny_dataset.glob("*.tfrecord")):
    shutil.copy(path, broken)
  truncated = sorted(broken.glob("train-*.tfrecord"))[1]
  truncated.write_bytes(truncated.read_bytes()[:3000])
  paths["truncated_shard"] = truncated
  label = tf_example.encode_png(np.zeros((64, 64), np.uint8))
  bad = tf_example.make_example(b"\xff\xd8\xff\xe0 not a jpeg", label, "street_01.jpg",
                                64, 64, image_format="jpeg")
  with tf.io.TFRecordWriter(str(broken / "val-00000-of-00001.tfrecord")) as writer:
    writer.write(bad.SerializeToString())
  for name in ("val-00000-of-00002.tfrecord", "val-00001-of-00002.tfrecord"):
    (broken / name).unlink(missing_ok=True)
  text = good.replace(str(tiny_dataset), str(broken))
  paths["broken_data"] = write("broken.config", text)
  return paths


CASES = {
    "train: no model": (
        lambda f: ("train.py", "--config_path", f["no_model"], "--logdir", f["root"] / "r1"),
        ["no_model.config", "model: 'model' is not set; set one of: icnet"]),
    "train: config path is a folder": (
        lambda f: ("train.py", "--config_path", f["root"], "--logdir", f["root"] / "r2"),
        ["is a directory"]),
    "eval: binary garbage config": (
        lambda f: ("eval.py", "--config_path", f["garbage"], "--eval_dir", f["root"] / "e"),
        ["garbage.config", "not a text config"]),
    "train: two architectures": (
        lambda f: ("train.py", "--config_path", f["two_models"], "--logdir", f["root"] / "r3"),
        ["two.config", '"icnet" is specified along with field "pspnet"']),
    "train: negative warmup start": (
        lambda f: ("train.py", "--config_path", f["negative_warmup"], "--logdir", f["root"] / "r4"),
        ["warmup.config: train_config.optimizer", "warmup.start_learning_rate must be >= 0"]),
    "train: checkpoint every 0 steps": (
        lambda f: ("train.py", "--config_path", f["zero_checkpoints"], "--logdir", f["root"] / "r5"),
        ["ckpt.config: train_config.checkpoint_every_n_steps must be >= 1"]),
    "train: logdir is a file": (
        lambda f: ("train.py", "--config_path", f["good"], "--logdir", f["a_file"]),
        ["--logdir", "a_file is a file"]),
    "export: output under a file": (
        lambda f: ("export.py", "--config_path", f["good"], "--trained_checkpoint", f["logdir"],
                   "--output_dir", f["a_file"] / "out", "--input_shape", "1,64,64,3"),
        ["--output_dir", "lies under the file"]),
    "export: no input shape": (
        lambda f: ("export.py", "--config_path", f["good"], "--trained_checkpoint", f["logdir"],
                   "--output_dir", f["root"] / "x"),
        ["--input_shape"]),
    "eval: corrupt checkpoint": (
        lambda f: ("eval.py", "--config_path", f["good"], "--checkpoint", f["corrupt_ckpt"],
                   "--eval_dir", f["root"] / "e2"),
        ["checkpoint", "corrupt/ckpt-1 cannot be read"]),
    "compress: corrupt checkpoint": (
        lambda f: ("compress.py", "--config_path", f["good"], "--checkpoint", f["corrupt_ckpt"],
                   "--output_dir", f["root"] / "p", "--filter_scale", "0.125"),
        ["corrupt/ckpt-1 cannot be read"]),
    "eval: negative num_examples": (
        lambda f: ("eval.py", "--config_path", f["eval_negative"], "--train_dir", f["logdir"],
                   "--eval_dir", f["root"] / "e3"),
        ["eval.config: eval_config.num_examples must be >= 0"]),
    "train: validation that cannot batch": (
        lambda f: ("train.py", "--config_path", f["unbatchable_validation"], "--logdir",
                   f["root"] / "r7"),
        ["validation.config: eval_input_reader.batch_size is 4, but whole-image"]),
    "predict: garbage onnx": (
        lambda f: ("predict.py", "--model", f["garbage_onnx"], "--input", f["images"],
                   "--output_dir", f["root"] / "pred"),
        ["model.onnx: not a loadable ONNX model"]),
    "train: truncated shard": (
        lambda f: ("train.py", "--config_path", f["broken_data"], "--logdir", f["root"] / "r6"),
        ["broken.config: train_input_reader: ", "train-00001-of-00002.tfrecord is a damaged "
         "TFRecord file", "Training stopped at step"]),
    "eval: undecodable image in a record": (
        lambda f: ("eval.py", "--config_path", f["broken_data"], "--checkpoint", f["logdir"],
                   "--eval_dir", f["root"] / "e4"),
        ["eval_input_reader: ", "val-00000-of-00001.tfrecord, record 0: the image cannot be "
         "decoded (image street_01.jpg)"]),
    "convert: output is a file": (
        lambda f: ("-m", "fast_seg.data.convert", "--dataset", "folder", "--images_dir",
                   f["images"], "--labels_dir", f["images"], "--num_classes", "2",
                   "--output_dir", f["a_file"]),
        ["--output_dir", "is a file"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_ends_in_one_named_error(files, case):
  arguments, fragments = CASES[case]
  result = helpers.run_entry_point(*arguments(files))
  helpers.assert_one_named_error(result, fragments)
