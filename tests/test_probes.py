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


def test_parameter_drift_groups_blocks_and_measures_the_move_by_hand():
  from experiments import drift_statistics
  init = {'backbone': {'layer1_0': {'temporal_conv1': {'kernel': np.zeros((2, 2))},
                                    'conv1': {'kernel': np.full((3,), 2.0)}},
                       'layer2_1': {'temporal_conv2': {'kernel': np.zeros((2,))}}},
          'rru': {'cell': {'spatial_fc1': {'kernel': np.ones((4,))}}}}
  final = {'backbone': {'layer1_0': {'temporal_conv1': {'kernel': np.full((2, 2), 0.5)},
                                     'conv1': {'kernel': np.full((3,), 2.0)}},
                        'layer2_1': {'temporal_conv2': {'kernel': np.array([1.0, -1.0])}}},
           'rru': {'cell': {'spatial_fc1': {'kernel': np.array([1.0, 1.0, 1.0, 4.0])}}}}
  drift = drift_statistics.drift_by_group(init, final)
  assert list(drift) == ['temporal_conv/kernel', 'conv/kernel', 'rru/cell/spatial_fc/kernel']
  t = drift['temporal_conv/kernel']  # 4 weights moved 0.5, 2 moved 1: ||d|| = sqrt(1 + 2)
  assert t['size'] == 6 and t['init_norm'] == 0 and t['relative'] is None
  assert t['delta_norm'] == pytest.approx(np.sqrt(3)) and t['delta_rms'] == pytest.approx(0.5 ** 0.5)
  assert drift['conv/kernel']['delta_norm'] == 0 and drift['conv/kernel']['relative'] == 0
  assert drift['rru/cell/spatial_fc/kernel']['relative'] == pytest.approx(3 / 2)
  assert '| temporal_conv/kernel | 6 | 0 | 1.73 | from 0 |' in drift_statistics.format_table(drift)
  with pytest.raises(ValueError, match='differ in structure'):
    drift_statistics.drift_by_group(init, {'rru': final['rru']})


def test_bn_population_statistics_are_the_mean_batch_statistics_whatever_the_momentum():
  import flax.linen as nn
  import jax
  from experiments import bn_population

  class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train=True):
      x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name='a')(x)
      return nn.BatchNorm(use_running_average=not train, momentum=0.5, name='b')(2 * x + 1)

  net = Net()
  rng = np.random.default_rng(0)
  batches = [rng.normal(3.0, 2.0, (5, 4)).astype(np.float32) for _ in range(3)]
  variables = net.init(jax.random.key(0), batches[0])

  def update(batch_stats, x):
    _, new = net.apply({'params': variables['params'], 'batch_stats': batch_stats}, x,
                       mutable=['batch_stats'])
    return new['batch_stats']

  population = bn_population.population_statistics(update, variables['batch_stats'], batches)
  # By hand: 'a' sees x; 'b' sees 2 * a(x) + 1, where a(x) is x normalized by its
  # batch statistics (scale 1 and bias 0 at init: mean 0, variance v / (v + eps)).
  eps = 1e-5
  np.testing.assert_allclose(population['a']['mean'], np.mean([b.mean(0) for b in batches], 0),
                             rtol=1e-5)
  np.testing.assert_allclose(population['a']['var'], np.mean([b.var(0) for b in batches], 0),
                             rtol=1e-4)
  var_b = np.mean([4 * b.var(0) / (b.var(0) + eps) for b in batches], 0)
  np.testing.assert_allclose(population['b']['mean'], 1.0, rtol=1e-5)
  np.testing.assert_allclose(population['b']['var'], var_b, rtol=1e-4)
  # Moving averages 1 std off in mean and 4x the variance, against the population.
  moving = {'a': {'mean': population['a']['mean'] + np.sqrt(population['a']['var']),
                  'var': 4 * population['a']['var']}}
  shift = bn_population.relative_shift(moving, {'a': population['a']})
  assert shift['mean'] == pytest.approx(1.0, rel=1e-3) and shift['var'] == pytest.approx(3.0, rel=1e-3)


def test_gait_periods_against_clip_length_by_hand():
  from data_pipelines.synthetic_video_reid.generative_model import Gait
  g = lambda f, s: Gait(frequency=f, stride=s, arm_swing=0, knee_flex=0, elbow_bend=0, lean=0)
  slow, fast, faster = g(0.05, 0.4), g(0.1, 0.25), g(0.2, 0.1)  # periods 20, 10, 5 frames
  out = gait_statistics.periods([slow, fast, faster, slow], [(slow, fast), (slow, faster)])
  assert (out['period_min'], out['period_median'], out['period_max']) == pytest.approx((5, 15, 20))
  assert out['clip'][8]['share_under_one_cycle'] == 0.75  # 20, 10, 20 > 8
  assert out['clip'][16]['share_under_one_cycle'] == 0.5
  assert out['clip'][8]['median_cycles'] == pytest.approx(np.median([0.4, 0.8, 1.6, 0.4]))
  # Swing speeds 0.02, 0.025, 0.02: the first pair 1.25x apart, the second equal.
  assert out['pairs'] == 2 and out['pairs_with_swing_speed_within_1.3x'] == 2
