"""One run per output folder: the lock file, its takeover and its refusals."""

import json
import os
import socket
import subprocess

import pytest

from fast_seg.utils import run_lock


def _lock(directory):
  with open(directory / run_lock.LOCK_NAME, encoding="utf-8") as f:
    return json.load(f)


def _plant(directory, pid, host):
  directory.mkdir(exist_ok=True)
  owner = {"pid": pid, "host": host, "started": "2026-01-01 00:00:00"}
  (directory / run_lock.LOCK_NAME).write_text(json.dumps(owner))
  return owner


def _dead_pid():
  with subprocess.Popen(["true"]) as process:  # ends at once
    process.wait()
  return process.pid


def test_held_writes_pid_and_host_and_removes_the_lock(tmp_path):
  logdir = tmp_path / "run"
  with run_lock.held(str(logdir)) as owner:
    assert _lock(logdir) == owner
    assert owner["pid"] == os.getpid()
    assert owner["host"] == socket.gethostname()
    (logdir / "ckpt-1.index").write_text("")
  assert os.listdir(logdir) == ["ckpt-1.index"]


def test_released_on_an_exception_and_a_new_empty_folder_goes(tmp_path):
  logdir = tmp_path / "refused"
  with pytest.raises(ValueError, match="bad data"):
    with run_lock.held(str(logdir)):
      raise ValueError("bad data")
  assert not logdir.exists()
  # A folder that was there stays, without the lock.
  logdir.mkdir()
  with pytest.raises(KeyboardInterrupt):
    with run_lock.held(str(logdir)):
      raise KeyboardInterrupt
  assert logdir.is_dir() and not os.listdir(logdir)


def test_a_live_holder_on_this_host_is_refused(tmp_path):
  owner = _plant(tmp_path, os.getpid(), socket.gethostname())
  with pytest.raises(ValueError) as error:
    run_lock.acquire(str(tmp_path))
  assert str(error.value) == (
      f"--logdir {tmp_path} is in use by another run (process {os.getpid()} "
      f"on host {socket.gethostname()}, since 2026-01-01 00:00:00; lock "
      f"{tmp_path / run_lock.LOCK_NAME}); wait for it to end or give another "
      "--logdir")
  assert _lock(tmp_path) == owner


def test_another_hosts_lock_is_refused_with_how_to_remove_it(tmp_path):
  _plant(tmp_path, 4242, "gpu-node-7")
  lock = tmp_path / run_lock.LOCK_NAME
  with pytest.raises(ValueError) as error:
    run_lock.acquire(str(tmp_path), flag="--eval_dir")
  assert str(error.value) == (
      f"--eval_dir {tmp_path} is locked by process 4242 on host gpu-node-7, "
      f"since 2026-01-01 00:00:00 ({lock}); this host cannot tell whether "
      f"that run still goes on: if it does not, delete {lock} and start again")


def test_a_dead_processs_lock_is_taken_over_with_one_line(tmp_path):
  dead = _dead_pid()
  _plant(tmp_path, dead, socket.gethostname())
  lines = []
  owner = run_lock.acquire(str(tmp_path), log=lines.append)
  assert lines == [f"--logdir {tmp_path}: taking over the lock of process "
                   f"{dead}, which is no longer running "
                   f"({tmp_path / run_lock.LOCK_NAME})"]
  assert _lock(tmp_path) == owner and owner["pid"] == os.getpid()
  run_lock.release(str(tmp_path), owner)
  assert not os.listdir(tmp_path)


def test_release_leaves_a_lock_it_does_not_hold(tmp_path):
  other = _plant(tmp_path, 4242, "gpu-node-7")
  run_lock.release(str(tmp_path), {"pid": os.getpid(), "host": "x"})
  assert _lock(tmp_path) == other


def test_an_unreadable_lock_is_refused_not_deleted(tmp_path):
  (tmp_path / run_lock.LOCK_NAME).write_text("not json")
  with pytest.raises(ValueError, match=r"locked by process \? on host \?"):
    run_lock.acquire(str(tmp_path))
  assert (tmp_path / run_lock.LOCK_NAME).read_text() == "not json"


def test_urls_are_not_locked():
  assert run_lock.acquire("gs://bucket/run") is None
