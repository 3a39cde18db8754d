"""Mean and std over splits, against hand-computed values."""

import pytest

from jaxreid.evaluation import splits


def test_summarize_splits_hand_computed():
  base = {'rank5': 1.0, 'rank10': 1.0, 'rank20': 1.0, 'mINP': 0.5}
  results = {'split_0': {**base, 'rank1': 0.6, 'mAP': 0.7},
             'split_1': {**base, 'rank1': 0.8, 'mAP': 0.7}}
  summary = splits.summarize_splits(results)
  assert summary['num_splits'] == 2
  assert summary['mean']['rank1'] == pytest.approx(0.7)
  assert summary['std']['rank1'] == pytest.approx(0.1)  # population std of {0.6, 0.8}
  assert summary['std']['mAP'] == 0.0
  assert summary['splits']['split_1']['rank1'] == 0.8
  with pytest.raises(ValueError, match='No split results'):
    splits.summarize_splits({})
