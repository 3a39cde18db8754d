"""A new run's state is compiled with the library's init options
(``setup.INIT_COMPILER_OPTIONS``, faster to compile on CPU) and must be
bitwise the state XLA's default compilation of the same init gives: same
parameters, BN statistics and optimizer state, so no run's numbers change.
MSTN (shrunk): convolutions, BatchNorm, dense and LSTM-style recurrent
initializers in one model."""

import jax
import numpy as np

from experiments import family_configs
from jaxreid import sharding
from jaxreid.training import optim, setup, state as state_lib


def test_initial_state_is_bitwise_the_default_compilation():
  config = family_configs.tiny(family_configs.CONFIGS['mstn'](), data_dir='')
  config.seed = 3
  mesh = sharding.make_mesh()
  state = setup.initial_state(config, 4, mesh)

  model = setup.build_model(config, 4)
  tx, _ = optim.make_optimizer(config, getattr(model, 'new_layers', ()))
  sample = state_lib.sample_input(config.clip_len, config.height, config.width)
  reference = jax.jit(lambda rng: state_lib.create_train_state(model, tx, rng, sample))(
      jax.random.key(3))

  got, want = jax.device_get((state, reference))
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_leaves_with_path(want)]
  assert len(jax.tree.leaves(got)) == len(paths) > 50
  for path, a, b in zip(paths, jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=path)
