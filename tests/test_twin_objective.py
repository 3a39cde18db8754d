"""The twin-objective statistics on hand-computed cases (no training)."""

import numpy as np
import pytest

from experiments import objective_statistics as stats


def test_co_occurrence_counts_batches_and_rows():
  partner = {0: 1, 1: 0, 2: 3, 3: 2}
  batches = [np.array([0, 0, 1, 1, 4, 4]),  # pair (0, 1) together: 4 twin rows with twin
             np.array([0, 0, 5, 5, 2, 2]),  # twins 0 and 2 without theirs: 4 rows without
             np.array([4, 4, 5, 5, 6, 6])]  # no twin
  out = stats.co_occurrence(batches, partner)
  assert out['batches_with_a_twin_pair'] == pytest.approx(1 / 3)
  assert out['twin_rows'] == 8
  assert out['twin_rows_with_their_twin_in_the_batch'] == pytest.approx(0.5)


def test_co_occurrence_of_random_pk_batches_is_p_minus_1_over_n_minus_1():
  rng = np.random.default_rng(0)
  partner = {2 * i: 2 * i + 1 for i in range(15)} | {2 * i + 1: 2 * i for i in range(15)}
  batches = [np.repeat(rng.choice(150, 8, replace=False), 4) for _ in range(20000)]
  out = stats.co_occurrence(batches, partner)
  assert out['twin_rows_with_their_twin_in_the_batch'] == pytest.approx(7 / 149, abs=0.005)


def test_classifier_statistics_by_hand():
  partner = {0: 1, 1: 0}
  # Row 0 (twin, label 0): p = (1/2, 1/4, 1/4) -> CE ln 2, correct, mass on twin 1/4,
  # top wrong class: a tie of 1 and 2, argmax takes 1 (the twin).
  # Row 1 (twin, label 1): p = (1/2, 1/4, 1/4) -> CE ln 4, wrong, mass on twin (0) 1/2, top wrong 0.
  # Row 2 (other, label 2): p = (1/4, 1/4, 1/2) -> CE ln 2, correct.
  logits = np.log(np.array([[2, 1, 1], [2, 1, 1], [1, 1, 2]], np.float64))
  out = stats.classifier_statistics(logits, np.array([0, 1, 2]), partner)
  assert out['twins']['cross_entropy'] == pytest.approx((np.log(2) + np.log(4)) / 2)
  assert out['twins']['accuracy'] == 0.5 and out['others']['accuracy'] == 1.0
  assert out['others']['cross_entropy'] == pytest.approx(np.log(2))
  assert out['twins']['mass_on_twin_class'] == pytest.approx((0.25 + 0.5) / 2)
  assert out['twins']['twin_is_top_wrong_class'] == 1.0
  assert out['twin_share_of_cross_entropy'] == pytest.approx(
      (np.log(2) + np.log(4)) / (2 * np.log(2) + np.log(4)))


def test_hardest_negative_is_twin():
  partner = {0: 1, 1: 0}
  labels = np.array([0, 0, 1, 2])
  # label 0 rows at 0 and 0.1; the twin (1) at 0.5; identity 2 at 3: the twin is nearest
  x = np.array([[0.0], [0.1], [0.5], [3.0]])
  assert stats.hardest_negative_is_twin(x, labels, partner) == (3, 3)
  x = np.array([[0.0], [0.1], [0.5], [0.05]])  # identity 2 is nearest to the label-0 rows
  assert stats.hardest_negative_is_twin(x, labels, partner) == (3, 1)
