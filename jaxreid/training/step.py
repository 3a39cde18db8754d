"""The jitted, donated train step (big_vision style)."""

import functools
from typing import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax

from jaxreid import losses, sharding
from jaxreid.inference import apply_model, model_inputs, model_variables


def train_step(state, batch, *, loss_weights: Mapping[str, float], loss_options: Mapping,
               schedule: Callable, seed: int, skip_nonfinite: bool = False,
               first_stage_steps: int = 0, first_stage_losses: Sequence[str] = ()):
  """One optimizer step on a global PK batch.

  Args:
    state: a ``TrainState``.
    batch: dict with 'frames' (B, T, H, W, 3) uint8, optionally 'flow'
      (B, T, H, W, 2) float32, and 'pid' (B,) int32 training labels, sharded
      over the data mesh.
    loss_weights: {term: weight}, ``losses.term_weights(config.losses)``.
    loss_options: {term: options}, ``losses.term_options(config.losses)``.
    schedule: the learning-rate schedule (for logging).
    seed: the run's seed; the step's RNG is ``fold_in(key(seed), step)``, so a
      resumed run draws the same dropout masks.
    skip_nonfinite: when the loss or the gradient norm is NaN or infinite,
      keep the parameters, optimizer state and BN statistics of before the
      step (the step counter still advances, so the data order is unchanged).
      Decided on device (``jnp.where``): no host synchronization per step.
    first_stage_steps, first_stage_losses: for steps before
      `first_stage_steps`, the loss is the sum of the `first_stage_losses`
      terms only (two-stage training, ``config.first_stage``; the optimizer
      holds the other parameters still, ``optim.make_optimizer``).
  Returns:
    (new state, dict of float32 scalar metrics). 'nonfinite' is 1.0 when this
    step's loss or gradient norm was not finite (0.0 otherwise).
  """
  rng = jax.random.fold_in(jax.random.key(seed), state.step)
  labels = batch['pid']

  def loss_fn(params):
    outputs, new_model_state = apply_model(
        state.apply_fn, model_variables(params, state.batch_stats), model_inputs(batch),
        train=True, rngs={'dropout': rng}, mutable=['batch_stats'])
    total, terms = losses.total_loss(outputs, labels, loss_weights, loss_options,
                                     model=state.apply_fn)
    if first_stage_steps:
      first = sum(float(loss_weights[name]) * terms[name] for name in first_stage_losses)
      total = jnp.where(state.step < first_stage_steps, first, total)
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
      train_step, loss_weights=losses.term_weights(config.losses),
      loss_options=losses.term_options(config.losses),
      schedule=schedule, seed=config.seed,
      skip_nonfinite=config.skip_nonfinite_steps,
      **first_stage(config))
  return jax.jit(step, donate_argnums=0,
                 in_shardings=(state_sharding, sharding.data_sharding(mesh)),
                 out_shardings=(state_sharding, sharding.replicated(mesh)))


def first_stage(config) -> dict:
  """`train_step`'s two-stage arguments from ``config.first_stage`` ({} when off)."""
  stage = config.get('first_stage')
  if not stage or not stage.steps:
    return {}
  return {'first_stage_steps': int(stage.steps), 'first_stage_losses': tuple(stage.losses)}
