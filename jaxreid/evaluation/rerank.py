"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), computed on device.

Z. Zhong, L. Zheng, D. Cao, S. Li, "Re-ranking Person Re-identification with
k-reciprocal Encoding", CVPR 2017. Defaults are the paper's: k1 = 20, k2 = 6,
lambda = 0.3. The steps follow the authors' reference Python code
(``re_ranking(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value)``, the
version taken over by torchreid as ``torchreid/utils/rerank.py``); with
N = Q + G:

  1. ``D`` is the (N, N) matrix ``[[q_q, q_g], [q_g^T, g_g]]``. Each *column*
     is divided by its maximum and the result transposed:
     ``d = (D / D.max(axis=0)).T``, so row i of ``d`` is column i of ``D``
     over its max (for symmetric q_q and g_g: row i over its own max).
  2. ``initial_rank``: each row of ``d`` sorted ascending.
  3. ``R(i, k) = {j in top_{k+1}(i) : i in top_{k+1}(j)}`` (top_{k+1} includes
     the item itself), the k-reciprocal set.
  4. Expansion: for every candidate ``c`` in ``R(i, k1)``, the set
     ``R(c, round(k1 / 2))`` (NumPy's round-half-to-even, so k1 = 5 gives 2)
     is added to ``R(i, k1)`` if ``|R(c, k1/2) & R(i, k1)| > 2/3 |R(c, k1/2)|``.
     Call the union ``E(i)``.
  5. ``V[i, j] = exp(-d[i, j]) / sum_{j' in E(i)} exp(-d[i, j'])`` for j in
     E(i), else 0. Every row of V sums to 1.
  6. Local query expansion (skipped when k2 == 1, as in the reference):
     ``V[i] <- mean of V[n] over the k2 first entries n of initial_rank[i]``.
  7. Jaccard distance ``1 - m / (2 - m)`` with
     ``m[i, j] = sum_k min(V[i, k], V[j, k])``.
  8. ``final = jaccard * (1 - lambda) + d * lambda``, query rows x gallery
     columns.

Input distances. The reference ``re_ranking`` squares its input first
(``original_dist = np.power(original_dist, 2)``): it expects plain Euclidean
distances and makes them squared ones, as the paper's (Mahalanobis-form)
distance and the authors' feature-based version (``cdist(...)**2``) use.
jaxreid's ``'euclidean'`` metric is already squared, so `rerank` takes the
distances as they are by default; ``square_input=True`` reproduces the
reference exactly on the same input. (torchreid feeds its already-squared
distmat to ``re_ranking``, so torchreid numbers with re-ranking correspond to
``square_input=True`` on jaxreid's squared distances.)

Host / device split. Everything after the input checks runs in jitted JAX on
the default device; the host only assembles the (N, N) input, reads back one
scalar (the largest number of non-zeros in a query row of V, which fixes the
static width of the Jaccard step) and copies the (Q, G) result back.

  * Steps 1-2: dense; ranks by ``lax.top_k`` of ``-d`` over the first
    ``max(k1 + 1, k2)`` columns only (ties: lower index first, as a stable
    argsort; -0.0 and +0.0 tie).
  * Steps 3-4 need no sets: a dense boolean "is in top_{k+1}" matrix ``A``
    gives reciprocity of every (i, top_{k+1}(i)[a]) pair by one gather
    (``A[j, i]``); the overlap ``|R(c, k1/2) & R(i, k1)|`` of each candidate
    is a gather of ``R(i, k1)``'s dense mask at the (N, k1+1, k1/2+1) indices
    of the candidates' sets, and the expansion is one scatter of those
    indices. Cost O(N^2 + N k1^2), all fixed shapes.
  * Steps 5-6: dense (N, N); the query expansion sums k2 gathered rows of V
    (O(k2 N^2), rather than an (N, N) x (N, N) averaging matmul).
  * Step 7, for query rows x gallery columns only: V is sparse (a row has
    ~|E| k2 non-zeros, a few hundred with the defaults), and the minimum
    with a zero is zero, so ``m[i, :]`` only needs the columns where
    ``V[i]`` is non-zero, as the reference's inverted index does. Each query
    row's non-zero columns are padded to a common width P (the largest count,
    rounded up to a power of two, at most N); a block of B queries gathers
    the (G, B, P) gallery values at those columns and reduces the
    element-wise minimum over P. The padding entries point at columns where
    the query's V is zero, so they add nothing.

