"""The train state on the mesh: built new (with pretrained backbone weights),
resumed from the workdir's newest intact checkpoint, or restored for
inference (evaluate, extract, search)."""

import dataclasses
import os
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import logging

from jaxreid import sharding
from jaxreid.backbones import pretrained
from jaxreid.models import get_model
from jaxreid.training import checkpoint, checkpoint_record, optim, state as state_lib

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build_model(config, num_classes: int) -> nn.Module:
  """The configured model; raises a clear error for an unknown name or dtype."""
  if config.dtype not in DTYPES:
    raise ValueError(f'Unknown config.dtype {config.dtype!r}; valid choices: '
                     f'{", ".join(DTYPES)}.')
  return get_model(config.model_name, num_classes=num_classes,
                   dtype=DTYPES[config.dtype], **config.model)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a training run starts from (`setup_state`)."""
  model: nn.Module
  state: state_lib.TrainState  # replicated on the mesh
  schedule: Callable  # step -> learning rate, for the logs
  state_sharding: Any  # the state's tree of shardings
  checkpointer: checkpoint.Checkpointer
  meta: dict  # saved with every checkpoint (``checkpoint_record.checkpoint_meta``)


@dataclasses.dataclass(frozen=True)
class _Blueprint:
  """The state before any array exists: how to make it and where it lives."""
  model: nn.Module
  schedule: Callable
  init: Callable  # rng -> TrainState
  target: Any  # ShapeDtypeStructs carrying the shardings: what a restore fills
  state_sharding: Any


def _blueprint(config, num_classes: int, mesh) -> _Blueprint:
  model = build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config, getattr(model, 'new_layers', ()))
  sample = state_lib.sample_input(config.clip_len, config.height, config.width,
                                  flow=config.use_flow)
  init = lambda rng: state_lib.create_train_state(model, tx, rng, sample)
  abstract = jax.eval_shape(init, jax.random.key(config.seed))
  state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  return _Blueprint(model, schedule, init,
                    checkpoint.abstract_with_shardings(abstract, state_sharding), state_sharding)


# XLA compile options of the init program, by backend. On CPU, most of an
# init's compile time at XLA's default LLVM optimization level (3) goes into
# the initializers' threefry random bits; level 2 compiles every model's init
# 2-3x faster into bitwise the same state (`python -m experiments.benchmark
# --suite=init_compile`, docs/benchmarks.md). Init runs once, so how fast its
# code runs does not matter.
INIT_COMPILER_OPTIONS = {'cpu': {'xla_backend_optimization_level': 2}}


def compile_init(init: Callable, state_sharding, rng):
  """``jax.jit(init)`` compiled ahead for `rng`, with ``INIT_COMPILER_OPTIONS``."""
  lowered = jax.jit(init, out_shardings=state_sharding).lower(rng)
  return lowered.compile(compiler_options=INIT_COMPILER_OPTIONS.get(jax.default_backend()))


def _initial_state(config, blueprint: _Blueprint):
  rng = jax.random.key(config.seed)
  state = compile_init(blueprint.init, blueprint.state_sharding, rng)(rng)
  if config.pretrained:  # ImageNet weights; the model says where they go
    state = pretrained.load_into_train_state(state, blueprint.model, config.pretrained,
                                             blueprint.state_sharding)
  return state


def initial_state(config, num_classes: int, mesh):
  """The state a new training run of `config` starts from (the same arrays:
  initialized from ``jax.random.key(config.seed)``, then ``config.pretrained``)."""
  return _initial_state(config, _blueprint(config, num_classes, mesh))


def setup_state(config, workdir: str, num_classes: int, mesh, for_training: bool = True,
                meta=None) -> Setup:
  """Builds the model and either restores the workdir's newest intact
  checkpoint (damaged ones are set aside, see ``checkpoint.py``) or
  initializes a new state in place on the mesh, then loading
  ``config.pretrained`` into its backbone(s) if set (never on resume).

  Args:
    for_training: see ``checkpoint.Checkpointer``.
    meta: the record to save with and compare against (default
      ``checkpoint_record.checkpoint_meta(config, num_classes)``).
  """
  blueprint = _blueprint(config, num_classes, mesh)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints, for_training=for_training)
  meta = checkpoint_record.checkpoint_meta(config, num_classes) if meta is None else meta
  state, _ = ckpt.restore(blueprint.target, meta)
  if state is None:
    state = _initial_state(config, blueprint)
  else:
    logging.info('Resumed from %s at step %d.', ckpt.directory, int(state.step))
  return Setup(model=blueprint.model, state=state, schedule=blueprint.schedule,
               state_sharding=blueprint.state_sharding, checkpointer=ckpt, meta=meta)


STEP_CHOICES = ('latest', 'best')  # or a step number


def restore_for_inference(config, workdir: str, mesh, step='latest'):
  """A checkpoint of `workdir`, for evaluation, extraction or search: the
  newest intact one ('latest'; damaged ones are reported and skipped, see
  ``checkpoint.py``), the best by ``config.best_checkpoint_metric`` ('best',
  from ``WORKDIR/checkpoints_best``), or that of a step number.

  The number of classes comes from the checkpoint's own record, so no dataset
  is needed; only the network must match (``checkpoint.INFERENCE_KEYS`` and
  the parameter shapes): the data, optimizer and schedule may differ, so a
  model evaluates on another dataset. Another input size or clip length that
  leaves the shapes unchanged is allowed with a warning.

  Returns:
    (state, checkpoint meta); the state's opt_state is the checkpoint's, as saved.
  Raises:
    FileNotFoundError: `workdir` holds no such checkpoint (the message lists
      the steps it holds).
  """
  step = str(step)
  if step not in STEP_CHOICES and not step.isdigit():
    raise ValueError(f'--step={step}: expected latest, best or a step number.')
  subdir = checkpoint.BEST_DIR if step == 'best' else 'checkpoints'
  ckpt_dir = os.path.join(os.path.abspath(workdir), subdir)
  missing = (f'No checkpoint in {ckpt_dir}; train first with '
             f'python -m experiments.train --workdir={workdir} ...')
  if step == 'best':
    missing = (f'No best checkpoint in {ckpt_dir}: train with '
               '--config.best_checkpoint_metric=mAP (or rank1) and --config.eval_every_steps=N '
               'to keep one.')
  ckpt = (checkpoint.Checkpointer(workdir, for_training=False, subdir=subdir)
          if os.path.isdir(ckpt_dir) else None)
  try:
    newest = ckpt.latest_meta() if ckpt else None
    if newest is None:
      raise FileNotFoundError(missing)
    wanted = int(step) if step.isdigit() else None
    if wanted is not None and wanted not in ckpt.all_steps():
      raise FileNotFoundError(
          f'--step={wanted}: {ckpt_dir} holds the steps '
          f'{", ".join(map(str, ckpt.all_steps()))} (config.keep_checkpoints keeps the newest N).')
    blueprint = _blueprint(config, newest['num_classes'], mesh)
    state, meta = ckpt.restore(blueprint.target,
                               checkpoint_record.checkpoint_meta(config, newest['num_classes']),
                               step=wanted, for_inference=True)
    if state is None:  # every step vanished meanwhile (a running training's keep-N)
      raise FileNotFoundError(missing)
  finally:
    if ckpt:
      ckpt.close()
  changed = [f'{k} {config[k]} (trained with {meta[k]})' for k in ('height', 'width', 'clip_len')
             if k in meta and meta[k] != config[k]]
  if changed:
    logging.warning('Running the checkpoint of step %d with %s: the shapes fit, but the '
                    'features may differ from those at its training size.', int(state.step),
                    ', '.join(changed))
  return state, meta
