"""The train state: parameters, optimizer state, BatchNorm statistics, step."""

from typing import Any

import jax.numpy as jnp
from flax.training import train_state


class TrainState(train_state.TrainState):
  """Flax's TrainState plus the ``batch_stats`` collection of BatchNorm."""
  batch_stats: Any = None


def create_train_state(model, tx, rng, sample) -> TrainState:
  """Initializes `model` on `sample`: (1, T, H, W, 3) uint8 frames, or a dict
  of model inputs ({'frames': ..., 'flow': ...}, see ``sample_input``).

  Meant to run under ``jax.jit(..., out_shardings=...)`` (or ``jax.eval_shape``
  for the abstract state) so parameters are created in place on the devices.
  """
  if not isinstance(sample, dict):
    sample = {'frames': sample}
  extra = {k: v for k, v in sample.items() if k != 'frames'}
  variables = model.init({'params': rng, 'dropout': rng}, sample['frames'], train=False,
                         **extra)
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx,
                           batch_stats=variables.get('batch_stats', {}))


def sample_input(clip_len: int, height: int, width: int, flow: bool = False) -> dict:
  """The model inputs models are initialized with: 'frames' (1, T, H, W, 3)
  uint8 and, with `flow`, 'flow' (1, T, H, W, 2) float32 (docs/design.md,
  "Data contract")."""
  sample = {'frames': jnp.zeros((1, clip_len, height, width, 3), jnp.uint8)}
  if flow:
    sample['flow'] = jnp.zeros((1, clip_len, height, width, 2), jnp.float32)
  return sample
