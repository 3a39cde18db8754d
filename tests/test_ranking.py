"""Tests for jaxreid.evaluation.ranking.

The reference below is written from the protocol definitions (torchreid's
eval_market1501, MARS compute_AP.m, fast-reid's mINP) as a plain per-query
Python loop, independent of the code under test. Ties are broken by gallery
index, the documented rule.
"""

import logging

import jax.numpy as jnp
import numpy as np
import pytest

from jaxreid.evaluation import distance
from jaxreid.evaluation import match_lists
from jaxreid.evaluation import ranking

# ----------------------------------------------------------------------------
# Independent reference.
# ----------------------------------------------------------------------------


def reference_evaluate(distmat, q_pids, g_pids, q_camids, g_camids,
                       max_rank=50, protocol='torchreid'):
  """Per-query loop straight from the definitions.

  For 'with_query_in_gallery', distmat is (Q, Q + G) and g_* are the gallery
  labels without the queries (the queries come first).
  """
  distmat = np.asarray(distmat, np.float32)
  if protocol == 'with_query_in_gallery':
    g_pids = np.concatenate([q_pids, g_pids])
    g_camids = np.concatenate([q_camids, g_camids])
  num_gallery = len(g_pids)
  max_rank = min(max_rank, num_gallery)
  all_cmc, all_ap, all_inp = [], [], []
  for i in range(len(q_pids)):
    kept = []
    for g in range(num_gallery):
      junk = g_pids[g] == q_pids[i] and g_camids[g] == q_camids[i]
      if protocol == 'mars_official' and g_pids[g] == -1:
        junk = True
      if not junk:
        kept.append((float(distmat[i, g]), g))
    kept.sort()  # by distance, ties by gallery index
    matches = [g_pids[g] == q_pids[i] for _, g in kept]
    num_good = sum(matches)
    if num_good == 0:
      continue  # skipped query
    first = matches.index(True)
    all_cmc.append([1.0 if k >= first else 0.0 for k in range(max_rank)])
    hits, ap, last = 0, 0.0, 0
    old_recall, old_precision = 0.0, 1.0
    for k, is_match in enumerate(matches):
      if is_match:
        hits += 1
        last = k
        if protocol != 'mars_official':
          ap += hits / (k + 1)
      if protocol == 'mars_official':  # compute_AP.m, line by line
        recall, precision = hits / num_good, hits / (k + 1)
        ap += (recall - old_recall) * (old_precision + precision) / 2
        old_recall, old_precision = recall, precision
    all_ap.append(ap if protocol == 'mars_official' else ap / num_good)
    all_inp.append(num_good / (last + 1))
  return dict(cmc=np.mean(all_cmc, axis=0), mAP=np.mean(all_ap),
              mINP=np.mean(all_inp), num_valid_queries=len(all_ap))


def assert_matches_reference(out, ref):
  np.testing.assert_allclose(out['cmc'], ref['cmc'], rtol=0, atol=1e-6)
  assert out['mAP'] == pytest.approx(ref['mAP'], abs=1e-5)
  assert out['mINP'] == pytest.approx(ref['mINP'], abs=1e-5)
  assert out['num_valid_queries'] == ref['num_valid_queries']


# ----------------------------------------------------------------------------
# Hand-made cases (expected numbers worked out in the comments).
# ----------------------------------------------------------------------------

# Gallery: index: (pid, cam)
#   0: (1, 0)   1: (1, 1)   2: (0, 1) distractor   3: (2, 1)   4: (2, 0)
#   5: (3, 0)
HAND_G_PIDS = np.array([1, 1, 0, 2, 2, 3])
HAND_G_CAMS = np.array([0, 1, 1, 1, 0, 0])
# q0 = (1, 0): g0 is junk (same pid, same cam); the only match is g1.
# q1 = (3, 0): its only pid-3 item g5 is same-camera junk -> skipped.
# q2 = (2, 2): matches g3 and g4; nothing is junk.
HAND_Q_PIDS = np.array([1, 3, 2])
HAND_Q_CAMS = np.array([0, 0, 2])
HAND_DIST = np.array([
    # q0 kept order: g2 .2 (r0), g5 .3 (r1), g1 .5 (r2, match), g3 .5 (r3,
    # ties with g1, higher index so after it), g4 .9 (r4).
    # first match rank 2; AP = 1/3; INP = 1/3.
    [0.1, 0.5, 0.2, 0.5, 0.9, 0.3],
    [0.0, 0.1, 0.2, 0.3, 0.4, 0.5],  # skipped anyway
    # q2 order: g5 0 (r0), g2 .1 (r1), g0 .2 (r2), g4 .2 (r3, match, after
    # g0 by index), g3 .25 (r4, match), g1 .4 (r5).
    # first match rank 3; AP = (1/4 + 2/5) / 2 = 0.325; INP = 2/5.
    [0.2, 0.4, 0.1, 0.25, 0.2, 0.0],
], np.float32)


