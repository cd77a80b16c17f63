"""One writer per output folder: a lock file holding its owner's pid and host.

Two training runs on one --logdir both "succeed" while overwriting each
other's ckpt-N, pipeline.config and train_time.json; the second must refuse
instead. The lock is a file in the folder (not an flock, which network
filesystems do not all honour and which says nothing about who holds it),
created atomically (a hard link of a complete temp file, which fails if the
lock exists) and removed on every exit path of its `with` block.

A run killed with SIGKILL (or a crashed machine) leaves its lock behind. On
the same host a lock whose process is gone is stale and is taken over with
one line saying so, so resuming a crashed run needs nothing by hand; a lock
from another host cannot be checked from here, and the error names the host,
the pid and the file to delete once that run is known to be over. Paths
with a scheme (gs://...) are not locked.
"""

import contextlib
import json
import os
import socket
import time

LOCK_NAME = "train.lock"


def _alive(pid):
  """Whether process `pid` exists on this host."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by another user
    return True
  return True


def _stale(holder):
  """A lock of this host whose process is gone."""
  pid = holder.get("pid")
  return (holder.get("host") == socket.gethostname()
          and isinstance(pid, int) and not _alive(pid))


def _read(path):
  """The lock's owner dict, or None when it vanished or is not ours to read."""
  try:
    with open(path, encoding="utf-8") as f:
      owner = json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}
  return owner if isinstance(owner, dict) else {}


def _create(path, owner):
  """Writes `owner` to `path` atomically; False if `path` already exists."""
  temp = f"{path}.{owner['pid']}.tmp"
  with open(temp, "w", encoding="utf-8") as f:
    json.dump(owner, f)
  try:
    os.link(temp, path)
    return True
  except FileExistsError:
    return False
  finally:
    os.remove(temp)


def _refusal(path, owner, flag):
  """The error for a lock held by a live process or another host."""
  who = (f"process {owner.get('pid', '?')} on host {owner.get('host', '?')}"
         f", since {owner.get('started', '?')}")
  if owner.get("host") == socket.gethostname():
    return (f"{flag} {os.path.dirname(path)} is in use by another run "
            f"({who}; lock {path}); wait for it to end or give another "
            f"{flag}")
  return (f"{flag} {os.path.dirname(path)} is locked by {who} ({path}); this "
          "host cannot tell whether that run still goes on: if it does not, "
          f"delete {path} and start again")


def acquire(directory, flag="--logdir", log=print):
  """Locks `directory` (created if missing) for this process.

  Args:
    directory: the output folder.
    flag: how the user named it, for messages.
    log: called with the line that says a stale lock was taken over.

  Returns:
    The owner dict written (for `release`), or None for an unlockable path.

  Raises:
    ValueError: another live run on this host, or any run on another host,
      holds the lock.
  """
  if "://" in directory:
    return None
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, LOCK_NAME)
  owner = {"pid": os.getpid(), "host": socket.gethostname(),
           "started": time.strftime("%Y-%m-%d %H:%M:%S")}
  while not _create(path, owner):
    holder = _read(path)
    if holder is None:  # released meanwhile: try again
      continue
    if not _stale(holder):
      raise ValueError(_refusal(path, holder, flag))
    # Another starter may have taken it over since we read it: remove only
    # the lock we judged stale.
    if _read(path) == holder:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
      log(f"{flag} {directory}: taking over the lock of process "
          f"{holder['pid']}, which is no longer running ({path})")
  return owner


def release(directory, owner):
  """Removes the lock of `directory` if `owner` (acquire's result) holds it."""
  if owner is None:
    return
  path = os.path.join(directory, LOCK_NAME)
  if _read(path) == owner:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


@contextlib.contextmanager
def held(directory, flag="--logdir", log=print):
  """`acquire` for the body, `release` on every way out of it.

  A folder that the lock created and the body left empty (a run refused
  before writing anything) is removed with it.
  """
  created = "://" not in directory and not os.path.isdir(directory)
  owner = acquire(directory, flag, log)
  try:
    yield owner
  finally:
    release(directory, owner)
    if created:
      with contextlib.suppress(OSError):  # not empty: the run's output
        os.rmdir(directory)
