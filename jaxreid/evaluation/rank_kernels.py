"""Device kernels of `ranking`: each ranks a block of queries' matches.

`count_block` counts, for each match, the kept gallery items before it (no
sort); `sort_block` sorts whole rows, for queries with very many matches.
Both return the same per-row partial sums, which `ranking` adds up per query
(the algorithm is described in `ranking`'s module docstring).
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _order_keys(dist):
  """int32 keys with the same order and ties as the float32 distances.

  Integer keys let one comparison carry the tie rule: "before item i" is
  ``key < key_i + 1`` (i.e. <=) for lower indices and ``key < key_i`` for
  higher ones. The map flips the magnitude bits of negative floats so that
  signed-int order equals float order; -0.0 is first turned into +0.0 so the
  two zeros tie, as they compare equal. NaN must be rejected separately.
  """
  # (`dist + 0.0` would do, but XLA simplifies it away.)
  dist = jnp.where(dist == 0.0, jnp.float32(0.0), dist)
  bits = lax.bitcast_convert_type(dist, jnp.int32)
  return jnp.where(bits < 0, bits ^ jnp.int32(0x7FFFFFFF), bits)


# Junk items get this key, above every float's (+inf is 0x7F800000), so no
# threshold `key_i (+ 1)` ever counts them as closer.
_JUNK_KEY = np.iinfo(np.int32).max


def _hit_terms(hits, ranks):
  """AP terms of a match that is the `hits`-th one, at 0-based `ranks`.

  Returns:
    (precision at the hit, its trapezoid-rule term), float32, same shape.
    The trapezoid term is (precision one position earlier + precision) / 2,
    the earlier one being 1 at rank 0 (MATLAB's p_old = 1 start).
  """
  hits = hits.astype(jnp.float32)
  ranks_f = ranks.astype(jnp.float32)
  precision = hits / (ranks_f + 1.0)
  precision_before = jnp.where(ranks > 0,
                               (hits - 1.0) / jnp.maximum(ranks_f, 1.0), 1.0)
  return precision, 0.5 * (precision_before + precision)


@jax.jit
def count_block(dist, match_idx, num_matches, loop_start, loop_count,
                 junk_idx, gallery_junk):
  """AP sums and first/last ranks by counting closer items (no sort).

  Each row is a query, or one slice of a query's matches: the row ranks the
  matches ``loop_start .. loop_start + loop_count - 1`` of its query (in
  gallery-index order) and returns partial sums that the host adds up.

  Args:
    dist: (B, G) float32 distances of the rows' queries.
    match_idx: (B, P) int32 gallery indices of all the query's matches,
      padded with G; P is a static bucket >= max(num_matches).
    num_matches: (B,) int32 number of matches of the query.
    loop_start, loop_count: (B,) int32 slice of the matches this row ranks;
      loop_count is 0 for padding rows.
    junk_idx: (B, J) int32 gallery indices of same-pid same-camera items,
      padded with G.
    gallery_junk: (G,) bool, items that are junk for every query.

  Returns:
    dict of (B,) arrays: ap_sum, ap_trapezoid_sum (float32 sums of the
    per-match terms of `_hit_terms`), first_rank, last_rank (int32, min and
    max 0-based rank of the row's matches among kept items), has_nan.
  """
  num_rows, num_gallery = dist.shape
  has_nan = jnp.any(jnp.isnan(dist), axis=1)  # (B,)
  keys = _order_keys(dist)  # (B, G)
  match_keys = jnp.take_along_axis(
      keys, jnp.minimum(match_idx, num_gallery - 1), axis=1)  # (B, P)
  is_match = jnp.arange(match_idx.shape[1])[None] < num_matches[:, None]
  keys = jnp.where(gallery_junk[None], _JUNK_KEY, keys)
  rows = jnp.arange(num_rows)[:, None]
  keys = keys.at[rows, junk_idx].set(_JUNK_KEY, mode='drop')  # (B, G)
  gallery_idx = jnp.arange(num_gallery)[None]  # (1, G)

  def rank_one_match(j, carry):
    ap_sum, trapezoid_sum, first, last = carry
    pos = jnp.minimum(loop_start + j, match_idx.shape[1] - 1)[:, None]
    key_j = jnp.take_along_axis(match_keys, pos, axis=1)  # (B, 1)
    idx_j = jnp.take_along_axis(match_idx, pos, axis=1)  # (B, 1)
    # Before match j: strictly closer, or tied with a lower gallery index.
    # Its 0-based rank among kept items is the number of such kept items.
    before = keys < jnp.where(gallery_idx < idx_j, key_j + 1, key_j)  # (B, G)
    rank_j = jnp.sum(before, axis=1, dtype=jnp.int32)  # (B,)
    earlier = match_keys < jnp.where(match_idx < idx_j, key_j + 1, key_j)
    hit_j = 1 + jnp.sum(earlier & is_match, axis=1, dtype=jnp.int32)
    precision, trapezoid = _hit_terms(hit_j, rank_j)
    active = j < loop_count
    return (ap_sum + jnp.where(active, precision, 0.0),
            trapezoid_sum + jnp.where(active, trapezoid, 0.0),
            jnp.where(active, jnp.minimum(first, rank_j), first),
            jnp.where(active, jnp.maximum(last, rank_j), last))

  zero = jnp.zeros((num_rows,), jnp.float32)
  init = (zero, zero, jnp.full((num_rows,), num_gallery, jnp.int32),
          jnp.full((num_rows,), -1, jnp.int32))
  # Loop only as often as this block's longest row needs. Rows are short
  # (at most _MATCHES_PER_ROW) and grouped by length, so little is wasted.
  ap_sum, trapezoid_sum, first, last = lax.fori_loop(
      0, jnp.max(loop_count), rank_one_match, init)
  return dict(ap_sum=ap_sum, ap_trapezoid_sum=trapezoid_sum, first_rank=first,
              last_rank=last, has_nan=has_nan)


@jax.jit
def sort_block(dist, q_pids, q_camids, g_pids, g_camids, gallery_junk):
  """Same outputs as `count_block` (whole queries), by sorting the rows.

  Args:
    dist: (B, G) float32 distances.
    q_pids, q_camids: (B,) int32 labels of the block's queries.
    g_pids, g_camids: (G,) int32 gallery labels.
    gallery_junk: (G,) bool, items that are junk for every query.

  Returns:
    The dict of `count_block`, over all of each query's matches.
  """
  num_gallery = dist.shape[1]
  has_nan = jnp.any(jnp.isnan(dist), axis=1)
  same_pid = q_pids[:, None] == g_pids[None]  # (B, G)
  same_cam = q_camids[:, None] == g_camids[None]
  junk = (same_pid & same_cam) | gallery_junk[None]
  is_match = same_pid & ~junk
  # A stable sort keeps equal keys in gallery order (the tie rule). Junk
  # stays where it falls; only the order among kept items matters below.
  _, match_sorted, kept_sorted = lax.sort(
      (_order_keys(dist), is_match, ~junk), dimension=1, num_keys=1,
      is_stable=True)
  hits = jnp.cumsum(match_sorted, axis=1, dtype=jnp.int32)  # (B, G)
  ranks = jnp.cumsum(kept_sorted, axis=1, dtype=jnp.int32) - 1
  precision, trapezoid = _hit_terms(hits, ranks)
  return dict(
      ap_sum=jnp.sum(jnp.where(match_sorted, precision, 0.0), axis=1),
      ap_trapezoid_sum=jnp.sum(jnp.where(match_sorted, trapezoid, 0.0),
                               axis=1),
      first_rank=jnp.min(jnp.where(match_sorted, ranks, num_gallery), axis=1),
      last_rank=jnp.max(jnp.where(match_sorted, ranks, -1), axis=1),
      has_nan=has_nan)