Complexity and size limits. Time O(k2 N^2 + N k1^2 + Q G P) plus the top-k
(O(N^2) for k1 << N). P <= N; with the defaults it is a few hundred, so the
Jaccard step costs ~Q G P rather than the naive Q G N (for MARS, Q = 1980,
G = 9330: ~1e10 min-adds instead of ~2e11). Memory is dominated by a handful
of dense (N, N) arrays (distances, V and its expansion, masks), roughly
20 N^2 bytes at the peak: ~2 MB for N ~ 300 (iLIDS-VID / PRID-2011 test
splits), ~2.6 GB for MARS (N = 11310; the caller also holds the (G, G)
input), ~32 GB for N = 40k. Dense re-ranking is meant for N up to ~10-20k;
beyond that, split the gallery or use a sparse implementation. The Jaccard
step holds one (G, B, P) block, with B chosen so that it stays under
`_JACCARD_BLOCK_ELEMENTS` (64 MB of float32).

Ties. Equal distances are ranked by index, lowest first; the reference uses
NumPy's default (unstable) argsort, so on tied distances the neighbour sets,
and hence the numbers, can differ from it. Without ties the results agree
with the reference to float32 rounding (summation order).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxreid.evaluation import distance as distance_lib

# Upper bound on the elements of one (G, B, P) block in the Jaccard step.
_JACCARD_BLOCK_ELEMENTS = 1 << 24


def _half_k(k1: int) -> int:
  """The reference's ``int(np.around(k1 / 2.))``: round half to even."""
  return int(np.around(k1 / 2.0))


def _check_params(k1, k2, lambda_value) -> None:
  for name, k in (('k1', k1), ('k2', k2)):
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
      raise ValueError(f'{name} must be an integer >= 1, got {k!r}.')
  if not 0.0 <= float(lambda_value) <= 1.0:
    raise ValueError(
        f'lambda_value must be in [0, 1], got {lambda_value!r}.')


def _check_blocks(q_g, q_q, g_g) -> None:
  """Raises ValueError unless the blocks are (Q, G), (Q, Q), (G, G)."""
  if q_g.ndim != 2 or q_g.shape[0] < 1 or q_g.shape[1] < 1:
    raise ValueError(
        'q_g_dist must be a non-empty 2-D (num_query, num_gallery) matrix; '
        f'got shape {tuple(q_g.shape)}.')
  num_query, num_gallery = q_g.shape
  if tuple(q_q.shape) != (num_query, num_query):
    raise ValueError(
        f'q_q_dist must have shape (Q, Q) = {(num_query, num_query)} to match '
        f'q_g_dist {tuple(q_g.shape)}; got {tuple(q_q.shape)}.')
  if tuple(g_g.shape) != (num_gallery, num_gallery):
    raise ValueError(
        f'g_g_dist must have shape (G, G) = {(num_gallery, num_gallery)} to '
        f'match q_g_dist {tuple(q_g.shape)}; got {tuple(g_g.shape)}.')


# ----------------------------------------------------------------------------
# Device kernels.
# ----------------------------------------------------------------------------


def _reciprocal(top, num_items):
  """k-reciprocal masks of top-(k+1) lists.

  Args:
    top: (N, K) int32, row i holds top_{k+1}(i) (K = min(k + 1, N)).
    num_items: N.

  Returns:
    (recip, dense): recip (N, K) bool, recip[i, a] iff i is in
    top_{k+1}(top[i, a]); dense (N, N) bool, the sets R(i, k) as masks.
  """
  rows = jnp.arange(num_items)[:, None]  # (N, 1)
  in_top = jnp.zeros((num_items, num_items), jnp.bool_)
  in_top = in_top.at[rows, top].set(True)  # (N, N): j in top_{k+1}(i)
  recip = in_top[top, rows]  # (N, K): i in top_{k+1}(top[i, a])
  dense = jnp.zeros((num_items, num_items), jnp.bool_)
  dense = dense.at[rows, top].set(recip)  # indices within a row are distinct
  return recip, dense


