"""docs/custom_data.md, the "train on your own data" walkthrough, run as written.

The guide is the source of the commands. Its markers (HTML comments, invisible
when rendered) say what this file does with the fenced block after them:

  <!-- tested -->          a bash block: every command in it runs and must
                           exit 0;
  <!-- tested: exit 2 -->  a bash block of commands that must exit 2 (the
                           errors the guide shows on purpose);
  <!-- output -->          a text block: lines the tested block before it
                           printed (stdout and stderr). Every number in them
                           matches any number, runs of spaces any spacing; a
                           `...` line is skipped.

test_walkthrough_runs_as_written runs the tested blocks in order, each command
a subprocess (`bash -c`, `python` = this interpreter, PYTHONPATH = the
repository) in one temporary folder that looks like a checkout with the
user's data beside it: configs/, model_zoo/ and the root scripts are links to
the repository's, mydata/images and mydata/labels to the three LoveDA tiles
of ../shared/data/loveda (1024x1024, classes stored as 1..7). The only text
changed is SUBSTITUTIONS (the training length); each must occur in the tested
blocks. It takes about three minutes on two shared cores (nine Python
processes, each importing TensorFlow), so it is marked slow.

test_every_guide_command_parses runs in CI: every command of every bash block
of the guide, tested or not, has its flags parsed by the entry point that
reads them (unknown flags, bad values and missing required flags fail), and a
--config_path of the repository is loaded with the command's
--config_override / --config_append snippets and passes that command's
pipeline check. All in one subprocess (the commands' absl flags cannot be
defined twice in one process), which runs check_commands_main().
"""

import importlib
import json
import os
from pathlib import Path
import re
import shlex
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "custom_data.md"
LOVEDA = ROOT.parent / "shared" / "data" / "loveda"  # ../shared/data/loveda

# (the guide's text, what the test runs instead): 2000 steps would take an
# hour here; 3 still train, validate, checkpoint and save best/.
SUBSTITUTIONS = (("--num_steps 2000", "--num_steps 3"),)

