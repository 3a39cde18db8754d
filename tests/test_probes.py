"""The temporal-evidence tools: experiments.temporal_probe's frame
perturbations and experiments.gait_signal's statistics, on hand-made arrays."""

import numpy as np
import pytest

from experiments import frame_perturbations, gait_statistics


def _batch():
  frames = np.arange(2 * 4, dtype=np.uint8).reshape(2, 4, 1, 1, 1) * np.ones((1, 1, 2, 2, 3),
                                                                             np.uint8)
  flow = np.arange(2 * 4, dtype=np.float32).reshape(2, 4, 1, 1, 1) * np.ones((1, 1, 2, 2, 2))
  return {'frames': frames, 'flow': flow, 'tracklet': np.array([0, 1])}


def test_shuffled_permutes_each_clip_with_its_flow_and_frozen_repeats_the_first_frame():
  batch, rng = _batch(), np.random.default_rng(0)
  assert frame_perturbations.perturb(batch, 'as_is', rng) is batch
  shuffled = frame_perturbations.perturb(batch, 'shuffled', rng)
  values = shuffled['frames'][:, :, 0, 0, 0]  # (2, 4): frame t of clip b holds 4b + t
  assert sorted(values[0]) == [0, 1, 2, 3] and sorted(values[1]) == [4, 5, 6, 7]
  assert not np.array_equal(values, batch['frames'][:, :, 0, 0, 0])
  np.testing.assert_array_equal(shuffled['flow'][:, :, 0, 0, 0], values)  # flow moves along
  frozen = frame_perturbations.perturb(batch, 'frozen', rng)
  np.testing.assert_array_equal(frozen['frames'][:, :, 0, 0, 0], [[0] * 4, [4] * 4])
  assert not frozen['flow'].any()
  np.testing.assert_array_equal(frozen['tracklet'], batch['tracklet'])
  with pytest.raises(ValueError, match='valid: as_is, shuffled, frozen'):
    frame_perturbations.perturb(batch, 'reversed', rng)


def test_motion_energy_is_the_leg_region_mean_absolute_difference():
  frames = np.zeros((3, 10, 4, 3), np.uint8)
  frames[1, 6:] = 30  # rows 6..9 are the lower 40% of 10 rows
  frames[2, 6:] = 90
  frames[:, :6] = np.array([0, 200, 0], np.uint8)  # changes above the legs do not count
  assert gait_statistics.motion_energy(frames) == pytest.approx((30 + 60) / 2)
  # The query is 1.0; own tracklets 1.2 and 0.5, twin's 2.0: closer in 3 of 4 pairs.
  accuracy = gait_statistics.choice_accuracy(1.0, [1.2, 0.5], [2.0, 0.9],
                                         lambda a, b: abs(a - b))
  assert accuracy == [1.0, 0.0, 1.0, 0.0]