@functools.partial(jax.jit, static_argnames=('num_query', 'k1', 'k_top'))
def _encode(dist, square_input, k2, num_query: int, k1: int, k_top: int):
  """Steps 1-6: normalised distances and (expanded) k-reciprocal vectors V.

  Only k1 and the ranking width are static, so one compilation serves every
  k2 <= k1 + 1 and both input conventions.

  Args:
    dist: (N, N) float32, [[q_q, q_g], [q_g^T, g_g]].
    square_input: () bool, square `dist` first, as the reference does.
    k2: () int32 query-expansion size, 1 <= k2 (clipped to N).
    num_query: Q.
    k1: k-reciprocal neighbourhood size.
    k_top: ranking width, min(N, max(k1 + 1, k2)).

  Returns:
    (orig, v, nnz): orig (Q, G) float32 normalised query-gallery distances;
    v (N, N) float32 encodings (after query expansion); nnz () int32, the
    largest number of non-zeros in a query row of v.
  """
  num_items = dist.shape[0]
  dist = jnp.where(square_input, dist * dist, dist)
  # XLA turns `x / broadcast(m)` into `x * broadcast(1 / m)`, which is off by
  # an ulp; the barrier keeps a true division, so `d` (hence the ranking) is
  # bit-identical to the reference's NumPy division.
  col_max = lax.optimization_barrier(
      jnp.broadcast_to(jnp.max(dist, axis=0, keepdims=True), dist.shape))
  d = (dist / col_max).T  # (N, N)

  k_full = min(num_items, k1 + 1)
  k_half = min(num_items, _half_k(k1) + 1)
  neg = -d
  neg = jnp.where(neg == 0.0, jnp.float32(0.0), neg)  # -0.0 and +0.0 tie
  _, top = lax.top_k(neg, k_top)  # (N, k_top), ascending distance

  # Step 3: R(i, k1) and R(c, k1/2) (prefixes of the same ranking).
  top_full = top[:, :k_full]  # (N, K)
  recip, r_dense = _reciprocal(top_full, num_items)  # (N, K), (N, N)
  top_half = top[:, :k_half]  # (N, Kh)
  recip_half, _ = _reciprocal(top_half, num_items)  # (N, Kh)
  half_size = jnp.sum(recip_half, axis=1, dtype=jnp.int32)  # (N,)

  # Step 4: for candidate c = top_full[i, a] in R(i, k1), its half set's
  # members are cand_idx[i, a, b] where cand_mask[i, a, b].
  cand_idx = top_half[top_full]  # (N, K, Kh)
  cand_mask = recip_half[top_full]  # (N, K, Kh)
  rows = jnp.arange(num_items)[:, None, None]  # (N, 1, 1)
  overlap = jnp.sum(cand_mask & r_dense[rows, cand_idx], axis=2,
                    dtype=jnp.int32)  # (N, K)
  # |overlap| > 2/3 |R(c, k1/2)| in integers (same as the reference's float64
  # test for any set size that fits in memory).
  accept = recip & (3 * overlap > 2 * half_size[top_full])  # (N, K)
  added = jnp.zeros((num_items, num_items), jnp.int32)
  added = added.at[rows, cand_idx].add(
      (accept[:, :, None] & cand_mask).astype(jnp.int32))  # (N, N)
  expanded = r_dense | (added > 0)  # (N, N) E(i)

  # Step 5: Gaussian-kernel weights over E(i), rows normalised to sum 1.
  weight = jnp.where(expanded, jnp.exp(-d), 0.0)  # (N, N)
  total = jnp.sum(weight, axis=1, keepdims=True)  # (N, 1)
  v = weight / jnp.where(total > 0, total, 1.0)  # an empty E(i) gives 0s

  # Step 6: local query expansion over the k2 first neighbours.
  # Skipped for k2 == 1, as in the reference (top[:, 0] need not be i).
  k_qe = jnp.minimum(k2, num_items)

  def add_neighbour(b, v_sum):
    return v_sum + v[lax.dynamic_index_in_dim(top, b, axis=1,
                                              keepdims=False)]  # (N, N)

  v_sum = lax.fori_loop(1, k_qe, add_neighbour, v[top[:, 0]])
  v = jnp.where(k2 == 1, v, v_sum / k_qe.astype(jnp.float32))

  nnz = jnp.max(jnp.sum(v[:num_query] != 0, axis=1, dtype=jnp.int32))
  orig = d[:num_query, num_query:]  # (Q, G)
  return orig, v, nnz


@functools.partial(jax.jit, static_argnames=('width',))
def _nonzero_columns(v_query, width: int):
  """(B, width) int32 column indices, each row's non-zeros first.

  The rest of a row's indices point at columns where it is zero, so they add
  nothing to a min-sum.
  """
  _, idx = lax.top_k((v_query != 0).astype(jnp.float32), width)
  return idx


@jax.jit
def _final_block(v_query, idx, v_gallery, orig, lambda_value):
  """Steps 7-8 for one block of queries.

  Args:
    v_query: (B, N) float32 encodings of the block's queries.
    idx: (B, P) int32 columns covering every non-zero of v_query's rows.
    v_gallery: (G, N) float32 encodings of the gallery.
    orig: (B, G) float32 normalised distances.
    lambda_value: () float32 weight of the original distance.

  Returns:
    (B, G) float32 final distances.
  """
  q_vals = jnp.take_along_axis(v_query, idx, axis=1)  # (B, P)
  g_vals = v_gallery[:, idx]  # (G, B, P)
  min_sum = jnp.sum(jnp.minimum(q_vals[None], g_vals), axis=2).T  # (B, G)
  jaccard = 1.0 - min_sum / (2.0 - min_sum)
  return jaccard * (1.0 - lambda_value) + orig * lambda_value


# ----------------------------------------------------------------------------
# Public API.
# ----------------------------------------------------------------------------


