"""What every train-step benchmark builds first: the state on a mesh and the
library's compiled train step (the same code `experiments.train` runs)."""

import jax

from jaxreid import sharding
from jaxreid.training import optim, setup, state as state_lib, step as step_lib


def init_train_step(config, mesh, clip_len: int, num_classes: int):
  """Initializes the configured model's state replicated on `mesh` and jits
  its train step. Returns (model, state, train_step)."""
  model = setup.build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config)
  sample = state_lib.sample_input(clip_len, config.height, config.width,
                                  flow=config.use_flow)
  init = lambda rng: state_lib.create_train_state(model, tx, rng, sample)
  abstract = jax.eval_shape(init, jax.random.key(0))
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  state = jax.jit(init, out_shardings=state_sh)(jax.random.key(0))
  return model, state, step_lib.make_train_step(config, schedule, state_sh, mesh)
