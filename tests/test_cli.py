"""The entry points end to end (train -> eval -> export) and their user errors."""

import json
import os
import subprocess
import sys

from google.protobuf import text_format

from tests import helpers

ROOT = helpers.REPO_ROOT


def _run(*args):
  env = dict(os.environ, PYTHONPATH=str(ROOT))
  return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=600)


def test_train_eval_export_predict(tiny_dataset, tmp_path):
  config = tmp_path / "tiny.config"
  config.write_text(helpers.train_pipeline_text(tiny_dataset, num_steps=4))
  run = tmp_path / "run"
  train = _run("train.py", "--config_path", config, "--logdir", run,
               "--image_summaries")
  assert train.returncode == 0, train.stderr[-2000:]
  assert "step 4/4" in train.stdout and "img/s" in train.stdout
  # --image_summaries (the TF1 flag): overlays at every checkpoint.
  tags = helpers.summary_tags(run / "train")
  assert {"input", "ground_truth", "prediction"} <= {
      t for t, kind in tags.items() if kind == "image"}
  assert "image_summary_every_n_steps: 2" in (run / "pipeline.config").read_text()
  evaluation = _run("eval.py", "--config_path", config, "--train_dir", run,
                    "--eval_dir", run / "eval", "--split", "train",
                    "--image_summaries")
  assert evaluation.returncode == 0, evaluation.stderr[-2000:]
  assert "mIoU" in evaluation.stdout and "stripe" in evaluation.stdout
  # --split: the train split's glob from dataset_info.json, with its counts.
  assert (f"eval_input_reader reads:\n  {tiny_dataset}/train-*.tfrecord: "
          "2 files, 16 examples") in evaluation.stdout
  metrics = json.loads((run / "eval" / "metrics.json").read_text())
  assert metrics["step"] == 4 and 0.0 <= metrics["miou"] <= 1.0
  assert len([t for t in helpers.summary_tags(run / "eval")
              if t.startswith("visualizations/")]) == 2  # the config's 2
  export = _run("export.py", "--config_path", config, "--trained_checkpoint",
                run / "ckpt-4", "--output_dir", tmp_path / "export",
                "--input_shape", "1,64,64,3")
  assert export.returncode == 0, export.stderr[-2000:]
  assert "params:" in export.stdout and "FLOPs:" in export.stdout
  assert (tmp_path / "export" / "frozen_inference_graph.pb").exists()
  images = tmp_path / "images"
  images.mkdir()
  from PIL import Image
  import numpy as np
  Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(images / "a.png")
  predict = _run("predict.py", "--model", tmp_path / "export", "--input", images,
                 "--output_dir", tmp_path / "predictions")
  assert predict.returncode == 0, predict.stderr[-2000:]
  labels = np.asarray(Image.open(tmp_path / "predictions" / "a_labels.png"))
  assert labels.shape == (40, 50)
  assert "a: " in predict.stdout and "1 images, latency mean" in predict.stdout


def test_eval_draws_a_few_overlays_unless_the_config_says(trained_run,
                                                          tmp_path):
  # A zoo model's config sets no num_visualizations: eval.py still draws 3
  # (the tiny val split has 6); an explicit 0 draws none.
  config = type(trained_run[0])()
  config.CopyFrom(trained_run[0])
  config.eval_config.ClearField("num_visualizations")
  path = tmp_path / "unset.config"
  path.write_text(text_format.MessageToString(config))
  stdout = {}
  for name, override in (("default", ()), ("off", (
      "--config_override", "eval_config { num_visualizations: 0 }"))):
    result = _run("eval.py", "--config_path", path, "--train_dir",
                  trained_run[1], "--eval_dir", tmp_path / name, *override)
    assert result.returncode == 0, result.stderr[-2000:]
    stdout[name] = result.stdout
  step = tmp_path / "default" / "visualizations" / "step_4"
  assert len(list(step.glob("*.png"))) == 3
  assert f"overlays (image | ground truth | prediction) in {step}" in stdout["default"]
  assert "overlays (image" not in stdout["off"]
  assert "num_visualizations: 3" in (
      tmp_path / "default" / "pipeline.config").read_text()
  assert not (tmp_path / "off" / "visualizations").exists()


