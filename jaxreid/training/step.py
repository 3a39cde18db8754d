"""The jitted, donated train step (big_vision style) and the eval forward."""

import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from jaxreid import losses
from jaxreid.training import sharding


def _variables(params, batch_stats):
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {'params': params}


def train_step(state, batch, *, loss_weights: Mapping[str, float], loss_options: Mapping,
               schedule: Callable, seed: int):
  """One optimizer step on a global PK batch.

  Args:
    state: a ``TrainState``.
    batch: dict with 'frames' (B, T, H, W, 3) uint8 and 'pid' (B,) int32
      training labels, sharded over the data mesh.
    loss_weights: ``config.losses``.
    loss_options: ``config.loss_options``.
    schedule: the learning-rate schedule (for logging).
    seed: the run's seed; the step's RNG is ``fold_in(key(seed), step)``, so a
      resumed run draws the same dropout masks.
  Returns:
    (new state, dict of float32 scalar metrics).
  """
  rng = jax.random.fold_in(jax.random.key(seed), state.step)
  labels = batch['pid']

  def loss_fn(params):
    outputs, new_model_state = state.apply_fn(
        _variables(params, state.batch_stats), batch['frames'], train=True,
        rngs={'dropout': rng}, mutable=['batch_stats'])
    total, terms = losses.total_loss(outputs, labels, loss_weights, loss_options)
    return total, (terms, new_model_state, outputs)

  (total, (terms, new_model_state, outputs)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=new_model_state.get('batch_stats', state.batch_stats))
  metrics = {'loss': total, **{f'loss_{k}': v for k, v in terms.items()},
             'grad_norm': optax.tree.norm(grads),
             'learning_rate': schedule(state.step)}
  if 'logits' in outputs:
    metrics['accuracy'] = jnp.mean(jnp.argmax(outputs['logits'], -1) == labels)
  return new_state, metrics


def make_train_step(config, schedule, state_sharding, mesh):
  """Compiles `train_step` once: state donated, batch sharded, metrics replicated."""
  step = functools.partial(
      train_step, loss_weights=dict(config.losses), loss_options=dict(config.loss_options),
      schedule=schedule, seed=config.seed)
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(state_sharding, sharding.data_sharding(mesh)),
                 out_shardings=(state_sharding, sharding.replicated(mesh)))


def make_embed_fn(mesh, flip: bool = False):
  """Jitted eval forward: frames (B, T, H, W, 3) -> embeddings (B, D), gathered
  to every device (and so to every process) for ranking.

  With `flip`, the embedding is the mean of those of the clip and of its
  horizontal mirror (flip test-time augmentation).
  """

  def embed(state, frames):
    variables = _variables(state.params, state.batch_stats)
    emb = state.apply_fn(variables, frames, train=False)['embedding'].astype(jnp.float32)
    if flip:
      mirrored = state.apply_fn(variables, frames[:, :, :, ::-1], train=False)['embedding']
      emb = 0.5 * (emb + mirrored.astype(jnp.float32))
    return emb

  return jax.jit(embed, out_shardings=sharding.replicated(mesh))
