r"""The config a workdir was trained with, read back from its config.json.

The entry points use it when --config is not given:

  python -m experiments.evaluate --workdir=W [--config.dataset=... ...]

is the same as --config=experiments/configs/from_workdir.py:W. Overrides
(--config.x=...) apply on top, as for any config file.
"""

import os

import ml_collections

from jaxreid.training import run_record


def _tuples(value):
  """JSON turned the config's tuples into lists; turn them back, so that
  overrides such as --config.schedule.decay_steps='(3, 4)' keep their type."""
  if isinstance(value, dict):
    return {k: _tuples(v) for k, v in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(v) for v in value)
  return value


def get_config(workdir: str):
  record = run_record.read_config_record(workdir)
  if record is None:
    raise ValueError(
        f'{os.path.join(workdir, run_record.CONFIG_FILE)} does not exist (a workdir trained '
        'before runs recorded their config, or not a workdir); pass --config=FILE.')
  return ml_collections.ConfigDict(_tuples(record['config']))
