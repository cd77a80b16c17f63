"""What users read: progress without carriage returns off a terminal, no TF chatter."""

import logging

import pytest

from fast_seg.utils import cli
from fast_seg.utils import progress


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
  import os  # pylint: disable=g-import-not-at-top
  import subprocess  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
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