@pytest.mark.parametrize('method', ['count', 'sort'])
def test_hand_made_torchreid(method, caplog):
  with caplog.at_level(logging.WARNING):
    out = ranking.evaluate_rank(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS,
                                HAND_Q_CAMS, HAND_G_CAMS, method=method)
  # Gallery of 6 < 50: CMC is clamped to 6 ranks, with a warning.
  assert out['max_rank'] == 6 and 'clamping max_rank' in caplog.text
  # Valid queries q0 (first at rank 2) and q2 (first at rank 3).
  np.testing.assert_allclose(out['cmc'], [0, 0, 0.5, 1, 1, 1], atol=1e-7)
  assert out['cmc'].dtype == np.float32
  assert out['mAP'] == pytest.approx((1 / 3 + 0.325) / 2, abs=1e-7)
  assert out['mINP'] == pytest.approx((1 / 3 + 0.4) / 2, abs=1e-7)
  assert out['num_valid_queries'] == 2
  assert out['num_skipped_queries'] == 1
  assert (out['num_query'], out['num_gallery']) == (3, 6)
  assert out['protocol'] == 'torchreid'
  np.testing.assert_allclose(out['ap_per_query'], [1 / 3, np.nan, 0.325],
                             atol=1e-7)
  np.testing.assert_array_equal(out['first_match_rank'], [3, 0, 4])  # 1-based; 0 = skipped
  ref = reference_evaluate(HAND_DIST, HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS,
                           HAND_G_CAMS)
  assert_matches_reference(out, ref)


def test_hand_made_mars_official():
  # Gallery = all test tracklets: 0: (1, cam 0) the query itself,
  # 1: (-1, 1) junk, 2: (1, 1) good, 3: (0, 1) distractor, 4: (1, 2) good.
  g_pids = np.array([1, -1, 1, 0, 1])
  g_cams = np.array([0, 1, 1, 1, 2])
  q_pids = np.array([1, 2, 1])  # q1 has no pid-2 item at all -> skipped
  q_cams = np.array([0, 0, 1])
  dist = np.array([
      # q0 kept: g3 .2 (r0), g2 .3 (r1 good), g4 .5 (r2 good). Trapezoid,
      # 2 goods: k=1 miss: p=0, ap+=0, p_old=0; k=2 hit: r=.5, p=1/2,
      # ap += .5*(0+1/2)/2 = 1/8; k=3 hit: r=1, p=2/3,
      # ap += .5*(1/2+2/3)/2 = 7/24. AP = 5/12 (torchreid's would be 7/12).
      # First rank 1, INP 2/3.
      [0.0, 0.1, 0.3, 0.2, 0.5],
      [0.5, 0.5, 0.5, 0.5, 0.5],
      # q2 = (1, 1): junk g2 (itself) and g1; goods g0, g4. Kept: g4 .05
      # (r0 good), g0 .1 (r1 good), g3 .3. AP = .5*(1+1)/2 + .5*(1+1)/2 = 1.
      # First rank 0, INP 1.
      [0.1, 0.9, 0.0, 0.3, 0.05],
  ], np.float32)
  out = ranking.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams,
                              protocol='mars_official')
  np.testing.assert_allclose(out['cmc'], [0.5, 1, 1, 1, 1], atol=1e-7)
  assert out['mAP'] == pytest.approx((5 / 12 + 1) / 2, abs=1e-7)
  assert out['mINP'] == pytest.approx((2 / 3 + 1) / 2, abs=1e-7)
  assert out['num_valid_queries'] == 2
  assert_matches_reference(
      out, reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams,
                              protocol='mars_official'))
  # The MATLAB rule (MARS's evaluation_mars.m, trapezoid AP) scores hits [miss, hit] as 0.25.
  out = ranking.evaluate_rank(
      np.array([[0.2, 0.1]], np.float32), [5], [5, 7], [0], [1, 1],
      protocol='mars_official')
  assert out['mAP'] == pytest.approx(0.25, abs=1e-7)


