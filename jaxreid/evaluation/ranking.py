"""Re-ID ranking metrics (CMC, mAP, mINP) computed on device, in query blocks.

Protocols (``PROTOCOLS``):

  * ``'torchreid'`` (default): torchreid's ``eval_market1501``. For each query,
    gallery items with the same pid *and* the same camera are removed; the
    matches are the remaining items with the same pid (pid 0 distractors are
    ordinary negatives, and so is every other label). A query with no match
    left is skipped: it counts in neither the CMC nor the mAP denominator.
    ``CMC_i[k] = 1`` iff the first match is at rank <= k (0-based);
    ``AP_i = sum_k match_k * precision@k / num_matches`` (non-interpolated).
  * ``'mars_official'``: the MARS MATLAB code (``evaluation_mars.m`` and
    ``compute_AP.m``). The caller passes all test tracklets, queries included,
    as the gallery. Junk, ignored in the ranking, is every gallery item with
    pid -1 plus the items with the query's pid and camera (so the query
    itself). AP is the trapezoid rule ``ap += (r - r_old) * (p_old + p) / 2``
    over the non-junk ranked list, with ``p_old`` starting at 1; since
    precision changes at every position but recall only at hits, each hit at
    0-based rank ``r`` that is the ``h``-th hit adds
    ``((h - 1) / r + h / (r + 1)) / (2 * num_good)`` (with ``(h-1)/r := 1``
    at ``r = 0``). Queries without any good item are skipped (on MARS there are
    none; MATLAB would produce NaN for them).
  * ``'with_query_in_gallery'``: AP3D / TCLNet style. The queries are put in
    front of the gallery (``gf = cat(qf, gf)``), then torchreid's rules apply
    (the query itself is removed as same pid & same camera). With
    ``evaluate_rank`` the caller passes ``distmat`` of shape ``(Q, Q + G)``
    whose first ``Q`` columns are query-to-query distances, and the *original*
    gallery labels (length G); ``evaluate_rank`` prepends the query labels.
    ``evaluate_features`` builds the extended gallery itself.

mINP is fast-reid's: over valid queries, the mean of
``num_matches / (rank of the last match + 1)``.

Ties. Items at exactly equal float32 distance are ranked by gallery column
index, lowest first (as a stable sort of each row would); -0.0 and +0.0 tie.
torchreid sorts with NumPy's default quicksort, which leaves the order of
ties unspecified, so on tied distances its numbers can differ from these.
Distances are cast to float32 (as torchreid's Cython ranker does); +-inf is
allowed (it ties with itself), NaN raises ValueError.

Algorithm. No row is sorted on the default path. From the labels alone the
host lists, per query, its matches and its same-pid same-camera junk. On
device each distance becomes an int32 key with the same order (junk gets a
key above every distance), and for each match one fused pass over the row
counts the kept items before it (``key < key_j``, or ``key == key_j`` with a
lower index): that count is the match's 0-based rank ``r_j`` among kept
items. Comparing the match keys among themselves gives its hit number
``h_j``, and CMC (``min r_j``), AP (``mean h_j / (r_j + 1)``), the trapezoid
AP and mINP (from ``max r_j``) follow in closed form. The cost is
(number of matches) x G per query instead of a G log G sort. A block loops
as often as its longest row, so a query's matches are cut into rows of at
most ``match_lists._MATCHES_PER_ROW`` and rows are grouped by length; the host adds the
rows' partial sums back up per query. Queries with more than
``SORT_MIN_MATCHES`` matches (e.g. a pid-0 query against thousands of
distractors) use a stable sort of their rows instead, which computes the
same quantities.

Memory. At most two device calls are in flight, each holding one
``(block_size, G)`` distance block, its int32 keys and
O(block_size x max_matches) bookkeeping, whatever Q is. ``evaluate_rank``
takes a full ``(Q, G)`` matrix from the caller (NumPy, kept on the host, or a
JAX array); ``evaluate_features`` computes each block's distances on device
from features, so a ``(Q, G)`` matrix never exists anywhere.
"""

