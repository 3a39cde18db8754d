"""Datasets with 10 train/test splits (iLIDS-VID here, on a fabricated release):
one command runs every split and reports mean and std; a real dataset trains
and evaluates by flags alone."""

import json
import os

import pytest

from experiments import common, train
from test_ilids_vid_builder import make_tree  # the fabricated release layout


@pytest.fixture
def ilids_config(tmp_path, tiny_config):
  config = tiny_config
  config.dataset, config.dataset_config = 'ilids_vid', 'split_0'
  config.manual_dir = str(make_tree(tmp_path / 'manual'))
  config.data_dir = str(tmp_path / 'tfds')
  config.num_identities, config.num_instances = 2, 4  # 3 training persons per split
  return config


def test_all_splits_runs_each_split_and_summarizes(tmp_path, ilids_config):
  seen = []

  def fake_run(split_config, workdir):  # stands in for train.train_and_evaluate
    seen.append((split_config.dataset_config, os.path.basename(workdir),
                 split_config.all_splits))
    k = int(split_config.dataset_config.split('_')[1])
    return {m: k / 10 for m in ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')}

  ilids_config.all_splits = True
  summary = common.for_each_split(ilids_config, str(tmp_path / 'runs'), fake_run)
  assert seen == [(f'split_{k}', f'split_{k}', False) for k in range(10)]
  assert summary['mean']['rank1'] == pytest.approx(0.45)  # mean of 0.0, 0.1, ..., 0.9
  assert summary['std']['rank1'] == pytest.approx(0.28722813)  # population std
  with open(tmp_path / 'runs' / 'eval_results.json') as f:
    assert json.load(f)['num_splits'] == 10


def test_all_splits_needs_numbered_splits(tmp_path, tiny_config):
  with pytest.raises(ValueError, match="dataset 'synthetic_video_reid' has no numbered splits"):
    common.for_each_split(tiny_config, str(tmp_path), lambda c, w: {})


@pytest.mark.slow
def test_ilids_vid_trains_and_evaluates_by_flags(tmp_path, ilids_config):
  results = train.train_and_evaluate(ilids_config, str(tmp_path / 'run'))
  # Query = cam1 and gallery = cam2 of the 3 test persons: one true match each.
  assert results['num_query'] == 3 and results['num_gallery'] == 3
  assert results['num_valid_queries'] == 3
  assert min(abs(results['rank1'] - k / 3) for k in range(4)) < 1e-6
