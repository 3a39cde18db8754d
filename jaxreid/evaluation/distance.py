"""Query-gallery distance matrices, computed on device in blocks of queries.

The two metrics are torchreid's (``torchreid/metrics/distance.py``):

  * ``'euclidean'``: the *squared* Euclidean distance
    ``||q||^2 + ||g||^2 - 2 q.g`` in float32, without sqrt or clamp. Only the
    order matters for ranking, and squaring keeps it.
  * ``'cosine'``: ``1 - q_hat.g_hat`` where ``x_hat = x / max(||x||, 1e-12)``
    (``F.normalize``'s convention, so all-zero features give distance 1, not
    NaN).

The matrix product runs at ``Precision.HIGHEST`` so that accelerators that
default to bf16/tf32 passes still give float32 distances.

Memory: the gallery lives on the device once; each call of the jitted block
function holds one ``(block_size, G)`` block. ``pairwise_distance`` returns a
host NumPy array; for problems where the full ``(Q, G)`` matrix should never
exist at all, use ``jaxreid.evaluation.ranking.evaluate_features``, which feeds
``distance_block`` straight into the ranking kernel.
"""

import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

METRICS = ('euclidean', 'cosine')

# F.normalize's eps: norms below it are clamped, so zero vectors stay finite.
_NORM_EPS = 1e-12


def check_metric(metric: str) -> None:
  """Raises ValueError unless `metric` is one of METRICS."""
  if metric not in METRICS:
    raise ValueError(
        f'Unknown distance metric {metric!r}; valid choices: {", ".join(METRICS)}.')


def check_features(qf, gf) -> None:
  """Raises ValueError unless qf (Q, D) and gf (G, D) are 2-D with equal D."""
  if qf.ndim != 2 or gf.ndim != 2:
    raise ValueError(
        'Features must be 2-D (num_items, dim); got query shape '
        f'{tuple(qf.shape)} and gallery shape {tuple(gf.shape)}.')
  if qf.shape[1] != gf.shape[1]:
    raise ValueError(
        f'Feature dims differ: query features have dim {qf.shape[1]}, '
        f'gallery features have dim {gf.shape[1]}.')


def _normalize(x: jax.Array) -> jax.Array:
  norm = jnp.linalg.norm(x, axis=1, keepdims=True)  # (N, 1)
  return x / jnp.maximum(norm, _NORM_EPS)


@functools.partial(jax.jit, static_argnames='metric')
def prepare_gallery(gf, metric: str) -> Tuple[jax.Array, jax.Array]:
  """Per-gallery terms computed once and reused by every query block.

  Args:
    gf: (G, D) gallery features.
    metric: one of METRICS.

  Returns:
    (g, g_sqnorm): g is (G, D) float32 (L2-normalised for 'cosine'), g_sqnorm
    is (G,) float32 squared norms (unused by 'cosine').
  """
  g = jnp.asarray(gf, jnp.float32)
  if metric == 'cosine':
    g = _normalize(g)
  return g, jnp.sum(g * g, axis=1)  # (G, D), (G,)


@functools.partial(jax.jit, static_argnames='metric')
def distance_block(qb, g, g_sqnorm, metric: str) -> jax.Array:
  """Distances from a block of queries to the whole gallery.

  Args:
    qb: (B, D) query features.
    g, g_sqnorm: the output of `prepare_gallery` for the same metric.
    metric: one of METRICS.

  Returns:
    (B, G) float32 distances, on device.
  """
  q = jnp.asarray(qb, jnp.float32)
  if metric == 'cosine':
    q = _normalize(q)
  qg = jnp.matmul(q, g.T, precision=jax.lax.Precision.HIGHEST)  # (B, G)
  if metric == 'cosine':
    return 1.0 - qg
  q_sqnorm = jnp.sum(q * q, axis=1)  # (B,)
  return q_sqnorm[:, None] + g_sqnorm[None, :] - 2.0 * qg


def _pad_rows(x: np.ndarray, rows: int) -> np.ndarray:
  """Pads (n, D) to (rows, D) with zero rows, so every block has one shape."""
  if x.shape[0] == rows:
    return x
  return np.concatenate([x, np.zeros((rows - x.shape[0],) + x.shape[1:],
                                     x.dtype)])


def pairwise_distance(qf, gf, metric: str = 'euclidean',
                      block_size: int = 256) -> np.ndarray:
  """Query x gallery distance matrix, computed on device block by block.

  Args:
    qf: (Q, D) query features (NumPy or JAX array).
    gf: (G, D) gallery features.
    metric: 'euclidean' (squared, as torchreid) or 'cosine' (1 - cos).
    block_size: queries per device call. Every call has this static shape (the
      last block is zero-padded), so there is one compilation per
      (block_size, G, D); device memory holds the gallery plus one
      (block_size, G) block.

  Returns:
    (Q, G) float32 NumPy array on the host.

  Raises:
    ValueError: unknown metric, non-2-D features or mismatched feature dims.
  """
  check_metric(metric)
  check_features(qf, gf)
  if block_size < 1:
    raise ValueError(f'block_size must be >= 1, got {block_size}.')
  qf = np.asarray(qf, np.float32)
  num_query = qf.shape[0]
  out = np.empty((num_query, gf.shape[0]), np.float32)  # (Q, G)
  if num_query == 0 or gf.shape[0] == 0:
    return out
  g, g_sqnorm = prepare_gallery(gf, metric)
  block_size = min(block_size, num_query)
  # Keep one block in flight while the previous one is copied back, so the
  # host copy overlaps device work without queueing unbounded device memory.
  pending = None
  for start in range(0, num_query, block_size):
    qb = _pad_rows(qf[start:start + block_size], block_size)
    block = distance_block(qb, g, g_sqnorm, metric)  # (B, G), async
    if pending is not None:
      _copy_block(out, *pending)
    pending = (start, block)
  _copy_block(out, *pending)
  return out


def _copy_block(out: np.ndarray, start: int, block: jax.Array) -> None:
  stop = min(start + block.shape[0], out.shape[0])
  out[start:stop] = np.asarray(block)[:stop - start]
