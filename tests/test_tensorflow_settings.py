"""The TensorFlow settings fast_seg chooses, or leaves, before TensorFlow loads.

Both are read once, when TensorFlow's library loads, so each case runs in a
fresh process that imports fast_seg first, as train.py and the tools do.
oneDNN stays TensorFlow's own choice: on an AVX2 CPU it trains faster but
runs Keras at batch 1 10-24x slower (docs/training_eval.md), so it is the
user's switch, and a switch that must really reach TensorFlow.
"""

import json
import os
import subprocess
import sys

import pytest

from tests import helpers

_REPORT = """
import json, os
import fast_seg
from tensorflow.python.util import _pywrap_util_port
print(json.dumps({
    "onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
    "onednn_running": _pywrap_util_port.IsMklEnabled(),
    "bfc": os.environ["TF_CPU_ALLOCATOR_USE_BFC"]}))
"""


def _settings(**env_overrides):
  env = {k: v for k, v in os.environ.items()
         if k not in ("TF_ENABLE_ONEDNN_OPTS", "TF_CPU_ALLOCATOR_USE_BFC")}
  env.update(env_overrides, PYTHONPATH=str(helpers.REPO_ROOT))
  result = subprocess.run([sys.executable, "-c", _REPORT], env=env, capture_output=True,
                          text=True, timeout=300, cwd=helpers.REPO_ROOT, check=True)
  return json.loads(result.stdout.strip().splitlines()[-1])


def _built_with_onednn():
  # x86-64 Linux wheels carry oneDNN; TensorFlow ignores the variable elsewhere.
  return sys.platform.startswith("linux") and os.uname().machine == "x86_64"


def test_the_best_fit_allocator_is_on_and_onednn_left_to_tensorflow():
  settings = _settings()
  assert settings["bfc"] == "true"
  assert settings["onednn_opts"] is None


def test_a_users_onednn_switch_reaches_tensorflow():
  if not _built_with_onednn():
    pytest.skip("this TensorFlow build has no oneDNN kernels to turn on")
  assert _settings(TF_ENABLE_ONEDNN_OPTS="1")["onednn_running"] is True


def test_a_users_own_choice_is_kept():
  settings = _settings(TF_ENABLE_ONEDNN_OPTS="0", TF_CPU_ALLOCATOR_USE_BFC="false")
  assert settings == {"onednn_opts": "0", "onednn_running": False, "bfc": "false"}