def test_hand_made_with_query_in_gallery():
  # Queries q0 = (1, cam 0), q1 = (1, cam 1); gallery g0 = (2, 0),
  # g1 = (1, 0). Extended gallery columns: [q0, q1, g0, g1].
  q_pids, q_cams = np.array([1, 1]), np.array([0, 1])
  g_pids, g_cams = np.array([2, 1]), np.array([0, 0])
  dist = np.array([
      # q0: junk q0 (itself) and g1 (same cam); kept g0 .3 (r0), q1 .5 (r1,
      # match). AP 1/2, first 1, INP 1/2.
      [0.0, 0.5, 0.3, 0.1],
      # q1: junk q1; kept g0 .2 (r0), q0 .5 (r1 m), g1 .6 (r2 m).
      # AP (1/2 + 2/3)/2 = 7/12, first 1, INP 2/3.
      [0.5, 0.0, 0.2, 0.6],
  ], np.float32)
  out = ranking.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams,
                              protocol='with_query_in_gallery')
  np.testing.assert_allclose(out['cmc'], [0, 1, 1, 1], atol=1e-7)
  assert out['mAP'] == pytest.approx((1 / 2 + 7 / 12) / 2, abs=1e-7)
  assert out['mINP'] == pytest.approx((1 / 2 + 2 / 3) / 2, abs=1e-7)
  assert out['num_valid_queries'] == 2 and out['num_gallery'] == 4
  # Without the queries in the gallery, q0 has no cross-camera match.
  out = ranking.evaluate_rank(dist[:, 2:], q_pids, g_pids, q_cams, g_cams)
  assert out['num_valid_queries'] == 1
  assert out['mAP'] == pytest.approx(1 / 2)  # q1: g0 (r0), g1 (r1, match)


def test_signed_zero_and_infinity_tie_by_index():
  # -0.0 ties with +0.0 and +inf with +inf; ties go to the lower index.
  g_pids, g_cams = np.array([7, 1, 7, 1]), np.zeros(4, int)
  dist = np.array([[0.0, -0.0, np.inf, np.inf],
                   [-0.0, 0.0, np.inf, np.inf]], np.float32)
  for method in ('count', 'sort'):
    out = ranking.evaluate_rank(dist, [1, 1], g_pids, [1, 1], g_cams,
                                method=method)
    # Matches (pid 1) at indices 1 and 3; order 0, 1, 2, 3 in both rows:
    # AP = (1/2 + 2/4) / 2 = 1/2.
    assert out['mAP'] == pytest.approx(0.5)
    np.testing.assert_allclose(out['cmc'], [0, 1, 1, 1])


# ----------------------------------------------------------------------------
# Random problems against the reference.
# ----------------------------------------------------------------------------


def random_problem(rng, num_query, num_gallery, num_ids, num_cams, ties,
                   junk_pid=False):
  """Labels with distractors (pid 0) and, optionally, pid -1 junk."""
  low = -1 if junk_pid else 0
  g_pids = rng.integers(low, num_ids, num_gallery)
  g_cams = rng.integers(0, num_cams, num_gallery)
  q_pids = rng.integers(1, num_ids, num_query)
  q_cams = rng.integers(0, num_cams, num_query)
  if ties:  # few distinct values: many exact ties, also between matches
    dist = rng.integers(0, 6, (num_query, num_gallery)).astype(np.float32)
  else:
    dist = rng.standard_normal((num_query, num_gallery)).astype(np.float32)
  return dist, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize('ties', [False, True])
