"""Host-side bookkeeping of `ranking`: per-query match and junk lists.

Built from the labels alone, in O(Q + G + number of same-pid pairs), stored
flat (CSR) and packed into padded blocks for the device kernels.
"""

from typing import Tuple

import numpy as np

# Gallery pid that the official MARS protocol treats as junk.
MARS_JUNK_PID = -1

# Longest slice of one query's matches that one kernel row ranks; longer
# lists are split over several rows (see `split_rows`).
_MATCHES_PER_ROW = 16

# Smallest padded width of the per-query match / junk lists; widths are
# rounded up to powers of two so a dataset compiles the kernel once.
_MIN_LIST_WIDTH = 8


def bucket(n: int) -> int:
  """Next power of two >= max(n, _MIN_LIST_WIDTH)."""
  return max(_MIN_LIST_WIDTH, 1 << max(int(n) - 1, 0).bit_length())


class PairLists:
  """Per-query lists of gallery indices, stored flat (CSR) and sorted by query.

  Attributes:
    counts: (Q,) number of entries per query.
    starts: (Q,) offset of each query's entries in `items`.
    items: (N,) gallery indices, ascending within each query.
  """

  def __init__(self, pair_query: np.ndarray, pair_gallery: np.ndarray,
               num_query: int):
    self.counts = np.bincount(pair_query, minlength=num_query)
    self.starts = np.cumsum(self.counts) - self.counts
    self.items = pair_gallery

  def pack(self, queries: np.ndarray, width: int, fill: int) -> np.ndarray:
    """(len(queries), width) int32 matrix of their lists, padded with fill."""
    counts = self.counts[queries]
    out = np.full((len(queries), width), fill, np.int32)
    row_of = np.repeat(np.arange(len(queries)), counts)
    col_of = _offsets_within(counts)
    out[row_of, col_of] = self.items[np.repeat(self.starts[queries], counts) +
                                     col_of]
    return out


def _offsets_within(counts: np.ndarray) -> np.ndarray:
  """[0..c0-1, 0..c1-1, ...]: each entry's position within its group."""
  return np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts,
                                             counts)


def match_and_junk_lists(q_pids, q_camids, g_pids, g_camids,
                          drop_junk_pid: bool) -> Tuple[PairLists, PairLists]:
  """Matches (same pid, other camera) and junk (same pid and camera).

  Args:
    q_pids, q_camids: (Q,) int query labels.
    g_pids, g_camids: (G,) int gallery labels.
    drop_junk_pid: if True (mars_official), gallery items with pid -1 are in
      neither list; the kernel masks them for every query instead.

  Returns:
    (matches, junk) as `PairLists`.
  """
  num_query = len(q_pids)
  g_order = np.argsort(g_pids, kind='stable')  # gallery grouped by pid
  g_sorted = g_pids[g_order]
  lo = np.searchsorted(g_sorted, q_pids, side='left')  # (Q,)
  counts = np.searchsorted(g_sorted, q_pids, side='right') - lo
  pair_query = np.repeat(np.arange(num_query), counts)  # (N,)
  # Ascending gallery indices within each query (stable argsort).
  pair_gallery = g_order[np.repeat(lo, counts) + _offsets_within(counts)]
  same_cam = g_camids[pair_gallery] == q_camids[pair_query]
  keep = np.ones_like(same_cam)
  if drop_junk_pid:
    keep = g_pids[pair_gallery] != MARS_JUNK_PID
  is_match, is_junk = keep & ~same_cam, keep & same_cam
  return (PairLists(pair_query[is_match], pair_gallery[is_match], num_query),
          PairLists(pair_query[is_junk], pair_gallery[is_junk], num_query))


def split_rows(queries: np.ndarray, num_matches: np.ndarray):
  """Cuts each query's matches into rows of at most _MATCHES_PER_ROW.

  A block loops as often as its longest row, so bounding row length keeps
  a query with 200 matches from making 63 other rows wait on it.

  Returns:
    (row_query, row_start, row_count), int arrays sorted by row_count so
    that rows of equal length share blocks.
  """
  n = num_matches[queries]
  pieces = -(-n // _MATCHES_PER_ROW)  # ceil
  row_query = np.repeat(queries, pieces)
  row_start = _offsets_within(pieces) * _MATCHES_PER_ROW
  row_count = np.minimum(num_matches[row_query] - row_start, _MATCHES_PER_ROW)
  order = np.argsort(row_count, kind='stable')
  return row_query[order], row_start[order], row_count[order]
