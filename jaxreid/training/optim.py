"""Optimizer and learning-rate schedule from the config, with Optax.

Weight decay is applied as the papers' PyTorch code applies it: for 'sgd' and
'adam' it is an L2 term added to the gradient before the update (torch's
``weight_decay``); 'adamw' decouples it (Loshchilov & Hutter).

``config.pretrained_lr_mult`` (default 1.0) scales the learning rate of the
parameters under every backbone (any module named ``backbone``: ``params['backbone']``,
or both streams' ``spatial/backbone`` and ``temporal/backbone``), as papers do for
ImageNet-pretrained layers (RRU: 0.1x), through ``optax.multi_transform``;
layers new inside a backbone that the model names in its ``new_layers`` (M3D's
temporal kernels and RALs, which no 2D file provides) learn at the base rate:
each group gets the same optimizer with its own schedule, as PyTorch's
parameter groups with their own ``lr``. At 1.0 the optimizer is the plain one,
so the optimizer state keeps its structure (older checkpoints resume).

``config.first_stage`` (two-stage training, MSTN) holds the parameters
outside ``first_stage.modules`` still for the first ``first_stage.steps``
steps: ``optax.conditionally_mask`` zeroes their updates and leaves their
gradient transformation's state (weight decay, Adam moments) untouched, so
they start the second stage as initialized, with fresh moments, on the same
schedule as everyone.
"""

import fnmatch
import functools

import jax
import optax

OPTIMIZERS = ('adam', 'adamw', 'sgd')
SCHEDULES = ('cosine', 'step')  # see make_schedule


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
                     f"valid choices: {', '.join(SCHEDULES)}.")
  if not warmup:
    return after
  # Warm up from 1% of the base rate, as the strong re-ID baseline does.
  ramp = optax.linear_schedule(base * 0.01, base, warmup)
  return optax.join_schedules([ramp, after], [warmup])


BACKBONE_MODULE = 'backbone'


def backbone_labels(params, new_layers=()):
  """'pretrained' for every parameter inside a module named 'backbone' (at any
  depth), 'new' elsewhere and for the backbone's own new layers: paths below
  the backbone (e.g. 'layer2_0/temporal_conv/kernel') matching an fnmatch
  pattern of `new_layers`."""

  def label(keys, _):
    path = tuple(str(getattr(k, 'key', k)) for k in keys)
    if BACKBONE_MODULE not in path[:-1]:
      return 'new'
    below = '/'.join(path[len(path) - path[::-1].index(BACKBONE_MODULE):])
    return 'new' if any(fnmatch.fnmatchcase(below, p) for p in new_layers) else 'pretrained'

  labels = jax.tree_util.tree_map_with_path(label, params)
  if 'pretrained' not in jax.tree.leaves(labels):
    raise ValueError("config.pretrained_lr_mult is set but the model has no module named "
                     f"{BACKBONE_MODULE!r}.")
  return labels


def _base_optimizer(config, learning_rate) -> optax.GradientTransformation:
  wd = config.weight_decay
  if config.optimizer == 'sgd':
    return optax.chain(optax.add_decayed_weights(wd),
                       optax.sgd(learning_rate, momentum=config.momentum,
                                 nesterov=config.nesterov))
  if config.optimizer == 'adam':
    return optax.chain(optax.add_decayed_weights(wd), optax.adam(learning_rate))
  if config.optimizer == 'adamw':
    return optax.adamw(learning_rate, weight_decay=wd)
  raise ValueError(f'Unknown config.optimizer {config.optimizer!r}; '
                   f'valid choices: {", ".join(OPTIMIZERS)}.')


def _direction(config) -> optax.GradientTransformation:
  """`_base_optimizer` before its learning rate (weight decay and moments)."""
  wd = config.weight_decay
  if config.optimizer == 'sgd':
    return optax.chain(optax.add_decayed_weights(wd),
                       optax.trace(decay=config.momentum, nesterov=config.nesterov))
  if config.optimizer == 'adam':
    return optax.chain(optax.add_decayed_weights(wd), optax.scale_by_adam())
  return optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(wd))  # adamw


def first_stage_labels(modules):
  """labels(params): 'first' under the top-level modules `modules`, 'later' elsewhere."""

  def labels(params):
    missing = sorted(set(modules) - set(params))
    if missing:
      raise ValueError(f'config.first_stage.modules names {missing}, which the model does not '
                       f'have; its top-level modules: {", ".join(sorted(params))}.')
    return {name: jax.tree.map(lambda _, n=name: 'first' if n in modules else 'later', tree)
            for name, tree in params.items()}

  return labels


def _two_stage_optimizer(config, schedule) -> optax.GradientTransformation:
  """`first_stage.modules` train from step 0; the others from
  `first_stage.steps` on (see the module docstring)."""
  start = int(config.first_stage.steps)
  later = optax.chain(
      optax.conditionally_mask(_direction(config), lambda count: count >= start),
      optax.scale_by_learning_rate(schedule))  # counts every step: the global schedule
  return optax.multi_transform({'first': _base_optimizer(config, schedule), 'later': later},
                               first_stage_labels(tuple(config.first_stage.modules)))


def make_optimizer(config, new_layers=()) -> tuple[optax.GradientTransformation,
                                                   optax.Schedule]:
  """Returns (optimizer, learning-rate schedule) for `config.optimizer`.

  The schedule is the base rate (new layers); with ``config.pretrained_lr_mult``
  != 1 the backbone's parameters follow `pretrained_lr_mult` times it, but for
  those matching `new_layers` (the model's, see `backbone_labels`); with
  ``config.first_stage.steps`` > 0, two stages (module docstring).
  """
  schedule = make_schedule(config)
  mult = float(config.pretrained_lr_mult)
  if mult < 0:
    raise ValueError(f'config.pretrained_lr_mult must be >= 0, got {mult}.')
  if config.get('first_stage') and config.first_stage.steps:
    if mult != 1.0:
      raise ValueError('config.first_stage and config.pretrained_lr_mult != 1 together are not '
                       'supported; set one of them off.')
    return _two_stage_optimizer(config, schedule), schedule
  if mult == 1.0:
    return _base_optimizer(config, schedule), schedule
  scaled = lambda step: mult * schedule(step)
  tx = optax.multi_transform(
      {'new': _base_optimizer(config, schedule), 'pretrained': _base_optimizer(config, scaled)},
      functools.partial(backbone_labels, new_layers=tuple(new_layers)))
  return tx, schedule
