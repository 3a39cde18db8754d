"""The jitted train step: data parallel over 8 CPU devices equals one device;
the loss goes down on a fixed batch, with the old state donated; the step and
the embedding forward compile once for a run (no retracing)."""

import functools

import chex
import jax
import numpy as np
import pytest

from experiments.configs import tiny
from jaxreid import inference, sharding
from jaxreid.training import optim, setup, state as state_lib, step as step_lib


def _setup(config, devices, num_classes=4):
  mesh = sharding.make_mesh(devices)
  model = setup.build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config)
  init = functools.partial(state_lib.create_train_state, model, tx,
                           sample=state_lib.sample_input(config.clip_len, config.height,
                                                                config.width))
  abstract = jax.eval_shape(init, jax.random.key(0))
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  state = setup.compile_init(init, state_sh, jax.random.key(0))(jax.random.key(0))
  return mesh, state, step_lib.make_train_step(config, schedule, state_sh, mesh)


def _batch(config, seed=0):
  rng = np.random.default_rng(seed)
  b = config.num_identities * config.num_instances
  return {'frames': rng.integers(0, 256, (b, config.clip_len, config.height, config.width, 3),
                                 dtype=np.uint8),
          'pid': np.repeat(np.arange(config.num_identities), config.num_instances).astype(np.int32)}


@pytest.fixture
def config():
  c = tiny.get_config()
  c.num_identities, c.num_instances = 4, 4  # 16 clips: 2 per device on 8 devices
  c.height, c.width, c.clip_len = 32, 16, 2
  return c


def test_eight_devices_match_one_device(config):
  assert jax.device_count() == 8, 'tests/conftest.py should give 8 CPU devices'
  results = []
  for devices in (jax.devices()[:1], jax.devices()):
    mesh, state, train_step = _setup(config, devices)
    losses = []
    for s in range(3):
      state, metrics = train_step(state, sharding.to_global(_batch(config, s), mesh))
      losses.append(float(metrics['loss']))
    results.append((losses, jax.device_get(state.params), jax.device_get(state.batch_stats)))
  (loss1, params1, stats1), (loss8, params8, stats8) = results
  np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
  # BN statistics are global-batch statistics, not per-device ones.
  chex.assert_trees_all_close(stats8, stats1, rtol=1e-4, atol=1e-5)
  chex.assert_trees_all_close(params8, params1, rtol=1e-4, atol=1e-5)


def test_loss_decreases_on_a_fixed_batch(config):
  config.learning_rate = 3e-3
  config.schedule.warmup_steps = 0
  config.schedule.decay_steps = (1000,)
  mesh, state, train_step = _setup(config, jax.devices())
  batch = _batch(config)
  donated = jax.tree.leaves(state.params)
  first = None
  for _ in range(25):
    state, metrics = train_step(state, sharding.to_global(batch, mesh))
    first = first if first is not None else float(metrics['loss'])
  assert float(metrics['loss']) < 0.5 * first, (first, float(metrics['loss']))
  assert int(state.step) == 25
  assert all(x.is_deleted() for x in donated), 'the step should donate the old state'


def test_train_step_and_embedding_trace_once_over_several_calls(config, monkeypatch):
  """What the loop and the evaluation run, call after call with new batches of
  the same shape, compiles once: a retrace would mean a compile per step."""
  chex.clear_trace_counter()
  monkeypatch.setattr(step_lib, 'train_step', chex.assert_max_traces(step_lib.train_step, n=1))
  monkeypatch.setattr(inference, 'embed', chex.assert_max_traces(inference.embed, n=1))
  mesh, state, train_step = _setup(config, jax.devices())
  for s in range(3):
    state, _ = train_step(state, sharding.to_global(_batch(config, s), mesh))
  assert int(state.step) == 3
  embed_fn = inference.make_embed_fn(mesh, flip=True)
  b = config.num_identities * config.num_instances
  for s in range(3):
    glob = sharding.to_global({**inference.model_inputs(_batch(config, 10 + s)),
                               'tracklet': np.arange(b, dtype=np.int32),
                               'mask': np.ones(b, bool)}, mesh)
    emb, tracklet, _ = embed_fn(state, {'frames': glob['frames']}, glob['tracklet'],
                                glob['mask'])
    chex.assert_shape(emb, (b, None))
    np.testing.assert_array_equal(tracklet, np.arange(b))


def test_batch_not_divisible_by_devices_is_a_clear_error():
  mesh = sharding.make_mesh(jax.devices())
  with pytest.raises(ValueError, match='not divisible by the 8 devices'):
    sharding.check_batch_divisible(12, mesh, 'config.num_identities * config.num_instances')
