"""Tests for jaxreid.evaluation.rerank against a plain NumPy transcription."""

import numpy as np
import pytest

from jaxreid.evaluation import distance as distance_lib
from jaxreid.evaluation import rerank as rerank_lib


def reference_rerank(q_g_dist, q_q_dist, g_g_dist, k1, k2, lambda_value):
  """The authors' reference ``re_ranking`` (distance-matrix version), step by
  step, with loops and Python sets. Like the reference it squares its input.
  argsort is stable here (the reference's default quicksort leaves ties in
  an unspecified order; the test data has no ties off the diagonal)."""
  num_query = q_g_dist.shape[0]
  num_all = num_query + q_g_dist.shape[1]
  top_rows = np.concatenate([q_q_dist, q_g_dist], axis=1)
  bottom_rows = np.concatenate([q_g_dist.T, g_g_dist], axis=1)
  dist = np.concatenate([top_rows, bottom_rows], axis=0)
  dist = np.power(dist, 2).astype(np.float32)
  # Each column over its max, then transposed.
  dist = np.transpose(1.0 * dist / np.max(dist, axis=0))
  rank = np.argsort(dist, axis=1, kind='stable').astype(np.int32)

  def k_reciprocal(i, k):
    forward = rank[i, :k + 1]
    out = []
    for j in forward:
      if i in rank[j, :k + 1]:
        out.append(int(j))
    return out

  half = int(np.around(k1 / 2.0))
  v = np.zeros((num_all, num_all), np.float32)
  for i in range(num_all):
    r_full = k_reciprocal(i, k1)
    expansion = set(r_full)
    for cand in r_full:
      r_half = k_reciprocal(cand, half)
      common = len(set(r_half) & set(r_full))
      if common > 2.0 / 3 * len(r_half):
        expansion.update(r_half)
    cols = np.array(sorted(expansion), dtype=np.int64)
    weight = np.exp(-dist[i, cols])
    v[i, cols] = 1.0 * weight / np.sum(weight)

  orig = dist[:num_query]
  if k2 != 1:
    v_qe = np.zeros_like(v)
    for i in range(num_all):
      v_qe[i] = np.mean(v[rank[i, :k2]], axis=0)
    v = v_qe

  jaccard = np.zeros_like(orig)
  for i in range(num_query):
    min_sum = np.zeros(num_all, np.float32)
    for col in np.nonzero(v[i])[0]:
      others = np.nonzero(v[:, col])[0]
      min_sum[others] += np.minimum(v[i, col], v[others, col])
    jaccard[i] = 1 - min_sum / (2.0 - min_sum)
  final = jaccard * (1 - lambda_value) + orig * lambda_value
  return final[:, num_query:]


def _euclidean(a, b):
  """Plain (not squared) Euclidean distances, float32."""
  diff = a[:, None, :].astype(np.float64) - b[None, :, :]
  return np.sqrt(np.sum(diff * diff, axis=-1)).astype(np.float32)


def _problem(seed, num_query=7, num_gallery=30, dim=8):
  rng = np.random.default_rng(seed)
  # A few identities so that neighbourhoods have structure.
  centres = rng.normal(size=(5, dim))
  qf = centres[rng.integers(0, 5, num_query)] + 0.7 * rng.normal(
      size=(num_query, dim))
  gf = centres[rng.integers(0, 5, num_gallery)] + 0.7 * rng.normal(
      size=(num_gallery, dim))
  return _euclidean(qf, gf), _euclidean(qf, qf), _euclidean(gf, gf)


