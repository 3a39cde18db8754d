"""The train state: parameters, optimizer state, BatchNorm statistics, step."""

from typing import Any

import jax
import jax.numpy as jnp
from flax.training import train_state


class TrainState(train_state.TrainState):
  """Flax's TrainState plus the ``batch_stats`` collection of BatchNorm."""
  batch_stats: Any = None


def create_train_state(model, tx, rng, sample_frames) -> TrainState:
  """Initializes `model` on `sample_frames` (1, T, H, W, 3) uint8.

  Meant to run under ``jax.jit(..., out_shardings=...)`` (or ``jax.eval_shape``
  for the abstract state) so parameters are created in place on the devices.
  """
  variables = model.init({'params': rng, 'dropout': rng}, sample_frames, train=False)
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           batch_stats=variables.get('batch_stats', {}))


def sample_input(clip_len: int, height: int, width: int):
  """The (1, T, H, W, 3) uint8 array models are initialized with."""
  return jnp.zeros((1, clip_len, height, width, 3), jnp.uint8)
