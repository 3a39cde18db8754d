"""Tests for jaxreid.evaluation.distance against NumPy in float64."""

import numpy as np
import pytest

from jaxreid.evaluation import distance


@pytest.mark.parametrize('metric', distance.METRICS)
def test_pairwise_distance_against_numpy(metric):
  rng = np.random.default_rng(0)
  qf = rng.standard_normal((37, 24)).astype(np.float32)
  gf = rng.standard_normal((53, 24)).astype(np.float32)
  gf[3] = 0.0  # a zero feature: cosine distance 1, as F.normalize gives
  q64, g64 = qf.astype(np.float64), gf.astype(np.float64)
  if metric == 'euclidean':  # squared, like torchreid
    expected = ((q64[:, None, :] - g64[None, :, :])**2).sum(-1)
  else:
    qn = q64 / np.maximum(np.linalg.norm(q64, axis=1, keepdims=True), 1e-12)
    gn = g64 / np.maximum(np.linalg.norm(g64, axis=1, keepdims=True), 1e-12)
    expected = 1.0 - qn @ gn.T
  out = distance.pairwise_distance(qf, gf, metric, block_size=16)
  assert isinstance(out, np.ndarray) and out.dtype == np.float32
  assert out.shape == (37, 53)
  np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
  np.testing.assert_allclose(out[:, 3], 1.0 if metric == 'cosine' else
                             (q64**2).sum(1), rtol=1e-5)


def test_errors():
  with pytest.raises(ValueError, match='euclidean.*cosine'):
    distance.pairwise_distance(np.ones((2, 3)), np.ones((4, 3)), 'l1')
  with pytest.raises(ValueError, match='dim 3.*dim 4'):
    distance.pairwise_distance(np.ones((2, 3)), np.ones((4, 4)))