@pytest.mark.parametrize('protocol', ranking.PROTOCOLS)
def test_random_against_reference(protocol, ties):
  rng = np.random.default_rng(7 + ties)
  num_query, num_gallery = 37, 120  # 37 is not a multiple of the block
  dist, q_pids, g_pids, q_cams, g_cams = random_problem(
      rng, num_query, num_gallery, num_ids=9, num_cams=3, ties=ties,
      junk_pid=protocol == 'mars_official')
  if protocol == 'with_query_in_gallery':
    qq = rng.integers(0, 6, (num_query, num_query)).astype(np.float32)
    dist = np.concatenate([qq if ties else qq / 3 - 1, dist], axis=1)
  ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams,
                           protocol=protocol)
  for method in ('count', 'sort'):
    out = ranking.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams,
                                protocol=protocol, block_size=8,
                                method=method)
    assert_matches_reference(out, ref)
    assert out['cmc'].shape == (50,)


def test_rows_split_and_mixed_paths(monkeypatch):
  # Many matches per query: with 3 matches per kernel row every query spans
  # several rows, and with the sort threshold at 12 'auto' mixes both paths.
  monkeypatch.setattr(match_lists, '_MATCHES_PER_ROW', 3)
  monkeypatch.setattr(ranking, 'SORT_MIN_MATCHES', 12)
  rng = np.random.default_rng(3)
  dist, q_pids, g_pids, q_cams, g_cams = random_problem(
      rng, 21, 120, num_ids=4, num_cams=2, ties=True)
  ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams)
  out = ranking.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams,
                              block_size=8)
  assert_matches_reference(out, ref)
  # And through a JAX array, whose rows are gathered on device.
  out = ranking.evaluate_rank(jnp.asarray(dist), q_pids, g_pids, q_cams,
                              g_cams, block_size=8)
  assert_matches_reference(out, ref)


def test_many_matches_default_row_length():
  # 37 queries of 2 ids against 120 items: ~20 matches each, so rows are
  # cut at _MATCHES_PER_ROW without monkeypatching.
  rng = np.random.default_rng(11)
  dist, q_pids, g_pids, q_cams, g_cams = random_problem(
      rng, 37, 120, num_ids=3, num_cams=2, ties=False)
  out = ranking.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams,
                              block_size=8, max_rank=10)
  ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
  assert_matches_reference(out, ref)
  assert out['cmc'].shape == (10,)


@pytest.mark.parametrize('metric', distance.METRICS)
def test_evaluate_features_matches_distmat(metric):
  rng = np.random.default_rng(5)
  qf = rng.standard_normal((37, 16)).astype(np.float32)
  gf = rng.standard_normal((120, 16)).astype(np.float32)
  _, q_pids, g_pids, q_cams, g_cams = random_problem(
      rng, 37, 120, num_ids=9, num_cams=3, ties=False)
  dist = distance.pairwise_distance(qf, gf, metric)
  ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams)
  out = ranking.evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams,
                                  metric=metric, block_size=8)
  assert_matches_reference(out, ref)
  # with_query_in_gallery: the queries are prepended by evaluate_features.
  dist = distance.pairwise_distance(qf, np.concatenate([qf, gf]), metric)
  ref = reference_evaluate(dist, q_pids, g_pids, q_cams, g_cams,
                           protocol='with_query_in_gallery')
  out = ranking.evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams,
                                  metric=metric, block_size=8,
                                  protocol='with_query_in_gallery')
  assert_matches_reference(out, ref)


def _assert_identical(out, expected):
  for key, value in expected.items():
    if isinstance(value, np.ndarray):
      np.testing.assert_array_equal(out[key], value, err_msg=key)
    else:
      assert out[key] == value, key


