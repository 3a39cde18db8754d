"""Test setup: 8 simulated CPU devices, so data-parallel code runs as on a host
with 8 accelerators. Must run before JAX initializes its backend; subprocesses
started with this environment get the same 8 devices.

One persistent XLA compilation cache for the whole test session, in a fresh
temporary folder shared by the xdist workers and the training subprocesses
(they inherit the environment) and deleted at the end: most of a tiny
training run is compiling, and many tests compile the same programs (the
resume test runs one command five times). Never reused across sessions, so a
stale entry cannot leak in. A JAX_COMPILATION_CACHE_DIR set by the user wins.
"""

import os
import shutil
import tempfile

os.environ.setdefault('JAX_PLATFORMS', 'cpu')  # read when JAX is imported
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
_OWN_CACHE = None
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:  # this is the first pytest process
  _OWN_CACHE = tempfile.mkdtemp(prefix='jaxreid-tests-xla-cache-')
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _OWN_CACHE
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0'
  os.environ['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] = '0'

# pylint: disable=g-import-not-at-top,wrong-import-position
import chex
import pytest
# pylint: enable=g-import-not-at-top,wrong-import-position

chex.set_n_cpu_devices(8)


def pytest_unconfigure(config):
  if _OWN_CACHE and not hasattr(config, 'workerinput'):  # the process that made it
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


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
