"""What users read: progress without carriage returns off a terminal, no TF chatter."""

import inspect
import logging
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from fast_seg.evaluation import eval_lib
from fast_seg.utils import cli
from fast_seg.utils import native_stderr
from fast_seg.utils import progress
from tests import helpers


def test_progress_off_a_terminal_prints_quarter_lines(capsys):
  bar = progress.bar(8, unit_name="image")  # pytest's stdout is not a TTY
  for done in range(1, 9):
    bar.update(done)
  lines = capsys.readouterr().out.splitlines()
  assert [line.split(",")[0].strip() for line in lines] == [
      "2/8 images (25%)", "4/8 images (50%)", "6/8 images (75%)", "8/8 images (100%)"]
  assert "\r" not in "".join(lines)
  assert lines[-1].endswith("ETA 0 s") and all(", ETA " in line for line in lines)


@pytest.mark.parametrize("target, expected", [
    (2, ["1/2 images (50%)", "2/2 images (100%)"]),
    (3, ["1/3 images (33%)", "2/3 images (66%)", "3/3 images (100%)"]),
    (7, ["2/7 images (28%)", "4/7 images (57%)", "6/7 images (85%)",
         "7/7 images (100%)"])])
def test_progress_percent_is_the_count_shown(capsys, target, expected):
  # One update can cross two quarters (1 of 2): one line, its own percent,
  # not "1/2 images (25%)" then "1/2 images (50%)".
  bar = progress.bar(target, unit_name="image")
  for done in range(1, target + 1):
    bar.update(done)
  lines = capsys.readouterr().out.splitlines()
  assert [line.split(",")[0].strip() for line in lines] == expected


def test_quiet_progress_prints_nothing(capsys):
  bar = progress.bar(4, verbose=False)
  bar.update(4)
  assert capsys.readouterr().out == ""


def _record(path, level, message):
  return logging.LogRecord("absl", level, path, 1, message, None, None)


def test_tensorflow_info_and_deprecations_are_dropped_ours_kept():
  keep = cli._UserFacingTensorFlowLogs().filter  # pylint: disable=protected-access
  tf_file = "/x/site-packages/tensorflow/python/checkpoint/functional_saver.py"
  assert not keep(_record(tf_file, logging.INFO, "Sharding callback duration: 200"))
  assert not keep(_record(tf_file, logging.WARNING, "foo is deprecated and will be removed"))
  assert keep(_record(tf_file, logging.WARNING, "a real warning"))
  assert keep(_record("/repo/fast_seg/training/train_lib.py", logging.INFO,
                      "Median-frequency class weights: 1.0"))


def test_tensorflow_start_up_noise_is_not_printed():
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env["PYTHONPATH"] = str(helpers.REPO_ROOT)
  code = "import fast_seg, sys, tensorflow as tf; tf.constant(1); print('tf', tf.__version__, file=sys.stderr)"
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=helpers.REPO_ROOT)
  assert result.returncode == 0, result.stderr
  assert "tf 2." in result.stderr  # stderr still works afterwards
  for noise in ("absl::InitializeLog", "oneDNN custom operations", "Could not find cuda drivers",
                "cpu_feature_guard", "UNKNOWN ERROR (303)"):
    assert noise not in result.stderr, result.stderr


def test_tensorflow_warnings_false_for_our_graphs_are_dropped():
  keep = cli._UserFacingTensorFlowLogs().filter  # pylint: disable=protected-access
  fold = "/x/site-packages/tensorflow/python/tools/optimize_for_inference_lib.py"
  assert not keep(_record(fold, logging.WARNING,
                          "Didn't find expected Conv2D or DepthwiseConv2dNative "
                          "input to 'icnet/cff1_low_conv_bn/FusedBatchNormV3'"))
  # The other folding warnings would mean a graph we did not expect.
  assert keep(_record(fold, logging.WARNING,
                      "Didn't find expected conv Constant input to 'conv'"))


def _retracing_warnings(qualname):
  """TensorFlow's own retracing warnings for tf.functions made one after the
  other from one Python function named `qualname`, as eval_lib makes one
  per model."""

  def step(x):
    return x + 1

  step.__qualname__ = qualname
  # TensorFlow counts traces per code object: one of its own per name.
  step.__code__ = step.__code__.replace(co_name=qualname.split(".")[-1])
  with helpers.log_records(tf.get_logger()) as records:
    for i in range(6):
      tf.function(step)(tf.constant(float(i)))
  return [r for r in records if "retracing" in r.getMessage()]


def test_retracing_of_a_function_built_per_model_is_dropped_others_kept():
  keep = cli._UserFacingTensorFlowLogs().filter  # pylint: disable=protected-access
  # The name eval_lib's step has (a rename must rename it in cli too).
  make = eval_lib.Evaluator._make_eval_step  # pylint: disable=protected-access
  name = f"{make.__qualname__}.<locals>.eval_step"
  assert "def eval_step(" in inspect.getsource(make)
  assert name in cli._BUILT_PER_MODEL  # pylint: disable=protected-access
  per_model = _retracing_warnings(name)
  assert per_model and not any(keep(r) for r in per_model)
  other = _retracing_warnings("some_user_function")
  assert other and all(keep(r) for r in other)


def test_native_stderr_keeps_errors_and_drops_the_known_noise(capfd,
                                                              monkeypatch):
  monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
  with pytest.raises(RuntimeError, match="conversion failed"):
    with native_stderr.quiet():
      # As the TFLite quantizer writes it (llvm::dbgs(), file descriptor 2).
      os.write(2, b"fully_quantize: 0, inference_type: 6, input_inference_type"
                  b": FLOAT32, output_inference_type: FLOAT32\n")
      os.write(2, b"error: 'tf.Foo' op is neither a custom op nor a flex op\n")
      raise RuntimeError("conversion failed")
  assert capfd.readouterr().err == (
      "error: 'tf.Foo' op is neither a custom op nor a flex op\n")


def test_a_tensorflow_warning_is_printed_once():
  # TensorFlow's logger had a stderr handler of its own besides absl's:
  # every warning came twice ("WARNING:tensorflow:..." and absl's line).
  code = ("import tensorflow as tf\nfrom fast_seg.utils import cli\n"
          "cli.run(lambda argv: tf.get_logger().warning('a real warning'))")
  result = subprocess.run(
      [sys.executable, "-c", code], capture_output=True, text=True,
      timeout=300, cwd=helpers.REPO_ROOT, check=False,
      env=dict(os.environ, PYTHONPATH=str(helpers.REPO_ROOT)))
  assert result.returncode == 0, result.stderr
  assert result.stderr.count("a real warning") == 1, result.stderr