def test_int8_export_says_once_what_is_true(trained_run, tmp_path):
  # TensorFlow's fold_batch_norms warned of every BN behind a dilated conv
  # (folded right after, by fast_seg's pass) and the TFLite quantizer
  # called the uint8 input FLOAT32: neither is printed; the interface is,
  # once, as the file has it.
  config = tmp_path / "run.config"
  config.write_text(text_format.MessageToString(trained_run[0]))
  export = _run("export.py", "--config_path", config, "--trained_checkpoint",
                trained_run[1], "--output_dir", tmp_path / "export",
                "--input_shape", "1,64,64,3", "--formats", "tflite",
                "--quantize", "int8", "--num_calibration_images", "2")
  assert export.returncode == 0, export.stderr[-2000:]
  console = export.stdout + export.stderr
  for noise in ("Didn't find expected Conv2D", "fully_quantize",
                "input_inference_type"):
    assert noise not in console, console[-3000:]
  assert console.count("model.tflite (int8): uint8 inputs [1, 64, 64, 3] -> "
                       "int32 predictions [1, 64, 64]") == 1, console[-3000:]
  report = json.loads((tmp_path / "export" / "export_report.json").read_text())
  assert report["formats"]["frozen_graph"]["batch_norms_left"] == 0
  assert "batch norm" not in console


def _user_error(result, *fragments):
  assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
  assert "Traceback" not in result.stderr
  for fragment in fragments:
    assert fragment in result.stderr, result.stderr[-2000:]


def test_user_errors_are_one_clear_line(tiny_dataset, tmp_path):
  _user_error(_run("train.py", "--config_path", tmp_path / "missing.config",
                   "--logdir", tmp_path / "r"),
              "error: config file not found", "missing.config")
  tiny = tmp_path / "tiny.config"
  tiny.write_text(helpers.train_pipeline_text(tiny_dataset))
  _user_error(_run("eval.py", "--config_path", tiny, "--eval_dir", tmp_path / "e",
                   "--split", "test"),
              "error: --split test is not a split of", "its splits: train, val")
  _user_error(_run("train.py", "--config_path", tiny, "--logdir", tmp_path / "r",
                   "--split", "val", "--input_pattern", "x/*.tfrecord"),
              "give --input_pattern or --split, not both")
  bad_field = tmp_path / "field.config"
  bad_field.write_text("model { icnet { num_classes: 3 colour: 1 } }")
  _user_error(_run("train.py", "--config_path", bad_field, "--logdir", tmp_path / "r"),
              "field.config: 1:32", "colour")
  bad_type = tmp_path / "type.config"
  bad_type.write_text(helpers.train_pipeline_text(tiny_dataset).replace(
      '"mobilenet_v2"', '"resnet_v9"'))
  _user_error(_run("train.py", "--config_path", bad_type, "--logdir", tmp_path / "r"),
              "model.icnet.feature_extractor.type: unknown 'resnet_v9'", "allowed:")
  empty_glob = tmp_path / "glob.config"
  empty_glob.write_text(helpers.train_pipeline_text(tmp_path / "no_data"))
  _user_error(_run("train.py", "--config_path", empty_glob, "--logdir", tmp_path / "r"),
              "train_input_reader.tf_record_input_path", "no_data")


def _console_scripts():
  import tomllib  # pylint: disable=g-import-not-at-top
  with open(ROOT / "pyproject.toml", "rb") as f:
    return tomllib.load(f)["project"]["scripts"]


def test_every_console_command_is_a_run_function_with_its_help():
  import ast  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  scripts = _console_scripts()
  assert {"fast-seg-train", "fast-seg-eval", "fast-seg-export",
          "fast-seg-compress", "fast-seg-predict", "fast-seg-convert",
          "fast-seg-benchmark"} <= set(scripts)
  for command, target in scripts.items():
    # Read, not imported: two commands in one process would define their
    # flags twice.
    module_name, function = target.split(":")
    path = importlib.util.find_spec(module_name).origin
    with open(path, encoding="utf-8") as f:
      tree = ast.parse(f.read())
    assert ast.get_docstring(tree), command
    assert function in {node.name for node in tree.body
                        if isinstance(node, ast.FunctionDef)}, command


def test_an_installed_command_and_its_root_script_give_one_help():
  command = os.path.join(os.path.dirname(sys.executable), "fast-seg-train")
  if not os.path.exists(command):
    import pytest  # pylint: disable=g-import-not-at-top
    pytest.skip(f"{command} not installed (pip install -e . makes it)")
  installed = subprocess.run([command, "--help"], capture_output=True,
                             text=True, timeout=300, cwd=ROOT)
  script = _run("train.py", "--help")
  # absl ends --help with exit code 1, as before the commands moved.
  assert installed.returncode == script.returncode == 1
  assert installed.stdout.startswith("Trains a segmentation model")
  assert installed.stdout.split("flags:")[0] == script.stdout.split("flags:")[0]
  assert "--logdir" in installed.stdout and "--num_steps" in installed.stdout
  # The usage lines keep their continuation backslashes (raw docstrings).
  assert "_synthetic_128.config \\\n      --logdir runs/demo" in installed.stdout
