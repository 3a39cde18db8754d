"""Losses against plain NumPy transcriptions of their definitions and hand-computed
values, each jitted and not (chex variants); the per-term config and the
model -> loss contract against hand-written expectations."""

import functools
import re

import chex
import numpy as np
import pytest
from absl.testing import parameterized

from jaxreid import losses
from jaxreid.models import baselines


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


def _batch(seed=2):
  rng = np.random.default_rng(seed)
  outputs = {'logits': rng.normal(size=(8, 3)).astype(np.float32),
             'embedding': rng.normal(size=(8, 4)).astype(np.float32)}
  return outputs, (np.repeat(np.arange(4), 2) % 3).astype(np.int32)


class LossFunctionsTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(0.0, 0.1)
  def test_cross_entropy_matches_numpy(self, eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 5, 6).astype(np.int32)
    fn = self.variant(functools.partial(losses.cross_entropy, label_smoothing=eps))
    np.testing.assert_allclose(float(fn(logits, labels)), _np_cross_entropy(logits, labels, eps),
                               rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_cross_entropy_hand_computed(self):
    # Two classes, equal logits: p = 1/2 for both, loss = log 2 whatever the smoothing.
    fn = self.variant(functools.partial(losses.cross_entropy, label_smoothing=0.1))
    np.testing.assert_allclose(float(fn(np.zeros((1, 2)), np.array([1]))), np.log(2.0),
                               rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(metric=['euclidean', 'cosine'], soft=[False, True])
  def test_batch_hard_triplet_matches_numpy(self, metric, soft):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(12, 7)).astype(np.float32)
    labels = np.repeat(np.arange(4), 3)
    fn = self.variant(functools.partial(losses.batch_hard_triplet, margin=0.3, metric=metric,
                                        soft_margin=soft))
    np.testing.assert_allclose(float(fn(x, labels)), _np_batch_hard(x, labels, 0.3, metric, soft),
                               rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_batch_hard_triplet_hand_computed(self):
    # 1-D points: class 0 at {0, 1}, class 1 at {3, 5}. Anchor 0: d_ap = 1, d_an = 3 -> 0;
    # anchor 1: 1 vs 2 -> 0; anchor 3: 2 vs 2 -> 0.5 with margin 0.5; anchor 5: 2 vs 4 -> 0.
    x = np.array([[0.0], [1.0], [3.0], [5.0]], np.float32)
    fn = self.variant(functools.partial(losses.batch_hard_triplet, margin=0.5))
    np.testing.assert_allclose(float(fn(x, np.array([0, 0, 1, 1]))), 0.5 / 4, rtol=1e-6)

  @chex.variants(with_jit=True, without_jit=True)
  def test_summed_cross_entropy_sums_every_classifier(self):
    rng = np.random.default_rng(1)
    aux = [rng.normal(size=(4, 3)).astype(np.float32) for _ in range(2)]
    labels = np.array([0, 2, 1, 2])
    fn = self.variant(functools.partial(losses.summed_cross_entropy, label_smoothing=0.1))
    np.testing.assert_allclose(float(fn(aux, labels)),
                               sum(_np_cross_entropy(a, labels, 0.1) for a in aux), rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_total_loss_weights_terms_with_their_options(self):
    outputs, labels = _batch()
    fn = self.variant(functools.partial(
        losses.total_loss, weights={'ce': 2.0, 'triplet': 0.5},
        options={'ce': {'label_smoothing': 0.1}, 'triplet': {'margin': 0.5}}))
    total, terms = fn(outputs, labels)
    ce = _np_cross_entropy(outputs['logits'], labels, 0.1)
    triplet = _np_batch_hard(outputs['embedding'], labels, 0.5, 'euclidean', False)
    np.testing.assert_allclose([float(terms['ce']), float(terms['triplet'])], [ce, triplet],
                               rtol=1e-5)
    np.testing.assert_allclose(float(total), 2 * ce + 0.5 * triplet, rtol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  def test_triplet_prefers_triplet_features_to_the_embedding(self):
    outputs, labels = _batch()
    outputs['triplet_features'] = outputs['embedding'][:, :2] * 3
    fn = self.variant(functools.partial(losses.total_loss, weights={'triplet': 1.0}))
    _, terms = fn(outputs, labels)
    np.testing.assert_allclose(
        float(terms['triplet']),
        _np_batch_hard(outputs['triplet_features'], labels, 0.3, 'euclidean', False), rtol=1e-5)


def _raises(message):
  """pytest.raises for a ValueError whose message is exactly `message`."""
  return pytest.raises(ValueError, match='^' + re.escape(message) + '$')


def test_a_missing_model_output_is_one_line_naming_term_model_and_outputs():
  outputs, labels = _batch()
  with _raises("loss term 'aux_ce' needs model output 'aux_logits'; the model returns: "
                     'embedding, logits.'):
    losses.total_loss(outputs, labels, {'ce': 1.0, 'aux_ce': 1.0})
  model = baselines.TemporalPooling(num_classes=3)
  with _raises("loss term 'temporal_reg' needs model output 'attention'; model "
                     "'temporal_pooling' returns: embedding, logits."):
    losses.total_loss(outputs, labels, {'temporal_reg': 1.0}, model=model.apply)


def test_options_are_the_term_functions_keyword_arguments():
  assert losses.option_defaults('triplet') == {'margin': 0.3, 'metric': 'euclidean',
                                               'soft_margin': False}
  assert losses.option_defaults('part_triplet') == {'margin': 0.4, 'metric': 'euclidean'}
  assert losses.option_defaults('temporal_reg') == {}
  config_losses = {'ce': {'weight': 2.0, 'label_smoothing': 0.1}, 'triplet': {'weight': 1.0}}
  assert losses.term_weights(config_losses) == {'ce': 2.0, 'triplet': 1.0}
  assert losses.term_options(config_losses) == {'ce': {'label_smoothing': 0.1}, 'triplet': {}}
  assert losses.resolved_options(config_losses, 'triplet')['margin'] == 0.3
  assert losses.resolved_options(config_losses, 'contrastive') == {'margin': 2.0,
                                                                  'form': 'squared'}


def test_config_problems_are_one_line_each_with_the_valid_choices():
  assert losses.config_problems({'ce': {'weight': 1.0}}) == []
  assert losses.config_problems({}) == [
      '--config.losses is empty; name at least one of aux_ce, ce, ce_streams, contrastive, '
      "focal, part_triplet, temporal_reg, triplet with a weight, e.g. {'ce': {'weight': 1.0}}."]
  assert losses.config_problems({
      'focall': {'weight': 1.0}, 'ce': 1.0, 'focal': {'gamma': 2.0},
      'triplet': {'weight': -1.0, 'margn': 0.3}}) == [
          "--config.losses.ce=1.0: expected the term's weight and options, e.g. "
          "{'weight': 1.0}.",
          "--config.losses.focal: no 'weight'; give one, e.g. --config.losses.focal.weight=1.0.",
          '--config.losses.focall: unknown loss term; valid choices: aux_ce, ce, ce_streams, '
          'contrastive, focal, part_triplet, temporal_reg, triplet.',
          '--config.losses.triplet.weight=-1.0: expected a weight >= 0.',
          "--config.losses.triplet.margn: not an option of loss term 'triplet'; valid keys: "
          'margin, metric, soft_margin, weight.']