import functools
import logging
from typing import Callable, Dict

import jax
import jax.numpy as jnp
import numpy as np

from jaxreid.evaluation import distance as distance_lib
from jaxreid.evaluation import match_lists, rank_kernels

PROTOCOLS = ('torchreid', 'mars_official', 'with_query_in_gallery')
METHODS = ('auto', 'count', 'sort')

# Gallery pid that the official MARS protocol treats as junk.
MARS_JUNK_PID = match_lists.MARS_JUNK_PID

# Above this many matches per query, one pass over the row per match costs
# more than sorting the row (measured on CPU, where XLA's sort is slow; it is
# a fallback for degenerate label sets, not the MARS path).
SORT_MIN_MATCHES = 1024

_LOG = logging.getLogger(__name__)

BlockFn = Callable[[np.ndarray], jax.Array]


def _as_labels(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 1:
    raise ValueError(f'{name} must be 1-D, got shape {x.shape}.')
  if x.size and not np.issubdtype(x.dtype, np.integer):
    raise ValueError(f'{name} must hold integers, got dtype {x.dtype}.')
  info = np.iinfo(np.int32)
  if x.size and (x.min() < info.min or x.max() > info.max):
    raise ValueError(f'{name} must fit in int32.')
  return x.astype(np.int32)


def _check_choice(value: str, choices, what: str) -> None:
  if value not in choices:
    raise ValueError(f'Unknown {what} {value!r}; valid choices: {", ".join(choices)}.')


# ----------------------------------------------------------------------------
# Driver.
# ----------------------------------------------------------------------------


def _run_blocks(block_fn: BlockFn, q_pids, q_camids, g_pids, g_camids,
                protocol: str, block_size: int, method: str):
  """Runs the kernels over every query that has a match.

  Returns:
    (num_matches (Q,), dict of (Q,) NumPy arrays: ap_sum, ap_trapezoid_sum,
    first_rank, last_rank; queries without matches keep the initial values).
  """
  num_query, num_gallery = len(q_pids), len(g_pids)
  drop_junk_pid = protocol == 'mars_official'
  gallery_junk = (g_pids == MARS_JUNK_PID) if drop_junk_pid else np.zeros(
      num_gallery, bool)
  matches, junk = match_lists.match_and_junk_lists(q_pids, q_camids, g_pids, g_camids,
                                        drop_junk_pid)
  num_matches = matches.counts
  valid = np.flatnonzero(num_matches > 0)  # queries without one are skipped
  if method == 'auto':
    use_sort = num_matches[valid] > SORT_MIN_MATCHES
  else:
    use_sort = np.full(len(valid), method == 'sort')
  count_queries, sort_queries = valid[~use_sort], valid[use_sort]
  row_query, row_start, row_count = match_lists.split_rows(count_queries, num_matches)
  # One static width per call, so a dataset compiles `rank_kernels.count_block` once.
  match_width = match_lists.bucket(num_matches[count_queries].max(initial=0))
  junk_width = match_lists.bucket(junk.counts[count_queries].max(initial=0))

  gallery_junk_dev = jnp.asarray(gallery_junk)
  g_pids_dev, g_camids_dev = jnp.asarray(g_pids), jnp.asarray(g_camids)
  per_query = {
      'ap_sum': np.zeros(num_query),
      'ap_trapezoid_sum': np.zeros(num_query),
      'first_rank': np.full(num_query, num_gallery, np.int64),
      'last_rank': np.full(num_query, -1, np.int64),
  }
  has_nan = False

  def pad(x, fill):
    return np.concatenate([x, np.full(block_size - len(x), fill, x.dtype)])

  def launch_count(rows):
    # Padding rows repeat a real query and rank nothing (loop_count 0).
    queries = pad(row_query[rows], row_query[rows][0])
    return rank_kernels.count_block(
        block_fn(queries), matches.pack(queries, match_width, num_gallery),
        num_matches[queries].astype(np.int32),
        pad(row_start[rows], 0).astype(np.int32),
        pad(row_count[rows], 0).astype(np.int32),
        junk.pack(queries, junk_width, num_gallery), gallery_junk_dev)

  def launch_sort(rows):
    queries = pad(sort_queries[rows], sort_queries[rows][0])
    return rank_kernels.sort_block(block_fn(queries), q_pids[queries], q_camids[queries],
                       g_pids_dev, g_camids_dev, gallery_junk_dev)

  def collect(queries, out):
    nonlocal has_nan
    out = jax.device_get(out)
    n = len(queries)
    has_nan |= bool(out['has_nan'][:n].any())
    # A query split over several rows gets the sum / min / max of its rows.
    np.add.at(per_query['ap_sum'], queries, out['ap_sum'][:n])
    np.add.at(per_query['ap_trapezoid_sum'], queries,
              out['ap_trapezoid_sum'][:n])
    np.minimum.at(per_query['first_rank'], queries, out['first_rank'][:n])
    np.maximum.at(per_query['last_rank'], queries, out['last_rank'][:n])

  # At most two blocks are in flight: the device works on one while the host
  # prepares the next, and device memory stays at about two blocks.
  pending = None
  for num_rows, launch, row_queries in (
      (len(row_query), launch_count, row_query),
      (len(sort_queries), launch_sort, sort_queries)):
    for start in range(0, num_rows, block_size):
      rows = np.arange(start, min(start + block_size, num_rows))
      out = launch(rows)
      if pending is not None:
        collect(*pending)
      pending = (row_queries[rows], out)
  if pending is not None:
    collect(*pending)
  if has_nan:
    raise ValueError('The distance matrix contains NaN; ranks are undefined.')
  return num_matches, per_query


def _aggregate(num_matches, per_query, *, max_rank: int, protocol: str,
               num_gallery: int) -> Dict[str, object]:
  """CMC, mAP and mINP over valid queries, in torchreid's output format."""
  valid = num_matches > 0
  num_valid = int(valid.sum())
  if num_valid == 0:
    raise ValueError('No query has a match in the gallery (all query '
                     'identities are missing from it); nothing to evaluate.')
  n = num_matches[valid]
  first = per_query['first_rank'][valid]
  # cmc[k] = fraction of valid queries whose first match has rank <= k.
  first_hist = np.bincount(np.minimum(first, max_rank), minlength=max_rank + 1)
  cmc = (np.cumsum(first_hist[:max_rank]) / num_valid).astype(np.float32)
  ap_key = 'ap_trapezoid_sum' if protocol == 'mars_official' else 'ap_sum'
  ap = np.full(len(num_matches), np.nan)
  ap[valid] = per_query[ap_key][valid] / n
  inp = n / (per_query['last_rank'][valid] + 1.0)  # fast-reid's INP
  return {
      'cmc': cmc,
      'mAP': float(np.mean(ap[valid])),
      'mINP': float(np.mean(inp)),
      'num_valid_queries': num_valid,
      'num_skipped_queries': int(len(num_matches) - num_valid),
      'num_query': int(len(num_matches)),
      'num_gallery': int(num_gallery),
      'max_rank': int(max_rank),
      'protocol': protocol,
      'ap_per_query': ap.astype(np.float32),
      # 1-based rank of each query's first true match, 0 for skipped ones
      'first_match_rank': np.where(valid, per_query['first_rank'] + 1, 0).astype(np.int32),
  }


def _prepare_labels(q_pids, g_pids, q_camids, g_camids, protocol: str):
  q_pids, q_camids = _as_labels(q_pids, 'q_pids'), _as_labels(q_camids,
                                                               'q_camids')
  g_pids, g_camids = _as_labels(g_pids, 'g_pids'), _as_labels(g_camids,
                                                              'g_camids')
  if len(q_pids) != len(q_camids) or len(g_pids) != len(g_camids):
    raise ValueError(
        f'Label lengths differ: {len(q_pids)} q_pids vs {len(q_camids)} '
        f'q_camids, {len(g_pids)} g_pids vs {len(g_camids)} g_camids.')
  if protocol == 'with_query_in_gallery':
    # AP3D's order: queries first, then the gallery (`gf = cat(qf, gf)`).
    g_pids = np.concatenate([q_pids, g_pids])
    g_camids = np.concatenate([q_camids, g_camids])
  return q_pids, g_pids, q_camids, g_camids


def _clamp_max_rank(max_rank: int, num_gallery: int) -> int:
  if max_rank < 1:
    raise ValueError(f'max_rank must be >= 1, got {max_rank}.')
  if num_gallery < max_rank:
    # torchreid prints a note and clamps the same way.
    _LOG.warning('Gallery has only %d items; clamping max_rank from %d to %d.',
                 num_gallery, max_rank, num_gallery)
    return num_gallery
  return max_rank


def _evaluate(block_fn: BlockFn, labels, *, max_rank: int, protocol: str,
              block_size: int, method: str) -> Dict[str, object]:
  q_pids, g_pids, q_camids, g_camids = labels
  if block_size < 1:
    raise ValueError(f'block_size must be >= 1, got {block_size}.')
  max_rank = _clamp_max_rank(max_rank, len(g_pids))
  block_size = max(1, min(block_size, len(q_pids)))
  num_matches, per_query = _run_blocks(block_fn, q_pids, q_camids, g_pids,
                                       g_camids, protocol, block_size, method)
  return _aggregate(num_matches, per_query, max_rank=max_rank,
                    protocol=protocol, num_gallery=len(g_pids))


def evaluate_rank(distmat, q_pids, g_pids, q_camids, g_camids,
                  max_rank: int = 50, protocol: str = 'torchreid',
                  block_size: int = 64,
                  method: str = 'auto') -> Dict[str, object]:
  """CMC, mAP and mINP of a query x gallery distance matrix.

  Args:
    distmat: (Q, G) distances, smaller = more similar (NumPy or JAX array,
      any layout, e.g. a column slice; cast to float32 once, a host array
      copied once unless it is already C-contiguous float32). For 'with_query_in_gallery' it is (Q, Q + G): the
      first Q columns are distances to the queries themselves, then the
      gallery, i.e. the distances to ``concatenate([qf, gf])``.
    q_pids, q_camids: (Q,) int query labels.
    g_pids, g_camids: (G,) int gallery labels (for 'with_query_in_gallery',
      the gallery without the queries; they are prepended here).
    max_rank: CMC length; clamped to the gallery size, with a logged warning
      and the value used in the result's 'max_rank'.
    protocol: one of PROTOCOLS (see the module docstring).
    block_size: rows per device call; a row is a query, or a slice of
      ``match_lists._MATCHES_PER_ROW`` of its matches. Device memory is about two
      (block_size, G) blocks (plus `distmat` itself if it is a JAX array).
      The default suits CPUs (a block stays in cache); accelerators like
      larger blocks.
    method: 'auto' (count, and sort for queries with more than
      SORT_MIN_MATCHES matches), 'count' or 'sort'. All give the same numbers.

  Returns:
    dict with
      cmc: (max_rank,) float32, cmc[k] = fraction of valid queries whose first
        match is within the top k + 1.
      mAP, mINP: floats in [0, 1].
      num_valid_queries, num_skipped_queries, num_query, num_gallery (columns
        ranked, including appended queries and junk), max_rank (after
        clamping): ints.
      protocol: the protocol name.
      ap_per_query: (Q,) float32 AP of each query, NaN for skipped ones.
      first_match_rank: (Q,) int32 1-based rank of each query's first true
        match, 0 for skipped ones.

  Raises:
    ValueError: unknown protocol or method, inconsistent shapes, NaN
      distances, or no query with a match.
  """
  _check_choice(protocol, PROTOCOLS, 'protocol')
  _check_choice(method, METHODS, 'method')
  labels = _prepare_labels(q_pids, g_pids, q_camids, g_camids, protocol)
  num_query, num_gallery = len(labels[0]), len(labels[1])
  if not isinstance(distmat, jax.Array):
    distmat = np.asarray(distmat)
    if (distmat.ndim == 2 and distmat.flags.f_contiguous and
        not distmat.flags.c_contiguous):
      # Column-major (what `distmat[:, keep]` returns): its transpose is
      # C-contiguous, so one plain device_put and one on-device transpose
      # (tiled by XLA) replace a host transposing copy, 2-4x slower.
      distmat = jnp.asarray(distmat.T, jnp.float32).T
  if distmat.ndim != 2 or tuple(distmat.shape) != (num_query, num_gallery):
    extra = (' (with_query_in_gallery expects the query columns first, then '
             'the gallery)' if protocol == 'with_query_in_gallery' else '')
    raise ValueError(
        f'distmat has shape {tuple(distmat.shape)}, expected '
        f'({num_query}, {num_gallery}) from the labels{extra}.')

  if isinstance(distmat, jax.Array):
    dist_dev = distmat.astype(jnp.float32)
    block_fn = lambda rows: jnp.take(dist_dev, rows, axis=0)
  else:
    # One conversion here, so every layout and dtype takes the same path:
    # each block gathers whole rows, and a row of a column-major or
    # column-sliced matrix (`distmat[:, keep]` is Fortran-ordered) has its
    # G entries G cache lines apart, which made the per-block gathers 20-30x
    # slower than the ranking itself. A C-contiguous float32 matrix is used
    # as is (no copy); anything else is copied once, in float32.
    distmat = np.ascontiguousarray(distmat, dtype=np.float32)
    # Only the block's rows are copied and sent to the device.
    block_fn = lambda rows: np.take(distmat, rows, axis=0)
  return _evaluate(block_fn, labels, max_rank=max_rank, protocol=protocol,
                   block_size=block_size, method=method)


def evaluate_features(qf, gf, q_pids, g_pids, q_camids, g_camids,
                      metric: str = 'euclidean', max_rank: int = 50,
                      protocol: str = 'torchreid', block_size: int = 64,
                      method: str = 'auto') -> Dict[str, object]:
  """Like `evaluate_rank`, from features; no (Q, G) matrix is ever built.

  Each block's distances (`distance.distance_block`) go straight into the
  ranking kernel, so memory is the gallery features plus a few
  (block_size, G) blocks, whatever Q is. For 'with_query_in_gallery' the
  query features are prepended to the gallery here.

  Args:
    qf: (Q, D) query features; gf: (G, D) gallery features.
    metric: 'euclidean' (squared) or 'cosine', as `pairwise_distance`.
    Other arguments: as `evaluate_rank`.

  Returns:
    The same dict as `evaluate_rank`.
  """
  _check_choice(protocol, PROTOCOLS, 'protocol')
  _check_choice(method, METHODS, 'method')
  distance_lib.check_metric(metric)
  distance_lib.check_features(qf, gf)
  labels = _prepare_labels(q_pids, g_pids, q_camids, g_camids, protocol)
  # C order once: each block gathers rows of qf (see `evaluate_rank`).
  qf = np.ascontiguousarray(qf, dtype=np.float32)
  if protocol == 'with_query_in_gallery':
    gf = np.concatenate([qf, np.asarray(gf, np.float32)])
  if qf.shape[0] != len(labels[0]) or gf.shape[0] != len(labels[1]):
    raise ValueError('Feature counts do not match the label counts.')
  g, g_sqnorm = distance_lib.prepare_gallery(gf, metric)
  block_fn = functools.partial(_feature_block, qf, g, g_sqnorm, metric)
  return _evaluate(block_fn, labels, max_rank=max_rank, protocol=protocol,
                   block_size=block_size, method=method)


def _feature_block(qf, g, g_sqnorm, metric, rows):
  return distance_lib.distance_block(qf[rows], g, g_sqnorm, metric)


def check_protocol(protocol: str) -> None:
  """Raises ValueError naming the valid protocols for an unknown one (before
  any feature extraction is spent on it)."""
  _check_choice(protocol, PROTOCOLS, 'protocol')