# N = 37. k1 = 40 > N (every item is a forward neighbour); k1 = 1 has a
# half-neighbourhood of round(0.5) = 0; k1 = 5 rounds 2.5 to 2; k2 = 50 > N;
# k2 = 1 disables query expansion. (One compilation per k1 value: keep the
# list short, and the other tests on N = 37 with k1 in {20, 5}.)
@pytest.mark.parametrize('seed,k1,k2,lam', [
    (0, 20, 6, 0.3),
    (1, 20, 1, 0.5),
    (2, 5, 3, 0.3),
    (3, 5, 6, 0.0),
    (4, 40, 50, 0.1),
    (5, 1, 2, 0.3),
])
def test_matches_reference(seed, k1, k2, lam):
  q_g, q_q, g_g = _problem(seed)
  want = reference_rerank(q_g, q_q, g_g, k1, k2, lam)
  got = rerank_lib.rerank(q_g, q_q, g_g, k1, k2, lam, square_input=True)
  assert got.dtype == np.float32 and got.shape == (7, 30)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
  # Default: the input is taken as already squared.
  got_sq = rerank_lib.rerank(q_g * q_g, q_q * q_q, g_g * g_g, k1, k2, lam)
  np.testing.assert_allclose(got_sq, want, rtol=0, atol=1e-5)


def test_reranking_changes_the_ranking():
  q_g, q_q, g_g = _problem(0)
  orig = rerank_lib.rerank(q_g, q_q, g_g, lambda_value=1.0)
  final = rerank_lib.rerank(q_g, q_q, g_g)
  assert not np.array_equal(np.argsort(orig, 1), np.argsort(final, 1))


def test_lambda_one_is_normalised_original():
  q_g, q_q, g_g = _problem(6)
  full = np.block([[q_q, q_g], [q_g.T, g_g]])
  want = (full / full.max(axis=0)).T[:7, 7:]
  got = rerank_lib.rerank(q_g, q_q, g_g, k1=20, k2=6, lambda_value=1.0)
  np.testing.assert_array_equal(got, want)


def test_ties_rank_lower_index_first():
  q_g, q_q, g_g = _problem(7)
  # Gallery items 3 and 9 identical: exact ties in every row.
  for m in (q_g, g_g):
    m[:, 9] = m[:, 3]
  g_g[9, :] = g_g[3, :]
  g_g[3, 9] = g_g[9, 3] = 0.0
  want = reference_rerank(q_g, q_q, g_g, 5, 3, 0.3)
  got = rerank_lib.rerank(q_g, q_q, g_g, 5, 3, 0.3, square_input=True)
  np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_rerank_features_matches_blocks():
  rng = np.random.default_rng(8)
  qf = rng.normal(size=(7, 16)).astype(np.float32)
  gf = rng.normal(size=(30, 16)).astype(np.float32)
  for metric in distance_lib.METRICS:
    blocks = [distance_lib.pairwise_distance(a, b, metric)
              for a, b in ((qf, gf), (qf, qf), (gf, gf))]
    want = rerank_lib.rerank(*blocks, k1=5, k2=3)
    got = rerank_lib.rerank_features(qf, gf, metric, k1=5, k2=3)
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match='euclidean, cosine'):
    rerank_lib.rerank_features(qf, gf, 'manhattan')


def test_invalid_arguments():
  q_g, q_q, g_g = _problem(9, num_query=3, num_gallery=5)
  with pytest.raises(ValueError, match='q_q_dist must have shape'):
    rerank_lib.rerank(q_g, g_g, g_g)
  with pytest.raises(ValueError, match='g_g_dist must have shape'):
    rerank_lib.rerank(q_g, q_q, q_q)
  with pytest.raises(ValueError, match='k1 must be an integer >= 1'):
    rerank_lib.rerank(q_g, q_q, g_g, k1=0)
  with pytest.raises(ValueError, match='k2 must be an integer >= 1'):
    rerank_lib.rerank(q_g, q_q, g_g, k2=2.5)
  with pytest.raises(ValueError, match=r'lambda_value must be in \[0, 1\]'):
    rerank_lib.rerank(q_g, q_q, g_g, lambda_value=1.5)
  bad = q_g.copy()
  bad[0, 0] = np.nan
  with pytest.raises(ValueError, match='finite'):
    rerank_lib.rerank(bad, q_q, g_g)
  with pytest.raises(ValueError, match='cannot be normalised'):
    rerank_lib.rerank(np.zeros_like(q_g), np.zeros_like(q_q),
                      np.zeros_like(g_g))
