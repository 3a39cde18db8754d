"""Guards: a non-finite loss stops the run naming the step and the loss terms,
with a non-zero exit status and the last good checkpoint intact; or, with
config.skip_nonfinite_steps, the step is skipped on device and counted.

The NaN comes from outside the library (``tests/faults.py``): a poisoned batch
on which the 'ce' term is NaN."""

import os
import re
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import faults
from experiments.configs import tiny
from jaxreid import losses, sharding
from jaxreid.training import setup, step as step_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _small_config():
  c = tiny.get_config()
  c.height, c.width, c.clip_len = 32, 16, 2
  return c


def _batch(config, mesh, poisoned=False):
  rng = np.random.default_rng(0)
  b = config.num_identities * config.num_instances
  frames = rng.integers(0, 256, (b, config.clip_len, config.height, config.width, 3), np.uint8)
  pid = np.repeat(np.arange(config.num_identities, dtype=np.int32), config.num_instances)
  batch = {'frames': frames, 'pid': pid}
  return sharding.to_global(faults.poison(batch) if poisoned else batch, mesh)


def test_skipped_step_keeps_state_on_device(tmp_path, monkeypatch):
  faults.poison_loss(losses.LOSS_TERMS, monkeypatch.setitem)
  config = _small_config()
  config.skip_nonfinite_steps = True
  mesh = sharding.make_mesh()
  run = setup.setup_state(config, str(tmp_path), 4, mesh)
  run.checkpointer.close()
  train_step = step_lib.make_train_step(config, run.schedule, run.state_sharding, mesh)
  state = run.state
  before = jax.device_get(state)
  state, metrics = train_step(state, _batch(config, mesh, poisoned=True))
  assert float(metrics['nonfinite']) == 1.0 and not np.isfinite(float(metrics['loss']))
  assert int(state.step) == 1  # the step counter advances (data order unchanged)
  for key in ('params', 'opt_state', 'batch_stats'):
    chex.assert_trees_all_equal(jax.device_get(getattr(state, key)), getattr(before, key))
  state, metrics = train_step(state, _batch(config, mesh))
  assert float(metrics['nonfinite']) == 0.0 and np.isfinite(float(metrics['loss']))
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), jax.device_get(state.params),
                         before.params)
  assert any(jax.tree.leaves(changed))


def _train(workdir, data_dir, *extra):
  """experiments.train on the tiny config, the batch of step 5 poisoned."""
  cmd = [sys.executable, os.path.join(REPO, 'tests', 'train_with_faults.py'),
         '--nan_at_step=5', '--config=experiments/configs/tiny.py',
         f'--workdir={workdir}', f'--config.data_dir={data_dir}',
         '--config.num_train_steps=8', '--config.checkpoint_every_steps=2',
         '--config.log_every_steps=3', *extra]
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')  # 8 devices: conftest.py
  return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_nan_stops_run_and_keeps_last_good_checkpoint(tmp_path, tiny_config):
  workdir = str(tmp_path / 'run')
  proc = _train(workdir, tiny_config.data_dir)
  assert proc.returncode == 1, proc.stderr[-3000:]
  last_line = proc.stderr.strip().splitlines()[-1]
  # Found at the check before the save of step 6 (log lines come every 3 steps);
  # the term that went NaN is named, the others have their values.
  assert re.match(r'error: Non-finite loss or gradient at step 5: .*loss=nan.*'
                  r'loss_ce=nan, loss_triplet=[-0-9.e]+', last_line), last_line
  assert 'the last good checkpoint (step 4) is kept' in last_line
  assert 'skip_nonfinite_steps' in last_line
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  assert sorted(os.listdir(ckpt_dir)) == ['2', '4']
  # The last checkpoint loads, and is finite.
  mesh = sharding.make_mesh()
  tiny_config.num_train_steps = 8
  run = setup.setup_state(tiny_config, workdir, 8, mesh, for_training=False)
  run.checkpointer.close()
  state = run.state
  assert int(state.step) == 4
  assert all(bool(jnp.all(jnp.isfinite(x))) for x in jax.tree.leaves(
      (state.params, state.opt_state, state.batch_stats)))

  # The same command with skipping on resumes from step 4, skips step 5, ends.
  proc = _train(workdir, tiny_config.data_dir, '--config.skip_nonfinite_steps=True')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'at step 4.' in proc.stderr
  assert re.search(r'step 6/\d+ .*skipped_steps=1', proc.stderr), proc.stderr[-3000:]
  assert re.search(r'step 8/\d+ .*skipped_steps=1', proc.stderr)
  assert os.path.exists(os.path.join(workdir, 'eval_results.json'))
