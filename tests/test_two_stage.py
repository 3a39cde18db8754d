"""Two-stage training (config.first_stage; MSTN's stages): in the first stage
the loss is the first-stage terms alone, the first-stage modules train exactly
as in a run on those terms alone, and every other parameter stays bitwise at
its initialization (no weight decay, no drift); in the second stage the whole
objective counts and those parameters train."""

import functools

import jax
import numpy as np

from experiments import validate
from experiments.configs import mstn_synthetic
from jaxreid import sharding
from jaxreid.models import mstn
from jaxreid.training import optim, setup, state as state_lib, step as step_lib

FIRST = 3


def _config(two_stage=True):
  c = mstn_synthetic.get_config('two_stage')
  c.model.update(backbone='resnet_tiny', backbone_width=8, scale_features=4, cut_features=4,
                 lstm_features=4)
  c.height, c.width, c.clip_len = 32, 16, 2
  c.num_identities, c.num_instances = 4, 2  # 8 clips: one per test device
  c.num_train_steps = 2 * FIRST
  c.schedule.warmup_steps, c.schedule.decay_steps = 0, (1000,)
  if two_stage:
    c.first_stage.steps = FIRST
  else:  # the first stage's objective, one stage
    c.first_stage.steps = 0
    c.losses = {'aux_ce': c.losses.aux_ce.to_dict()}
  return c


def _run(config, steps):
  mesh = sharding.make_mesh()
  tx, schedule = optim.make_optimizer(config)
  init = functools.partial(state_lib.create_train_state, setup.build_model(config, 4), tx,
                           sample=state_lib.sample_input(config.clip_len, config.height,
                                                         config.width))
  abstract = jax.eval_shape(init, jax.random.key(0))
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  state = setup.compile_init(init, state_sh, jax.random.key(0))(jax.random.key(0))
  initial = jax.device_get(state.params)
  train_step = step_lib.make_train_step(config, schedule, state_sh, mesh)
  rng = np.random.default_rng(0)
  history = []
  for _ in range(steps):
    batch = {'frames': rng.integers(0, 256, (8, 2, 32, 16, 3), dtype=np.uint8),
             'pid': np.repeat(np.arange(4), 2).astype(np.int32)}
    state, metrics = train_step(state, sharding.to_global(batch, mesh))
    history.append((jax.device_get(state.params), jax.device_get(metrics)))
  return initial, history


def _changed(a, b):
  return {name: any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a[name]),
                                                            jax.tree.leaves(b[name])))
          for name in a}


def test_first_stage_holds_the_rest_still_then_everything_trains():
  config = _config()
  validate.validate_config(config, uses_dataset=False)
  initial, history = _run(config, 2 * FIRST)
  first_params, _ = history[FIRST - 1]
  for params, metrics in history[:FIRST]:
    np.testing.assert_allclose(metrics['loss'], metrics['loss_aux_ce'], rtol=1e-6)
  moved = _changed(first_params, initial)
  assert {m for m, c in moved.items() if c} == set(mstn.FIRST_STAGE_MODULES)
  # The same first-stage modules as a one-stage run on Loss_c alone.
  _, alone = _run(_config(two_stage=False), FIRST)
  for name in mstn.FIRST_STAGE_MODULES:
    for a, b in zip(jax.tree.leaves(first_params[name]), jax.tree.leaves(alone[-1][0][name])):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  # Second stage: the whole objective, and every module trains.
  for _, metrics in history[FIRST:]:
    whole = sum(float(v) for k, v in metrics.items() if k.startswith('loss_'))
    np.testing.assert_allclose(metrics['loss'], whole, rtol=1e-5)
  assert all(_changed(history[-1][0], first_params).values())


def test_bad_first_stage_is_one_line_each():
  config = _config()
  config.first_stage.losses = ('focal',)
  config.first_stage.steps = 2 * FIRST
  try:
    validate.validate_config(config, uses_dataset=False)
  except validate.ConfigError as e:
    problems = e.problems
  assert any('first_stage.steps=6' in p and 'never reach' in p for p in problems), problems
  assert any("first_stage.losses=('focal',)" in p for p in problems), problems
