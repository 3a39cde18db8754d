"""What every train-step benchmark builds first: the state on a mesh and the
library's compiled train step (the same code `experiments.train` runs)."""

import statistics
import time

import jax
import numpy as np

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
  rng = jax.random.key(0)
  abstract = jax.eval_shape(init, rng)
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  state = setup.compile_init(init, state_sh, rng)(rng)
  return model, state, step_lib.make_train_step(config, schedule, state_sh, mesh)


def random_batch(config, mesh, clips: int, clip_len: int, num_classes: int, seed: int = 0):
  """A random global batch of the shapes `config` trains on, on `mesh`: uint8
  'frames' (clips, T, H, W, 3), int32 'pid' (clips,), and for CRF random
  optical flow (clips, T, H, W, 2). Returns (host numpy dict, device dict)."""
  rng = np.random.default_rng(seed)
  host = {'frames': rng.integers(0, 256, (clips, clip_len, config.height, config.width, 3),
                                 dtype=np.uint8),
          'pid': rng.integers(0, num_classes, clips).astype(np.int32)}
  if config.use_flow:
    host['flow'] = rng.normal(size=(clips, clip_len, config.height, config.width,
                                    2)).astype(np.float32)
  return host, sharding.to_global(dict(host), mesh)


def median_step_seconds(step_fn, state, batch, repeats: int):
  """Runs `state, metrics = step_fn(state, batch)` `repeats` times, waiting for
  each step, and returns (state, median seconds of one step). The caller has
  already run the compiling (warm-up) step."""
  times = []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    state, metrics = step_fn(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return state, statistics.median(times)
