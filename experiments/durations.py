"""Durations in steps or in epochs, converted once from the dataset's own counts.

A duration of the config is given in steps or in epochs (big_vision's
``u.steps``): ``num_train_steps`` or ``num_train_epochs``,
``schedule.decay_steps`` or ``schedule.decay_epochs``, ``log_every_steps`` or
``log_every_epochs``, ``checkpoint_every_steps`` or ``checkpoint_every_epochs``
(every ``X_epochs`` field beside an ``X_steps`` one); the form not used is
None. What one epoch is follows the paper's sampler (``config.epoch``, one of
``EPOCHS``); how many steps it takes depends on the training identities or
tracklets, which only the prepared dataset knows. So ``resolve`` writes every
``X_epochs`` field into its ``X_steps`` field once the dataset is read
(``common.make_data``, which every entry point that reads a dataset passes
through): the trainer sees steps only, and no config hard-codes a dataset's
size.

A total (``num_train``, ``schedule.decay``) is given in one form. A period
(``X_every``) may be given in both, and then the sooner wins ("log every
epoch, or every 100 steps if that comes first").

This is experiments/ code, not the trainer's: the config and the dataset meet
here (jaxreid/ never sees a dataset, data_pipelines/ never a schedule).
"""

# config.epoch -> clips in one epoch, from the data's counts and the config.
EPOCHS = {
    # Every training identity K times: a PK sampler's epoch, floor(ids / P)
    # steps (the RandomIdentitySampler of [VideoReID]; [RRU]'s official code).
    'identities': lambda data, c: data.num_train_ids * c.num_instances,
    # Every training tracklet once ([M3D]'s plain random batches).
    'tracklets': lambda data, c: data.num_train_tracklets,
    # 2 x (training identities) siamese pairs of two clips ([RCN]'s code).
    'pairs': lambda data, c: 2 * 2 * data.num_train_ids,
}


def _durations(config, prefix: str = ''):
  """[(sub-config, dotted name without the suffix, epochs, steps)] of every
  `X_epochs` field, at any depth."""
  out = []
  for key in list(config.keys()):
    if hasattr(config[key], 'keys'):
      out.extend(_durations(config[key], f'{prefix}{key}.'))
    elif key.endswith('_epochs'):
      name = key[:-len('_epochs')]
      out.append((config, prefix + name, config[key], config[name + '_steps']))
  return out


def _is_period(name: str) -> bool:
  return name.endswith('_every')


def _valid(value, period: bool) -> bool:
  """A number (each number of a tuple) >= 0, or > 0 for a period."""
  numbers = value if isinstance(value, tuple) else (value,)
  return all(not isinstance(v, bool) and isinstance(v, (int, float))
             and (v > 0 if period else v >= 0) for v in numbers)


def problems(config) -> list:
  """One line per duration given in neither form, a total given in both, or
  a value out of range (the steps of periods excepted: the trainer's
  ``check_settings`` checks those). `validate_config` reports them before
  any work."""
  lines = []
  for _, name, epochs, steps in _durations(config):
    flag, period = f'--config.{name}', _is_period(name)
    if epochs is None and steps is None:
      lines.append(f'{flag}_steps and {flag}_epochs are both None; set one of them.')
    elif epochs is not None and steps is not None and not period:
      lines.append(f'{flag}_steps={steps!r} and {flag}_epochs={epochs!r}: give this duration '
                   'in steps or in epochs, not both (a flag can change the form its config file '
                   'uses; a config file sets the other to None).')
    checked = [('epochs', epochs, 'a number')]
    if not period:
      checked.append(('steps', steps, 'an integer'))
    for unit, value, what in checked:
      if value is not None and not _valid(value, period):
        what = 'numbers' if isinstance(value, tuple) else what
        lines.append(f'{flag}_{unit}={value!r}: expected {what} {"> 0" if period else ">= 0"}.')
  return lines


def steps_per_epoch(config, data) -> int:
  """Steps of one epoch of `data` (``config.epoch``) in P x K clips; at least 1."""
  clips = EPOCHS[config.epoch](data, config)
  return max(clips // (config.num_identities * config.num_instances), 1)


def resolve(config, per_epoch: int):
  """Writes every duration given in epochs into its steps field, in place,
  and sets the epochs field to None (resolving again changes nothing).

  Args:
    config: the experiment config.
    per_epoch: steps per epoch, ``steps_per_epoch(config, data)``.
  Returns:
    `config`.
  """
  for node, name, epochs, steps in _durations(config):
    if epochs is None:
      continue
    key = name.rpartition('.')[2]
    if isinstance(epochs, tuple):
      converted = tuple(int(round(e * per_epoch)) for e in epochs)
    elif _is_period(name):  # at least one step, and the sooner of both forms
      converted = max(int(round(epochs * per_epoch)), 1)
      converted = converted if steps is None else min(converted, steps)
    else:
      converted = int(round(epochs * per_epoch))
    node[key + '_steps'], node[key + '_epochs'] = converted, None
  return config
