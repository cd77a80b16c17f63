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


@pytest.fixture(scope="session")
def trained_run(tiny_dataset, tmp_path_factory):
  """(config, logdir) of a 4-step ICNet-MobileNetV2 run on tiny_dataset.

  Shared read-only: tests that change the config take a copy.
  """
  from fast_seg.training import train_lib  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  logdir = tmp_path_factory.mktemp("trained_run")
  config = helpers.pipeline_config(helpers.train_pipeline_text(tiny_dataset, num_steps=4))
  train_lib.train(config, str(logdir))
  return config, str(logdir)
