"""The jitted, donated train step (big_vision style) and the eval forward."""

import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from jaxreid import losses
from jaxreid.training import sharding


# Batch keys a model takes (docs/design.md, "Data contract" and "Model
# contract"): 'frames' positionally,
# the optional ones as keyword arguments only when the batch has them, so
# models without optical flow keep the plain ``(frames, train)`` signature.
MODEL_INPUT_KEYS = ('frames', 'flow')


def _variables(params, batch_stats):
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {'params': params}


def model_inputs(batch: Mapping) -> dict:
  """The entries of `batch` the model consumes ('frames', and 'flow' if present)."""
  return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


def apply_model(apply_fn, variables, inputs: Mapping, **kwargs):
  """``apply_fn(variables, frames, [flow=...], **kwargs)`` from an inputs dict."""
  extra = {k: v for k, v in inputs.items() if k != 'frames'}
  return apply_fn(variables, inputs['frames'], **extra, **kwargs)


def mirror_inputs(inputs: Mapping) -> dict:
  """Horizontal mirror of a clip: frames flipped along W; optical flow flipped
  along W with its horizontal component (channel 0) negated."""
  mirrored = {'frames': inputs['frames'][:, :, :, ::-1]}  # (B, T, H, W, 3)
  if 'flow' in inputs:
    flow = inputs['flow'][:, :, :, ::-1]  # (B, T, H, W, 2): (dx, dy)
    mirrored['flow'] = flow * jnp.array([-1.0, 1.0], flow.dtype)
  return mirrored


def train_step(state, batch, *, loss_weights: Mapping[str, float], loss_options: Mapping,
               schedule: Callable, seed: int, skip_nonfinite: bool = False,
               debug_nan_at_step: int = -1):
  """One optimizer step on a global PK batch.

  Args:
    state: a ``TrainState``.
    batch: dict with 'frames' (B, T, H, W, 3) uint8, optionally 'flow'
      (B, T, H, W, 2) float32, and 'pid' (B,) int32 training labels, sharded
      over the data mesh.
    loss_weights: ``config.losses``.
    loss_options: ``config.loss_options``.
    schedule: the learning-rate schedule (for logging).
    seed: the run's seed; the step's RNG is ``fold_in(key(seed), step)``, so a
      resumed run draws the same dropout masks.
    skip_nonfinite: when the loss or the gradient norm is NaN or infinite,
      keep the parameters, optimizer state and BN statistics of before the
      step (the step counter still advances, so the data order is unchanged).
      Decided on device (``jnp.where``): no host synchronization per step.
    debug_nan_at_step: test hook; the loss of this step, counted as the logs
      count (1 = the first step, ``state.step + 1``), is made NaN, and so are
      its gradients.
  Returns:
    (new state, dict of float32 scalar metrics). 'nonfinite' is 1.0 when this
    step's loss or gradient norm was not finite (0.0 otherwise).
  """
  rng = jax.random.fold_in(jax.random.key(seed), state.step)
  labels = batch['pid']

  def loss_fn(params):
    outputs, new_model_state = apply_model(
        state.apply_fn, _variables(params, state.batch_stats), model_inputs(batch), train=True,
        rngs={'dropout': rng}, mutable=['batch_stats'])
    total, terms = losses.total_loss(outputs, labels, loss_weights, loss_options)
    if debug_nan_at_step >= 0:
      total = total * jnp.where(state.step + 1 == debug_nan_at_step, jnp.nan, 1.0)
    return total, (terms, new_model_state, outputs)

  (total, (terms, new_model_state, outputs)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  new_state = state.apply_gradients(
      grads=grads, batch_stats=new_model_state.get('batch_stats', state.batch_stats))
  grad_norm = optax.tree.norm(grads)
  finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
  if skip_nonfinite:
    # Select, leaf by leaf, the old state where the step went bad; the step
    # counter advances either way.
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state,
                             state).replace(step=new_state.step)
  metrics = {'loss': total, **{f'loss_{k}': v for k, v in terms.items()},
             'grad_norm': grad_norm,
             'learning_rate': schedule(state.step),
             'nonfinite': 1.0 - finite.astype(jnp.float32)}
  if 'logits' in outputs:
    metrics['accuracy'] = jnp.mean(jnp.argmax(outputs['logits'], -1) == labels)
  return new_state, metrics


def make_train_step(config, schedule, state_sharding, mesh):
  """Compiles `train_step` once: state donated, batch sharded, metrics replicated."""
  step = functools.partial(
      train_step, loss_weights=dict(config.losses), loss_options=dict(config.loss_options),
      schedule=schedule, seed=config.seed,
      skip_nonfinite=config.get('skip_nonfinite_steps', False),
      debug_nan_at_step=config.get('debug_nan_at_step', -1))
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(state_sharding, sharding.data_sharding(mesh)),
                 out_shardings=(state_sharding, sharding.replicated(mesh)))


def make_embed_fn(mesh, flip: bool = False):
  """Jitted eval forward: inputs {'frames': (B, T, H, W, 3), ['flow']} ->
  embeddings (B, D), gathered to every device (and so to every process) for
  ranking.

  With `flip`, the embedding is the mean of those of the clip and of its
  horizontal mirror (flip test-time augmentation; `mirror_inputs`).

  Extra batch-sharded arguments (e.g. the rows' 'tracklet' and 'mask') are
  returned gathered too, ``(emb, *extras)``: with several processes each feeds
  only its own rows, and every process needs all of them to rank.
  """

  def embed(state, inputs, *extras):
    variables = _variables(state.params, state.batch_stats)
    if not isinstance(inputs, Mapping):  # a bare frames array
      inputs = {'frames': inputs}
    emb = apply_model(state.apply_fn, variables, inputs, train=False)['embedding']
    emb = emb.astype(jnp.float32)
    if flip:
      mirrored = apply_model(state.apply_fn, variables, mirror_inputs(inputs),
                             train=False)['embedding']
      emb = 0.5 * (emb + mirrored.astype(jnp.float32))
    return (emb, *extras) if extras else emb

  return jax.jit(embed, out_shardings=sharding.replicated(mesh))
