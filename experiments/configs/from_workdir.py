r"""The config a workdir was trained with, read back from its config.json.

The entry points use it when --config is not given:

  python -m experiments.evaluate --workdir=W [--config.dataset=... ...]

is the same as --config=experiments/configs/from_workdir.py:W. Overrides
(--config.x=...) apply on top, as for any config file. A field the record
lacks (it was written by an older version) gets base.py's default, with a
warning naming it, so old runs still evaluate and export.
"""

import os

import ml_collections
from absl import logging

from experiments.configs import base
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
  config = base.get_config()
  missing = _overlay(config, _tuples(record['config']))
  if missing:
    code = record.get('code') or {}
    logging.warning('%s lacks %s (written by older code, commit %s): using the defaults of '
                    'experiments/configs/base.py.', os.path.join(workdir, run_record.CONFIG_FILE),
                    ', '.join(missing), code.get('git_commit') or 'unknown')
  return config


def _overlay(config: ml_collections.ConfigDict, recorded: dict, prefix: str = '') -> list:
  """Sets `config`'s fields to the recorded values, in place; returns the
  names of the fields the record lacks (they keep base.py's defaults)."""
  missing = [prefix + k for k in config.keys() if k not in recorded]
  for key, value in recorded.items():
    if isinstance(value, dict) and isinstance(config.get(key), ml_collections.ConfigDict):
      missing += _overlay(config[key], value, f'{prefix}{key}.')
    else:
      with config.ignore_type():  # a config may have replaced a base field's type
        config[key] = value
  return missing
