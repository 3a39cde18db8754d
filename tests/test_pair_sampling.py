"""Siamese pair batches (CRF): half positive, half negative, positives across
cameras, rows (2i, 2i + 1) a pair, a pure function of (seed, step); and their
wiring into the train pipeline."""

import numpy as np
import pytest

from data_pipelines import pipeline, sampling


def _index():
  # ids 0-3: tracklets in cameras 0 and 1; id 4: two tracklets in camera 2 only;
  # id 5: a single tracklet.
  pids = [0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 4, 5]
  cams = [0, 1, 1, 0, 1, 1, 0, 0, 1, 1, 0, 2, 2, 0]
  n = len(pids)
  return sampling.SplitIndex(position=np.arange(n), pid=np.array(pids), camid=np.array(cams),
                             num_frames=np.arange(n) % 5 + 3)


def _plan(index, step, seed=7, num_pairs=40, clip_len=3):
  return sampling.plan_pair_batch(index, index.pid, seed=seed, step=step, num_pairs=num_pairs,
                                  clip_len=clip_len, clip_sampler='consecutive')


def test_half_positive_half_negative_pairs():
  index = _index()
  for step in range(10):
    plan = _plan(index, step)
    assert plan.tracklets.shape == (80,) and plan.frames.shape == (80, 3)
    same = plan.labels[0::2] == plan.labels[1::2]
    assert same.sum() == 20 and (~same).sum() == 20
    assert same[0::2].all() and not same[1::2].any()  # even pairs positive, odd negative
    np.testing.assert_array_equal(plan.labels, index.pid[plan.tracklets])
    assert (plan.frames < index.num_frames[plan.tracklets][:, None]).all()


def test_positive_pairs_cross_cameras_when_the_identity_has_two():
  index = _index()
  seen = set()
  for step in range(10):
    plan = _plan(index, step)
    a, b = plan.tracklets[0::2][0::2], plan.tracklets[1::2][0::2]  # positive pairs
    for t_a, t_b in zip(a, b):
      pid = index.pid[t_a]
      seen.add(int(pid))
      if pid <= 3:
        assert index.camid[t_a] != index.camid[t_b]
      elif pid == 4:  # one camera: two different tracklets of it
        assert t_a != t_b
      else:  # one tracklet: used twice
        assert t_a == t_b
  assert seen == {0, 1, 2, 3, 4, 5}


def test_pairs_are_deterministic_in_seed_and_step():
  index = _index()
  a, b = _plan(index, 3), _plan(index, 3)
  for field in ('tracklets', 'frames', 'labels', 'aug_seeds'):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert not np.array_equal(_plan(index, 4).tracklets, a.tracklets)
  assert not np.array_equal(_plan(index, 3, seed=8).tracklets, a.tracklets)


def test_bad_pair_counts_are_clear_errors():
  with pytest.raises(ValueError, match='expected an even number'):
    _plan(_index(), 0, num_pairs=3)


@pytest.fixture(scope='module')
def pair_config(tiny_data_dir):
  from experiments.configs import tiny
  config = tiny.get_config()
  config.data_dir = tiny_data_dir
  config.batch_sampler = 'pairs'
  config.num_pairs = 4
  config.num_identities, config.num_instances = 4, 2
  return config


def test_pipeline_builds_pair_batches(pair_config):
  data = pipeline.ReIDData(pair_config)
  batch = next(data.train_batches(0))
  assert batch['frames'].shape[0] == 8 and 'flow' not in batch
  same = batch['pid'][0::2] == batch['pid'][1::2]
  assert same.tolist() == [True, False, True, False]
  np.testing.assert_array_equal(batch['pid'], data.plan(0).labels)
  halves = [next(pipeline.ReIDData(pair_config, i, 2).train_batches(0)) for i in range(2)]
  np.testing.assert_array_equal(np.concatenate([h['frames'] for h in halves]), batch['frames'])


def test_pipeline_sampler_errors(pair_config):
  config = pair_config.copy_and_resolve_references()
  config.num_pairs = 3
  with pytest.raises(ValueError, match='num_pairs = 3 pairs make 6 clips'):
    pipeline.ReIDData(config).plan(0)
  config.batch_sampler = 'triplets'
  with pytest.raises(ValueError, match="Unknown config.batch_sampler 'triplets'; valid "
                     'choices: pk, pairs'):
    pipeline.ReIDData(config).plan(0)
