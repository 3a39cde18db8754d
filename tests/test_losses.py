"""Losses against plain NumPy transcriptions of their definitions."""

import numpy as np
import pytest

from jaxreid import losses


def _np_cross_entropy(logits, labels, eps):
  """-sum_k q_k log softmax(z)_k with q = (1 - eps) one_hot + eps / K."""
  total = 0.0
  for z, y in zip(logits.astype(np.float64), labels):
    log_p = z - z.max() - np.log(np.sum(np.exp(z - z.max())))
    q = np.full(len(z), eps / len(z))
    q[y] += 1.0 - eps
    total += -np.sum(q * log_p)
  return total / len(labels)


def _np_batch_hard(x, labels, margin, metric, soft):
  """Loops over anchors: farthest positive, nearest negative."""
  x = x.astype(np.float64)
  n = len(x)
  def dist(a, b):
    if metric == 'euclidean':
      return np.sqrt(max(np.sum((a - b) ** 2), 1e-12))
    return 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
  total = 0.0
  for i in range(n):
    pos = [dist(x[i], x[j]) for j in range(n) if labels[j] == labels[i]]
    neg = [dist(x[i], x[j]) for j in range(n) if labels[j] != labels[i]]
    gap = max(pos) - min(neg)
    total += np.log1p(np.exp(gap)) if soft else max(0.0, gap + margin)
  return total / n


@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_cross_entropy_matches_numpy(eps):
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
  labels = rng.integers(0, 5, 6)
  got = float(losses.cross_entropy(logits, labels, eps))
  np.testing.assert_allclose(got, _np_cross_entropy(logits, labels, eps), rtol=1e-5)


def test_cross_entropy_hand_computed():
  # Two classes, equal logits: p = 1/2 for both, loss = log 2 whatever the smoothing.
  np.testing.assert_allclose(float(losses.cross_entropy(np.zeros((1, 2)), np.array([1]), 0.1)),
                             np.log(2.0), rtol=1e-6)


@pytest.mark.parametrize('metric', ['euclidean', 'cosine'])
@pytest.mark.parametrize('soft', [False, True])
def test_batch_hard_triplet_matches_numpy(metric, soft):
  rng = np.random.default_rng(1)
  x = rng.normal(size=(12, 7)).astype(np.float32)
  labels = np.repeat(np.arange(4), 3)
  got = float(losses.batch_hard_triplet(x, labels, 0.3, metric, soft))
  np.testing.assert_allclose(got, _np_batch_hard(x, labels, 0.3, metric, soft), rtol=1e-5)


def test_batch_hard_triplet_hand_computed():
  # 1-D points: class 0 at {0, 1}, class 1 at {3, 5}. Anchor 0: d_ap = 1, d_an = 3 -> 0;
  # anchor 1: 1 vs 2 -> 0; anchor 3: 2 vs 2 -> 0.5 with margin 0.5; anchor 5: 2 vs 4 -> 0.
  x = np.array([[0.0], [1.0], [3.0], [5.0]], np.float32)
  got = float(losses.batch_hard_triplet(x, np.array([0, 0, 1, 1]), margin=0.5))
  np.testing.assert_allclose(got, 0.5 / 4, rtol=1e-6)


def test_total_loss_weights_terms():
  rng = np.random.default_rng(2)
  outputs = {'logits': rng.normal(size=(8, 3)).astype(np.float32),
             'embedding': rng.normal(size=(8, 4)).astype(np.float32)}
  labels = np.repeat(np.arange(4), 2) % 3
  total, terms = losses.total_loss(outputs, labels, {'ce': 2.0, 'triplet': 0.5}, {})
  np.testing.assert_allclose(float(total), 2 * float(terms['ce']) + 0.5 * float(terms['triplet']),
                             rtol=1e-6)


def test_unknown_loss_term_names_choices():
  with pytest.raises(ValueError, match=r"Unknown loss term\(s\) focall .*valid choices: .*ce, .*triplet"):
    losses.check_loss_weights({'focall': 1.0})


def test_aux_ce_sums_every_auxiliary_classifier():
  rng = np.random.default_rng(1)
  aux = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2)]
  labels = np.array([0, 2, 1, 2])
  got = float(losses.LOSS_TERMS['aux_ce']({'aux_logits': aux}, labels,
                                          {'aux_label_smoothing': 0.1}))
  want = sum(_np_cross_entropy(a, labels, 0.1) for a in aux)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  with pytest.raises(ValueError, match="needs the model's 'aux_logits'"):
    losses.LOSS_TERMS['aux_ce']({'logits': aux[0]}, labels, {})