@pytest.mark.parametrize('protocol', ranking.PROTOCOLS)
def test_any_layout_and_integer_width_gives_identical_results(protocol):
  """A column slice (what `distmat[:, keep]` returns: Fortran order), a
  Fortran-ordered copy, float64, int64 / int16 labels and JAX arrays give
  exactly the results of the C-contiguous float32 int32 inputs."""
  rng = np.random.default_rng(13)
  dist, q_pids, g_pids, q_cams, g_cams = random_problem(
      rng, 21, 60, num_ids=7, num_cams=3, ties=True,
      junk_pid=protocol == 'mars_official')
  if protocol == 'with_query_in_gallery':
    dist = np.concatenate([rng.integers(0, 6, (21, 21)).astype(np.float32), dist], axis=1)
  labels32 = [np.ascontiguousarray(x, np.int32) for x in (q_pids, g_pids, q_cams, g_cams)]
  expected = ranking.evaluate_rank(np.ascontiguousarray(dist), *labels32, protocol=protocol,
                                   block_size=8)
  wide = np.concatenate([dist, dist[:, :7]], axis=1)
  sliced = wide[:, np.arange(wide.shape[1])][:, :dist.shape[1]]
  assert not sliced.flags['C_CONTIGUOUS']  # the layout under test
  np.testing.assert_array_equal(sliced, dist)
  strided_rows = np.repeat(dist, 2, axis=0)[::2]  # a row-strided view
  assert not strided_rows.flags['C_CONTIGUOUS']
  variants = {
      'column slice': (sliced, labels32),
      'row stride': (strided_rows, labels32),
      'fortran': (np.asfortranarray(dist), labels32),
      'float64': (dist.astype(np.float64), labels32),
      'int64 labels': (dist, [x.astype(np.int64) for x in labels32]),
      'int16 strided labels': (dist, [np.repeat(x, 2)[::2].astype(np.int16)
                                      for x in labels32]),
      'jax arrays': (jnp.asarray(dist), [jnp.asarray(x) for x in labels32]),
      'jax fortran-sliced': (jnp.asarray(sliced), labels32),
  }
  for name, (d, labels) in variants.items():
    out = ranking.evaluate_rank(d, *labels, protocol=protocol, block_size=8)
    try:
      _assert_identical(out, expected)
    except AssertionError as e:
      raise AssertionError(f'{name}: {e}') from e


def test_evaluate_features_any_layout_gives_identical_results():
  rng = np.random.default_rng(17)
  qf = rng.standard_normal((21, 8)).astype(np.float32)
  gf = rng.standard_normal((60, 8)).astype(np.float32)
  _, q_pids, g_pids, q_cams, g_cams = random_problem(
      rng, 21, 60, num_ids=7, num_cams=3, ties=False)
  expected = ranking.evaluate_features(qf, gf, q_pids, g_pids, q_cams, g_cams, block_size=8)
  for q, g in ((np.asfortranarray(qf), np.asfortranarray(gf)),
               (np.repeat(qf, 2, axis=1)[:, ::2], gf.astype(np.float64)),
               (jnp.asarray(qf), jnp.asarray(gf))):
    out = ranking.evaluate_features(q, g, q_pids.astype(np.int64), g_pids, q_cams, g_cams,
                                    block_size=8)
    _assert_identical(out, expected)


# ----------------------------------------------------------------------------
# Errors.
# ----------------------------------------------------------------------------


def test_errors():
  args = (HAND_Q_PIDS, HAND_G_PIDS, HAND_Q_CAMS, HAND_G_CAMS)
  with pytest.raises(ValueError, match='torchreid.*mars_official'):
    ranking.evaluate_rank(HAND_DIST, *args, protocol='market')
  with pytest.raises(ValueError, match='valid choices'):
    ranking.evaluate_rank(HAND_DIST, *args, method='fast')
  with pytest.raises(ValueError, match='expected \\(3, 6\\)'):
    ranking.evaluate_rank(HAND_DIST[:, :5], *args)
  with pytest.raises(ValueError, match='query columns first'):
    ranking.evaluate_rank(HAND_DIST, *args, protocol='with_query_in_gallery')
  nan_dist = HAND_DIST.copy()
  nan_dist[0, 3] = np.nan
  with pytest.raises(ValueError, match='NaN'):
    ranking.evaluate_rank(nan_dist, *args)
  with pytest.raises(ValueError, match='No query has a match'):
    ranking.evaluate_rank(HAND_DIST, [9, 9, 9], HAND_G_PIDS, HAND_Q_CAMS,
                          HAND_G_CAMS)
