"""Writing outputs so that a failed or stopped write leaves nothing behind.

A full disk, a read-only folder, Ctrl-C or SIGTERM can stop any write half
way. The commands then say what happened in one line naming the path
(`write_problem`, used by cli.run) and leave either the complete earlier
file or none, never a half-written one that the next command would read as
complete:

  write_atomically   one file, written beside its place and renamed in;
  staged_folder      a folder of files (an export), built beside the
                     earlier one and moved in only when complete;
  removed_on_failure the files a command writes into a folder it shares
                     with earlier results (compress.py), removed again if
                     it fails or is stopped.

Checkpoints have their own (checkpoint_util.save).
"""

import contextlib
import errno
import os
import re
import shutil
import tempfile

import tensorflow as tf

PARTIAL_SUFFIX = ".partial"

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
# TensorFlow's file system errors read "<path>; <strerror>", after a
# "{{function_node ...}}" prefix when an op (SaveV2) raised them.
_TF_FILE_ERROR = re.compile(r"^(?:\{\{function_node [^}]*\}\}\s*)?(.+?); ([^;\[]+)")
# The temporary names files are written under (TensorFlow's .tmp<hex> and
# ckpt-N_temp/part-..., our .partial): the user knows the final one.
_TEMPORARY_NAME = re.compile(
    r"(\.tmp[0-9a-f]{32}|\.tempstate\d+|_temp/part-[^/]*|\.partial)$")
_TF_NO_SPACE = "No space left on device"
_TF_NOT_WRITABLE = ("Permission denied", "Read-only file system")


def write_problem(error, path=None):
  """What a failed write means for the user, naming the path; or None.

  Args:
    error: an exception; OSErrors and TensorFlow OpErrors can be write
      problems.
    path: the path to name instead of the one the error carries.

  Returns:
    "no space left on <path>", "<path> is not writable (<reason>)", or
    None when `error` is not about space or permissions (a bug or another
    fault, which keeps its traceback) or names no path.
  """
  where, reason, no_space = _what_failed(error)
  where = path or where
  if reason is None or where is None:
    return None
  if no_space:
    return f"no space left on {where}"
  return f"{where} is not writable ({reason})"


def _what_failed(error):
  """(path or None, reason, whether the disk is full) of a write problem;
  (None, None, False) for any other error."""
  if isinstance(error, OSError) and error.errno in _NO_SPACE + _NOT_WRITABLE:
    where = error.filename and _TEMPORARY_NAME.sub("", error.filename)
    return (where, error.strerror or os.strerror(error.errno),
            error.errno in _NO_SPACE)
  match = (_TF_FILE_ERROR.match(str(error.message).strip())
           if isinstance(error, tf.errors.OpError) else None)
  reason = match.group(2).strip() if match else ""
  if reason.startswith((_TF_NO_SPACE, *_TF_NOT_WRITABLE)):
    return (_TEMPORARY_NAME.sub("", match.group(1)), reason,
            reason.startswith(_TF_NO_SPACE))
  return None, None, False


def check_writable(path):
  """Raises the OSError of creating a file in `path`, or its nearest
  existing parent folder when `path` does not exist yet.

  Asked before any work, so that a read-only folder fails at once and not
  after the work that was to be saved there. A real file is created and
  removed: permission bits alone do not tell (a read-only mount, root).
  """
  if "://" in path:
    return  # a remote file system (gs://): no local probe
  folder = os.path.abspath(path)
  while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
    folder = os.path.dirname(folder)
  try:
    handle, probe = tempfile.mkstemp(prefix=".write_check_", dir=folder)
  except OSError as e:
    raise OSError(e.errno, e.strerror, folder) from None
  os.close(handle)
  os.remove(probe)


def remove(path):
  """Removes a file or a folder tree if it is there."""
  if tf.io.gfile.isdir(path):
    tf.io.gfile.rmtree(path)
  elif tf.io.gfile.exists(path):
    tf.io.gfile.remove(path)


@contextlib.contextmanager
def write_atomically(path, mode="w"):
  """Yields a file that becomes `path` when the block ends without error.

  It is written as `path`.partial and renamed over `path`, so a reader
  sees the earlier file or the complete new one; on a failure or an
  interrupt the partial file is removed.

  Raises:
    ValueError: no space left for `path` or its folder not writable.
  """
  partial = path + PARTIAL_SUFFIX
  try:
    with tf.io.gfile.GFile(partial, mode) as f:
      yield f
    tf.io.gfile.rename(partial, path, overwrite=True)
  except BaseException as e:
    remove(partial)
    problem = write_problem(e, path)
    if problem is None:
      raise
    raise ValueError(problem) from None


def staging_folder(output_dir):
  """The folder staged_folder builds `output_dir`'s new files in."""
  return os.path.join(output_dir, os.path.basename(
      os.path.normpath(output_dir)) + PARTIAL_SUFFIX)


@contextlib.contextmanager
def staged_folder(output_dir, names, last):
  """Yields a staging folder whose files replace `output_dir`'s at the end.

  The block writes into the staging folder (inside `output_dir`, so the
  moves are renames on one file system). Only when it ends without error
  are the earlier files of `names` removed from `output_dir` (`last`
  first) and the new ones moved in (`last` last): `last` is the marker of
  a complete folder. A failure or an interrupt removes the staging folder
  and leaves `output_dir` as it was; a staging folder left by a killed
  run is removed first.

  Args:
    output_dir: the destination; other files in it are kept.
    names: the file and folder names the block may write.
    last: the name among `names` written and moved last.
  """
  staging = staging_folder(output_dir)
  remove(staging)
  tf.io.gfile.makedirs(staging)
  try:
    yield staging
  except BaseException as e:
    remove(staging)
    problem = write_problem(e)
    if problem is None:
      raise
    # Named where the file was going: the staging folder is gone.
    raise ValueError(problem.replace(staging, output_dir)) from None
  ordered = [n for n in names if n != last] + [last]
  for name in reversed(ordered):
    remove(os.path.join(output_dir, name))
  for name in ordered:
    source = os.path.join(staging, name)
    if tf.io.gfile.exists(source):
      tf.io.gfile.rename(source, os.path.join(output_dir, name))
  remove(staging)


def _files_under(directory):
  """{path: (size, mtime_ns)} of every file under `directory`."""
  files = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      stat = os.stat(path, follow_symlinks=False)
      files[path] = (stat.st_size, stat.st_mtime_ns)
  return files


def _folders_under(directory):
  return {root for root, _, _ in os.walk(directory)}


@contextlib.contextmanager
def removed_on_failure(directory):
  """Removes what the block wrote into `directory` if it fails or is stopped.

  Files that are new or changed since the block began are removed, and so
  are the folders it made (`directory` too if it made it); files that were
  there before and untouched are kept. A command that writes many files
  into a folder it shares with earlier results thus leaves no mix of
  complete and half-written ones.
  """
  files, folders = _files_under(directory), _folders_under(directory)
  try:
    yield
  except BaseException:
    for path, stat in _files_under(directory).items():
      if files.get(path) != stat:
        os.remove(path)
    for folder in sorted(_folders_under(directory) - folders, reverse=True):
      shutil.rmtree(folder, ignore_errors=True)
    raise
