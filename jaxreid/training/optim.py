"""Optimizer and learning-rate schedule from the config, with Optax.

Weight decay is applied as the papers' PyTorch code applies it: for 'sgd' and
'adam' it is an L2 term added to the gradient before the update (torch's
``weight_decay``); 'adamw' decouples it (Loshchilov & Hutter).
"""

import optax

OPTIMIZERS = ('adam', 'adamw', 'sgd')


def make_schedule(config) -> optax.Schedule:
  """Linear warmup, then the base rate multiplied by `decay_factor` at each of
  `decay_steps` (the step schedule of the re-ID papers), or cosine decay."""
  base = config.learning_rate
  warmup = config.schedule.warmup_steps
  if config.schedule.kind == 'step':
    after = optax.piecewise_constant_schedule(
        base, {max(int(s) - warmup, 1): config.schedule.decay_factor
               for s in config.schedule.decay_steps})
  elif config.schedule.kind == 'cosine':
    after = optax.cosine_decay_schedule(base, max(config.num_train_steps - warmup, 1))
  else:
    raise ValueError(f"Unknown config.schedule.kind {config.schedule.kind!r}; "
                     "valid choices: cosine, step.")
  if not warmup:
    return after
  # Warm up from 1% of the base rate, as the strong re-ID baseline does.
  ramp = optax.linear_schedule(base * 0.01, base, warmup)
  return optax.join_schedules([ramp, after], [warmup])


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
  """Returns (optimizer, learning-rate schedule) for `config.optimizer`."""
  schedule = make_schedule(config)
  wd = config.weight_decay
  if config.optimizer == 'sgd':
    tx = optax.chain(optax.add_decayed_weights(wd),
                     optax.sgd(schedule, momentum=config.momentum, nesterov=config.nesterov))
  elif config.optimizer == 'adam':
    tx = optax.chain(optax.add_decayed_weights(wd), optax.adam(schedule))
  elif config.optimizer == 'adamw':
    tx = optax.adamw(schedule, weight_decay=wd)
  else:
    raise ValueError(f'Unknown config.optimizer {config.optimizer!r}; '
                     f'valid choices: {", ".join(OPTIMIZERS)}.')
  return tx, schedule
