"""Test setup: 8 simulated CPU devices, so data-parallel code runs as on a host
with 8 accelerators. Must run before JAX initializes its backend; subprocesses
started with this environment get the same 8 devices."""

import os

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # read when JAX is imported
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
import chex
import pytest
# pylint: enable=g-import-not-at-top,wrong-import-position

chex.set_n_cpu_devices(8)


@pytest.fixture(scope='session')
def tiny_data_dir(tmp_path_factory):
  """A TFDS data_dir holding the prepared 'tiny' synthetic dataset."""
  from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  datasets.prepare('synthetic_video_reid', 'tiny', data_dir=data_dir)
  return data_dir


@pytest.fixture
def tiny_config(tiny_data_dir):
  """experiments/configs/tiny.py reading the session's prepared dataset."""
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data_dir = tiny_data_dir
  return config