def rerank(q_g_dist, q_q_dist, g_g_dist, k1: int = 20, k2: int = 6,
           lambda_value: float = 0.3, *, square_input: bool = False
           ) -> np.ndarray:
  """k-reciprocal re-ranked query-gallery distances (see the module doc).

  Args:
    q_g_dist: (Q, G) query-gallery distances (NumPy or JAX).
    q_q_dist: (Q, Q) query-query distances.
    g_g_dist: (G, G) gallery-gallery distances.
    k1: size of the k-reciprocal neighbourhood (paper: 20).
    k2: size of the local query expansion; 1 disables it (paper: 6).
    lambda_value: weight of the original distance, in [0, 1] (paper: 0.3);
      1 returns the normalised original distances.
    square_input: square the distances first, as the reference
      ``re_ranking`` does (it expects plain Euclidean distances). Leave False
      for distances that are already squared Euclidean (jaxreid's and
      torchreid's 'euclidean') or for cosine distances.

  Returns:
    (Q, G) float32 NumPy array of re-ranked distances (smaller = closer).

  Raises:
    ValueError: inconsistent block shapes, k1 or k2 not an integer >= 1,
      lambda_value outside [0, 1], non-finite distances, or a column of the
      combined matrix whose maximum is <= 0 (normalisation undefined).
  """
  _check_params(k1, k2, lambda_value)
  # C-contiguous float32 once (no copy if they already are), so strided views,
  # Fortran order, other dtypes and JAX arrays all take one path below.
  q_g = np.ascontiguousarray(q_g_dist, dtype=np.float32)
  q_q = np.ascontiguousarray(q_q_dist, dtype=np.float32)
  g_g = np.ascontiguousarray(g_g_dist, dtype=np.float32)
  _check_blocks(q_g, q_q, g_g)
  num_query, num_gallery = q_g.shape
  dist = np.block([[q_q, q_g], [q_g.T, g_g]])  # (N, N)
  if not np.all(np.isfinite(dist)):
    raise ValueError('Distances must be finite (found NaN or inf).')
  col_max = np.max(dist * dist if square_input else dist, axis=0)  # (N,)
  if np.any(col_max <= 0):
    bad = int(np.argmax(col_max <= 0))
    raise ValueError(
        f'Column {bad} of the combined (Q + G) distance matrix has maximum '
        f'{col_max[bad]} <= 0, so it cannot be normalised by its maximum.')

  num_items = dist.shape[0]
  orig, v, nnz = _encode(jnp.asarray(dist), jnp.bool_(square_input),
                         jnp.int32(min(k2, num_items)), num_query=num_query,
                         k1=int(k1), k_top=min(num_items, max(k1 + 1, k2)))
  # Static width of the Jaccard gather: a power of two (few compilations).
  width = min(num_items, 1 << max(0, int(nnz) - 1).bit_length())
  block = max(1, min(num_query,
                     _JACCARD_BLOCK_ELEMENTS // (num_gallery * width)))
  v_query = v[:num_query]  # (Q, N)
  v_gallery = v[num_query:]  # (G, N)
  lam = jnp.float32(lambda_value)
  out = np.empty((num_query, num_gallery), np.float32)  # (Q, G)
  for start in range(0, num_query, block):
    stop = min(start + block, num_query)
    vq = v_query[start:stop]
    oq = orig[start:stop]
    if stop - start < block:  # Zero-pad so every call has one shape.
      vq = jnp.pad(vq, ((0, block - (stop - start)), (0, 0)))
      oq = jnp.pad(oq, ((0, block - (stop - start)), (0, 0)))
    idx = _nonzero_columns(vq, width)  # (B, P)
    res = _final_block(vq, idx, v_gallery, oq, lam)
    out[start:stop] = np.asarray(res)[:stop - start]
  return out


def rerank_features(qf, gf, metric: str = 'euclidean', **kwargs) -> np.ndarray:
  """Re-ranked distances straight from features.

  Computes the three distance blocks with
  `jaxreid.evaluation.distance.pairwise_distance` ('euclidean' is squared,
  so no ``square_input`` is needed; 'cosine' is 1 - cos) and calls `rerank`.

  Args:
    qf: (Q, D) query features.
    gf: (G, D) gallery features.
    metric: one of `jaxreid.evaluation.distance.METRICS`.
    **kwargs: k1, k2, lambda_value, square_input, passed to `rerank`.

  Returns:
    (Q, G) float32 NumPy array of re-ranked distances.

  Raises:
    ValueError: as `pairwise_distance` and `rerank`.
  """
  distance_lib.check_metric(metric)
  distance_lib.check_features(qf, gf)
  q_g = distance_lib.pairwise_distance(qf, gf, metric)  # (Q, G)
  q_q = distance_lib.pairwise_distance(qf, qf, metric)  # (Q, Q)
  g_g = distance_lib.pairwise_distance(gf, gf, metric)  # (G, G)
  return rerank(q_g, q_q, g_g, **kwargs)