# Programs the guide may use besides the fast_seg entry points.
_SHELL_PROGRAMS = {"grep", "cat", "ls", "cp", "mkdir", "head", "tensorboard"}
_MARKER = re.compile(r"^<!-- (tested(?:: exit (\d+))?|output) -->$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def guide_blocks(text):
  """[(language, body, marker, expected exit code)] of the guide's fences.

  The marker is the HTML comment on the last non-blank line before the
  fence ('tested', 'output' or None)."""
  blocks, lines, i = [], text.splitlines(), 0
  while i < len(lines):
    if not lines[i].startswith("```"):
      i += 1
      continue
    language = lines[i][3:].strip()
    end = next(j for j in range(i + 1, len(lines)) if lines[j] == "```")
    before = [line for line in lines[:i] if line.strip()]
    match = _MARKER.match(before[-1].strip()) if before else None
    marker = match and match.group(1).split(":")[0]
    exit_code = int(match.group(2) or 0) if match else None
    blocks.append((language, "\n".join(lines[i + 1:end]), marker, exit_code))
    i = end + 1
  return blocks


def commands(body):
  """The commands of a bash block: comment lines dropped, continuation lines
  and quoted strings that span lines joined into one command each."""
  found, pending = [], ""
  for line in body.splitlines():
    if not pending and (not line.strip() or line.lstrip().startswith("#")):
      continue
    pending += line + "\n"
    if line.endswith("\\"):
      continue
    try:
      shlex.split(pending, comments=True)
    except ValueError:  # a quote still open: the command goes on
      continue
    found.append(pending.strip())
    pending = ""
  assert not pending, f"unterminated command in the guide: {pending}"
  return found


def line_pattern(line):
  """An expected output line as a regex: numbers and spacing are free."""
  between_numbers = [
      r"[ \t]+".join(re.escape(word) for word in re.split(r" +", part))
      for part in _NUMBER.split(line.strip())]
  return re.compile(_NUMBER.pattern.join(between_numbers))


def _guide_text():
  return GUIDE.read_text(encoding="utf-8")


# -- CI: every command parses ----------------------------------------------

def _entry_modules():
  import tomllib  # pylint: disable=import-outside-toplevel
  with open(ROOT / "pyproject.toml", "rb") as f:
    scripts = tomllib.load(f)["project"]["scripts"]
  return {name: target.split(":")[0] for name, target in scripts.items()}


def entry_point(argv):
  """(module whose flags parse argv[...], the flag arguments) of a command,
  or (None, program) for a shell program."""
  modules = _entry_modules()
  if argv[0] in modules:
    return modules[argv[0]], argv[1:]
  if argv[0] == "python" and argv[1] == "-m":
    matches = [m for m in modules.values() if m in (argv[2], argv[2] + ".cli")]
    assert matches, f"python -m {argv[2]} is no fast_seg command"
    return matches[0], argv[3:]
  if argv[0] == "python" and argv[1].endswith(".py"):
    assert (ROOT / argv[1]).is_file(), f"no root script {argv[1]}"
    return modules["fast-seg-" + argv[1][:-3]], argv[2:]
  assert argv[0] in _SHELL_PROGRAMS, f"unexpected program {argv[0]!r}"
  return None, argv[0]


def test_guide_markers_and_substitutions():
  blocks = guide_blocks(_guide_text())
  tested = [b for b in blocks if b[2] == "tested"]
  assert len(tested) >= 6
  for i, (language, _, marker, _) in enumerate(blocks):
    if marker == "tested":
      assert language == "bash"
    if marker == "output":
      assert language == "text" and blocks[i - 1][2] == "tested", (
          "an output block follows the tested block whose output it is")
  tested_text = "\n".join(b[1] for b in tested)
  for old, _ in SUBSTITUTIONS:
    assert old in tested_text, f"{old!r} no longer in the guide's tested commands"


def test_every_guide_command_parses():
  requests = []
  bash = [body for language, body, _, _ in guide_blocks(_guide_text())
          if language == "bash"]
  for body in bash:
    for command in commands(body):
      module, args = entry_point(shlex.split(command, comments=True))
      if module:
        requests.append({"command": command, "module": module, "args": args})
  assert {r["module"] for r in requests} >= {
      "fast_seg.data.convert", "fast_seg.data.inspect", "fast_seg.commands.train",
      "fast_seg.commands.eval", "fast_seg.commands.export",
      "fast_seg.commands.predict"}
  result = subprocess.run(
      [sys.executable, "-c", "from tests import test_custom_data_guide as t; "
       "t.check_commands_main()"], input=json.dumps(requests), cwd=ROOT,
      capture_output=True, text=True, timeout=600, check=False,
      env=dict(os.environ, PYTHONPATH=str(ROOT)))
  assert result.returncode == 0, result.stderr[-3000:]
  answers = json.loads(result.stdout.strip().splitlines()[-1])
  problems = [f"{r['command']}\n  -> {a['error']}"
              for r, a in zip(requests, answers) if a["error"]]
  assert not problems, "\n".join(problems)
  # The two ways of changing the augmentation list, as the guide states them.
  steps = {r["command"]: a["augmentations"] for r, a in zip(requests, answers)}
  camvid = ["random_scale", "random_crop", "random_horizontal_flip",
            "color_jitter"]
  (appended,) = [s for c, s in steps.items() if "--config_append" in c]
  assert appended == camvid + ["random_vertical_flip"]
  (replaced,) = [s for c, s in steps.items() if "--logdir runs/loveda " in c]
  assert replaced == ["random_scale", "random_crop", "random_horizontal_flip",
                      "random_vertical_flip", "color_jitter"]


def check_commands_main():
  """In a fresh process: the requests on stdin (command, module, args), each
  command's flags parsed by its module and its config (if one of the
  repository's) loaded and checked; one JSON answer per request on stdout."""
  print(json.dumps(_check_commands(json.load(sys.stdin))))


def _check_commands(requests):
  """The answers, in the order of the requests; each module's flags are
  defined once, alone (the previous module's are deleted first)."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  flag_values = flags.FLAGS
  absl_own = set(flag_values)
  answers = [None] * len(requests)
  for module_name in dict.fromkeys(r["module"] for r in requests):
    for name in set(flag_values) - absl_own:
      delattr(flag_values, name)
    module = importlib.import_module(module_name)
    if module_name not in flag_values.flags_by_module_dict():
      # A module that defines its flags in command(), not at import (and
      # importing TensorFlow may define flags of its own).
      module._define_flags()  # pylint: disable=protected-access
    for i, request in enumerate(requests):
      if request["module"] == module_name:
        answers[i] = _check_command(request["args"], module_name, flag_values)
  return answers


def _check_command(args, module_name, flag_values):
  """{'error': why the command would not start or None, 'augmentations':
  the step names of its training list when its config was loaded}."""
  from fast_seg.training import pipeline_check  # pylint: disable=import-outside-toplevel
  from fast_seg.utils import config_util  # pylint: disable=import-outside-toplevel
  answer = {"error": None, "augmentations": None}
  try:
    flag_values(["prog", *args])
    config_path = "config_path" in flag_values and flag_values.config_path
    if config_path and (ROOT / config_path).is_file():
      config = config_util.load_pipeline_config(
          str(ROOT / config_path), flag_values.config_override,
          flag_values.config_append)
      pipeline_check.check(config, module_name.rsplit(".", 1)[-1])
      answer["augmentations"] = [
          step.WhichOneof("preprocessing_step")
          for step in config.train_config.data_augmentation_options]
  except Exception as e:  # pylint: disable=broad-except
    answer["error"] = f"{type(e).__name__}: {e}"
  flag_values.unparse_flags()
  return answer


# -- the walkthrough, run --------------------------------------------------

def _checkout_with_data(tmp_path):
  """tmp_path as the guide's working folder (see the module docstring)."""
  for name in ("configs", "model_zoo", "train.py", "eval.py", "export.py",
               "predict.py", "compress.py"):
    (tmp_path / name).symlink_to(ROOT / name)
  (tmp_path / "mydata").mkdir()
  for name in ("images", "labels"):
    (tmp_path / "mydata" / name).symlink_to(LOVEDA / name)
  env = dict(os.environ, PYTHONPATH=str(ROOT),
             PATH=os.pathsep.join([os.path.dirname(sys.executable),
                                   os.environ.get("PATH", "")]))
  return env


def _substituted(command):
  for old, new in SUBSTITUTIONS:
    command = command.replace(old, new)
  return command


def _assert_printed(expected, output, where):
  for line in expected.splitlines():
    if line.strip() and line.strip() != "...":
      assert line_pattern(line).search(output), (
          f"{where}: the guide says it prints\n  {line}\nbut it printed:\n"
          f"{output[-4000:]}")


@pytest.mark.slow
def test_walkthrough_runs_as_written(tmp_path):
  if not (LOVEDA / "images").is_dir():
    pytest.skip(f"LoveDA samples not found at {LOVEDA} (../shared/data/loveda): "
                "the walkthrough needs a real folder of images and 1-based masks")
  env = _checkout_with_data(tmp_path)
  output = None
  for language, body, marker, exit_code in guide_blocks(_guide_text()):
    if marker == "output":
      _assert_printed(body, output, f"block before\n{body}")
    if marker != "tested" or language != "bash":
      continue
    output = ""
    for command in commands(body):
      run = subprocess.run(["bash", "-c", _substituted(command)], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=900,
                           check=False)
      output += run.stdout + run.stderr
      assert run.returncode == exit_code, (
          f"{command}\nexited {run.returncode}, the guide expects {exit_code}:\n"
          f"{(run.stdout + run.stderr)[-4000:]}")
      if exit_code:
        assert "Traceback" not in run.stderr and "error: " in run.stderr
  # What the guide says the commands leave behind.
  info = json.loads((tmp_path / "data/mydata/dataset_info.json").read_text())
  assert info["num_classes"] == 7 and info["num_examples"] == {"train": 2, "val": 1}
  assert len(list((tmp_path / "previews/mydata").glob("*.png"))) == 2
  run_dir = tmp_path / "runs/loveda"
  assert json.loads((run_dir / "best/best.json").read_text())["step"] == 3
  assert "class_weights: " in (run_dir / "pipeline.config").read_text()
  metrics = json.loads((run_dir / "eval/metrics.json").read_text())
  assert 0.0 <= metrics["miou"] <= 1.0 and metrics["step"] == 3
  assert metrics["class_names"][1] == "building"
  assert list((run_dir / "eval/visualizations/step_3").glob("*.png"))
  assert (tmp_path / "exported/loveda/model.tflite").stat().st_size > 0
  predictions = tmp_path / "predictions/loveda"
  assert len(list(predictions.glob("*_labels.png"))) == 3
  assert len(list(predictions.glob("*_overlay.png"))) == 3
