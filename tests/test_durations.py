"""Durations in epochs become steps from the dataset's counts: hand-computed
steps for each kind of epoch, periods in both forms, resolving twice."""

import types

import pytest

from experiments import durations
from experiments.configs import base

# iLIDS-VID's training split: 150 identities, 300 tracklets.
ILIDS = types.SimpleNamespace(num_train_ids=150, num_train_tracklets=300)


def _config(epoch, num_identities, num_instances):
  c = base.get_config()
  c.epoch, c.num_identities, c.num_instances = epoch, num_identities, num_instances
  return c


@pytest.mark.parametrize('epoch,p,k,steps', [
    ('identities', 8, 4, 18),  # every identity K times: 150 * 4 clips / 32 = 18.75 -> 18
    ('identities', 10, 2, 15),  # RRU: 150 / 10
    ('tracklets', 24, 1, 12),  # M3D: 300 tracklets / 24
    ('pairs', 2, 2, 150),  # CRF: 2 x 150 pairs of 2 clips / (2 pairs of 2 clips)
    ('tracklets', 400, 1, 1),  # an epoch shorter than one batch still takes a step
])
def test_steps_per_epoch(epoch, p, k, steps):
  assert durations.steps_per_epoch(_config(epoch, p, k), ILIDS) == steps


def test_resolve_writes_steps_and_clears_epochs():
  c = _config('identities', 8, 4)  # 18 steps per epoch
  c.num_train_steps, c.num_train_epochs = None, 600
  c.schedule.decay_steps, c.schedule.decay_epochs = None, (200, 400)
  c.checkpoint_every_steps, c.checkpoint_every_epochs = None, 50
  c.log_every_steps, c.log_every_epochs = 100, 1  # both: the sooner, 18
  durations.resolve(c, durations.steps_per_epoch(c, ILIDS))
  assert (c.num_train_steps, c.schedule.decay_steps, c.checkpoint_every_steps,
          c.log_every_steps) == (10800, (3600, 7200), 900, 18)
  assert (c.num_train_epochs, c.schedule.decay_epochs, c.checkpoint_every_epochs,
          c.log_every_epochs) == (None, None, None, None)
  durations.resolve(c, 1)  # resolved already: nothing changes
  assert (c.num_train_steps, c.log_every_steps) == (10800, 18)


def test_a_period_takes_at_least_one_step_and_the_steps_form_when_sooner():
  c = base.get_config()
  c.log_every_epochs, c.checkpoint_every_epochs = 0.1, 10
  c.log_every_steps, c.checkpoint_every_steps = None, 7
  durations.resolve(c, 3)
  assert (c.log_every_steps, c.checkpoint_every_steps) == (1, 7)


def test_steps_configs_are_left_as_they_are():
  c = base.get_config()
  before = c.to_dict()
  durations.resolve(c, 18)
  assert c.to_dict() == before and durations.problems(c) == []
