"""PK batch plans and clip samplers (pure NumPy), checked against hand-made
expectations and torchreid's published 'evenly' index vectors."""

import numpy as np
import pytest

from data_pipelines import sampling


def _index(pids, cams, lengths):
  n = len(pids)
  return sampling.SplitIndex(position=np.arange(n), pid=np.array(pids), camid=np.array(cams),
                             num_frames=np.array(lengths))


@pytest.fixture
def index():
  # 6 identities: ids 0-3 with 4 tracklets over 2 cameras, id 4 with 1, id 5 with 3 in one camera.
  pids, cams = [], []
  for p in range(4):
    pids += [p] * 4
    cams += [0, 0, 1, 1]
  pids += [4, 5, 5, 5]
  cams += [0, 2, 2, 2]
  lengths = (np.arange(len(pids)) % 7 + 2).tolist()
  return _index(pids, cams, lengths)


def _plan(index, step, **kw):
  args = dict(seed=3, step=step, num_identities=3, num_instances=2, clip_len=4,
              clip_sampler='restricted')
  args.update(kw)
  return sampling.plan_pk_batch(index, index.pid, **args)


def test_pk_batch_has_p_identities_with_k_tracklets(index):
  for step in range(20):
    plan = _plan(index, step)
    labels = plan.labels.reshape(3, 2)
    assert len(set(labels[:, 0])) == 3 and (labels == labels[:, :1]).all()
    assert (index.pid[plan.tracklets] == plan.labels).all()
    assert plan.frames.shape == (6, 4)
    assert (plan.frames < index.num_frames[plan.tracklets][:, None]).all()


def test_pk_prefers_different_cameras(index):
  for step in range(20):
    plan = _plan(index, step)
    for p in range(3):
      rows = plan.tracklets[2 * p:2 * p + 2]
      if plan.labels[2 * p] < 4:  # these identities have two cameras
        assert len(set(index.camid[rows])) == 2


def test_choose_identities_keeps_pairs_together_by_hand():
  partners = np.array([3, -1, -1, 0, 5, 4])  # pairs (0, 3), (4, 5)
  # 3 is the higher of its pair: skipped; 1 taken; 0 brings 3; 2 taken.
  assert sampling.choose_identities(np.array([3, 1, 0, 2, 4, 5]), partners, 4).tolist() == \
      [1, 0, 3, 2]
  # One place left and the next is a pair's lower label: skipped for a singleton.
  assert sampling.choose_identities(np.array([1, 4, 2, 0, 3, 5]), partners, 2).tolist() == [1, 2]
  # Only pairs remain for the last place: the first unchosen label fills it.
  pairs_only = np.array([1, 0, 3, 2, -1])  # pairs (0, 1), (2, 3); 4 alone
  assert sampling.choose_identities(np.array([4, 0, 1, 2, 3]), pairs_only, 2).tolist() == [4, 0]


def test_pk_with_partners_always_draws_twins_together_at_the_usual_rate():
  n, p = 150, 8
  labels = np.repeat(np.arange(n), 2)
  index = _index(labels.tolist(), [0, 1] * n, [10] * (2 * n))
  partners = np.full(n, -1)
  partners[np.arange(0, 30, 2)], partners[np.arange(1, 30, 2)] = np.arange(1, 30, 2), \
      np.arange(0, 30, 2)
  counts = np.zeros(n)
  for step in range(3000):
    plan = sampling.plan_pk_batch(index, labels, seed=0, step=step, num_identities=p,
                                  num_instances=2, clip_len=4, clip_sampler='consecutive',
                                  partners=partners)
    present = set(plan.labels.tolist())
    assert len(present) == p
    assert all(partners[x] in present for x in present if partners[x] >= 0)
    counts[list(present)] += 1
  # Each identity is drawn in about P / N = 5.3% of batches, twins as often as the others.
  assert abs(counts[:30].mean() / 3000 - p / n) < 0.006
  assert abs(counts[30:].mean() / 3000 - p / n) < 0.003


def test_identity_with_fewer_than_k_tracklets_repeats(index):
  plan = _plan(index, 0, num_identities=6, num_instances=3)
  rows = plan.tracklets[plan.labels == 4]
  assert rows.tolist() == [16, 16, 16]


def test_plan_is_a_pure_function_of_seed_and_step(index):
  a, b = _plan(index, 5), _plan(index, 5)
  for x, y in zip((a.tracklets, a.frames, a.aug_seeds), (b.tracklets, b.frames, b.aug_seeds)):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(_plan(index, 6).tracklets, a.tracklets) or \
      not np.array_equal(_plan(index, 6).frames, a.frames)


def test_process_slices_union_is_the_global_batch(index):
  plan = _plan(index, 2)
  parts = [plan.rows(*sampling.process_rows(6, i, 3)) for i in range(3)]
  np.testing.assert_array_equal(np.concatenate([p.tracklets for p in parts]), plan.tracklets)
  with pytest.raises(ValueError, match='cannot be split evenly over 4 processes'):
    sampling.process_rows(6, 0, 4)


def test_too_many_identities_is_a_clear_error(index):
  with pytest.raises(ValueError, match='num_identities = 7 exceeds the 6 training identities'):
    _plan(index, 0, num_identities=7)


@pytest.mark.parametrize('n,expected', [
    (10, list(range(10)) + [9] * 5),
    (29, list(range(15))),
    (30, list(range(0, 30, 2))),
    (45, list(range(0, 45, 3))),
    (920, list(range(0, 855, 61))),
])
def test_evenly_matches_torchreid_vectors(n, expected):
  np.testing.assert_array_equal(sampling.evenly_spaced(n, 15), expected)


def test_consecutive_window_loops_short_tracklets():
  rng = np.random.default_rng(0)
  np.testing.assert_array_equal(sampling.sample_clip(3, 5, 'consecutive', rng), [0, 1, 2, 0, 1])
  clip = sampling.sample_clip(50, 8, 'consecutive', rng)
  np.testing.assert_array_equal(np.diff(clip), np.ones(7))


def test_restricted_takes_one_frame_per_chunk():
  rng = np.random.default_rng(0)
  for _ in range(50):
    clip = sampling.sample_clip(40, 4, 'restricted', rng)
    np.testing.assert_array_equal(clip // 10, [0, 1, 2, 3])
  short = sampling.sample_clip(2, 4, 'restricted', rng)
  assert set(short.tolist()) <= {0, 1}


def test_eval_chunks_cover_all_frames_and_cycle_their_own():
  # 10 frames, T = 4: chunks [0-3], [4-7], [8, 9, 8, 9] (the last cycles its own frames).
  np.testing.assert_array_equal(sampling.eval_chunks(10, 4),
                                [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]])
  np.testing.assert_array_equal(sampling.eval_chunks(3, 4), [[0, 1, 2, 0]])
  np.testing.assert_array_equal(sampling.eval_chunks(10, 4, max_chunks=1), [[0, 1, 2, 3]])
  np.testing.assert_array_equal(sampling.eval_chunks(10, 4, 'evenly'), [[0, 2, 4, 6]])
