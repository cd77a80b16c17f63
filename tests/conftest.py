"""Shared fixtures: a tiny synthetic dataset written once per session."""

import pytest

from fast_seg.data import synthetic


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
  """Directory with train-*.tfrecord (16 images) and val-*.tfrecord (6), 64x64."""
  data_dir = tmp_path_factory.mktemp("synthetic")
  synthetic.write_dataset(str(data_dir), num_train=16, num_val=6, size=64,
                          seed=3, num_shards=2)
  return data_dir
