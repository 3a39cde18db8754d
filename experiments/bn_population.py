"""BatchNorm population statistics of a trained model ("precise BN").

Flax's BatchNorm keeps an exponential moving average of the batch statistics
seen in training (``ra = m * ra + (1 - m) * batch``). After the last step the
weights no longer move, so the statistics of the final network over the
training data can be computed exactly: the mean over N batches of each
batch's mean and variance (as fast-reid's and detectron2's "precise BN"; the
variance is the mean of the batch variances, without the spread of the batch
means). Flag-free, so tests import it; the command is
`experiments/precise_bn.py`.

Flax exposes a batch's statistics only through the moving-average update, so
they are read back from it: run from running statistics of 0 the update is
(1 - m) * batch, from 1 it is m + (1 - m) * batch, which gives m and the batch
statistics whatever momentum each BatchNorm uses.
"""

from typing import Callable, Iterable

import jax
import jax.numpy as jnp


def batch_statistics(update: Callable, batch_stats, inputs):
  """The batch's own statistics: the tree of `batch_stats`' shape that
  ``update(batch_stats, inputs)`` (one training-mode forward, returning the
  updated moving averages) averages in."""
  from_zero = update(jax.tree.map(jnp.zeros_like, batch_stats), inputs)
  from_one = update(jax.tree.map(jnp.ones_like, batch_stats), inputs)
  # from_zero = (1 - m) b and from_one = m + (1 - m) b, so 1 - m = 1 - (from_one - from_zero).
  return jax.tree.map(lambda z, o: z / (1.0 - (o - z)), from_zero, from_one)


def population_statistics(update: Callable, batch_stats, batches: Iterable):
  """Mean over `batches` (model inputs) of their batch statistics."""
  total, n = None, 0
  for inputs in batches:
    stats = batch_statistics(update, batch_stats, inputs)
    total = stats if total is None else jax.tree.map(jnp.add, total, stats)
    n += 1
  if not n:
    raise ValueError('population_statistics needs at least one batch.')
  return jax.tree.map(lambda t: t / n, total)


def relative_shift(moving, population) -> dict:
  """{'mean', 'var'}: over every BatchNorm channel, the median of
  |moving mean - population mean| / sqrt(population var) and of
  |moving var / population var - 1|: how far the kept averages are from the
  final network's statistics, in units the normalization sees."""
  means, vars_ = [], []

  def visit(m, p):
    if isinstance(m, dict) and 'mean' in m and 'var' in m:
      means.append(jnp.abs(m['mean'] - p['mean']) / jnp.sqrt(p['var'] + 1e-5))
      vars_.append(jnp.abs(m['var'] / (p['var'] + 1e-5) - 1.0))
    elif isinstance(m, dict):
      for k in m:
        visit(m[k], p[k])

  visit(jax.device_get(moving), jax.device_get(population))
  return {'mean': float(jnp.median(jnp.concatenate([x.ravel() for x in means]))),
          'var': float(jnp.median(jnp.concatenate([x.ravel() for x in vars_])))}
