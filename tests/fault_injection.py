"""Runs an entry point with a write fault that CI cannot make for real.

  python tests/fault_injection.py FAULT PATTERN ENTRY [ARGS...]

FAULT is `no_space` (a full disk: ENOSPC) or `read_only` (EACCES); every
write to a path matching the glob PATTERN then fails as the real fault
does, at the lowest level Python reaches: a TensorFlow file (GFile: configs,
SavedModels, frozen graphs, PNGs), a TFRecord shard, a checkpoint (its
`ckpt-N_temp/` folder is left behind, as a full disk leaves it), and an
os.open that creates a file (the writability check). ENTRY is a script
(train.py) or `-m module`.

A real full disk (a small tmpfs) or read-only mount needs root, and root
ignores permission bits; the tests use this instead. Test code only: the
product has no hook for it.
"""

import errno
import fnmatch
import os
import runpy
import sys

import tensorflow as tf
from tensorflow.python.lib.io import file_io  # pylint: disable=no-name-in-module

_ERRORS = {"no_space": (errno.ENOSPC, tf.errors.ResourceExhaustedError),
           "read_only": (errno.EACCES, tf.errors.PermissionDeniedError)}


def _install(fault, pattern):
  """Patches the writers so that writes to `pattern` fail with `fault`."""
  code, tf_error = _ERRORS[fault]
  reason = os.strerror(code)

  def hit(path):
    return fnmatch.fnmatch(os.path.abspath(os.fsdecode(path)), pattern)

  def fail(path):
    raise tf_error(None, None, f"{path}; {reason}")

  original_write = file_io.FileIO.write

  def gfile_write(self, file_content):
    if hit(self.name):
      fail(self.name)
    return original_write(self, file_content)

  file_io.FileIO.write = gfile_write

  class FullRecordWriter(tf.io.TFRecordWriter):

    def __init__(self, path, options=None):
      super().__init__(path, options)
      self.fault_path = path

    def write(self, record):
      if hit(self.fault_path):
        fail(self.fault_path)
      super().write(record)

  tf.io.TFRecordWriter = FullRecordWriter
  original_checkpoint_write = tf.train.Checkpoint._write  # pylint: disable=protected-access

  def checkpoint_write(self, file_prefix, options=None):
    if hit(file_prefix):
      part = f"{file_prefix}_temp/part-00000-of-00001.data-00000-of-00001"
      os.makedirs(os.path.dirname(part), exist_ok=True)
      fail(part + ".tempstate1")
    return original_checkpoint_write(self, file_prefix, options=options)

  tf.train.Checkpoint._write = checkpoint_write  # pylint: disable=protected-access
  original_open = os.open

  def os_open(path, flags, *args, **kwargs):
    if flags & os.O_CREAT and hit(path):
      raise OSError(code, reason, os.fsdecode(path))
    return original_open(path, flags, *args, **kwargs)

  os.open = os_open


def main(argv):
  fault, pattern, entry, *args = argv[1:]
  _install(fault, pattern)
  if entry == "-m":
    module, *args = args
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
  else:
    sys.argv = [entry, *args]
    runpy.run_path(entry, run_name="__main__")


if __name__ == "__main__":
  main(sys.argv)
