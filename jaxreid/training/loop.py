"""``train_and_evaluate(config, workdir, data)``: the whole training run.

The data object comes from ``data_pipelines`` (built by ``experiments/``); this
module never imports TensorFlow and sees only numpy batches. It needs:

  * ``num_train_ids``: classifier width;
  * ``summary_rows()``: (split, #ids, #tracklets, #cameras) rows to print;
  * ``train_batches(start_step)``: iterator of this process's slice of the PK
    batch of each step from `start_step` on ('frames', 'pid', ...);
  * ``eval_batches(split)``, ``split_labels(split)``: see ``retrieval.py``;
  * optionally ``train_pid_values`` (the dataset person ids of the training
    split) and ``builder.builder_config.name``: recorded in the checkpoint, so
    that evaluating on persons it was trained on is refused.

A training run holds ``WORKDIR/.lock`` (``workdir_lock``) for its whole life.
"""

import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
from absl import logging

from jaxreid import losses, reporting
from jaxreid.backbones import pretrained
from jaxreid.evaluation import retrieval
from jaxreid.models import get_model, m3d
from jaxreid.training import checkpoint, optim, sharding, state as state_lib, step as step_lib
from jaxreid.training import workdir_lock, writers

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


class NonFiniteLossError(FloatingPointError):
  """The loss or gradient norm became NaN or infinite."""


def build_model(config, num_classes: int):
  """The configured model; raises a clear error for an unknown name or dtype."""
  if config.dtype not in DTYPES:
    raise ValueError(f'Unknown config.dtype {config.dtype!r}; valid choices: '
                     f'{", ".join(DTYPES)}.')
  return get_model(config.model_name, num_classes=num_classes,
                   dtype=DTYPES[config.dtype], **config.model)


def checkpoint_meta(config, num_classes: int, train_pids=None, dataset_config=None) -> dict:
  """What a checkpoint must agree with to be resumed by this config (all of
  it) or used for inference (``checkpoint.INFERENCE_KEYS``).

  Args:
    train_pids: the dataset person ids of the training split, if known:
      stored (sorted) so that evaluation on any of them is refused.
    dataset_config: the builder config actually used ('' resolved to the
      builder's default); default `config.dataset_config`.
  """
  meta = {'model_name': config.model_name, 'model': config.model.to_dict(),
          'num_classes': num_classes, 'dataset': config.dataset,
          'dataset_config': config.dataset_config if dataset_config is None else dataset_config,
          'clip_len': config.clip_len, 'height': config.height, 'width': config.width,
          # What the optimizer state's tree, or its meaning, follows: Adam's
          # moments vs SGD's momentum trace; the schedule kind (the state's
          # step count would index another learning-rate curve). Weight decay
          # and momentum values (0 included) leave the tree unchanged.
          'optimizer': config.optimizer, 'schedule_kind': config.schedule.kind,
          # A backbone learning-rate multiplier splits the optimizer state in two groups.
          'backbone_lr_group': config.pretrained_lr_mult != 1.0}
  if train_pids is not None:
    meta['train_pids'] = sorted(int(p) for p in train_pids)
  return meta


def check_settings(config):
  """Refuses, before any work, bookkeeping settings that would lose the
  trained model or divide by zero; one line naming the flag."""
  def refuse(flag, value, expected, why):
    raise ValueError(f'--config.{flag}={value}: expected {expected} ({why}).')
  if config.keep_checkpoints < 1:
    refuse('keep_checkpoints', config.keep_checkpoints, 'at least 1',
           'keeping none deletes the trained model as soon as it is saved')
  if config.checkpoint_every_steps <= 0:
    refuse('checkpoint_every_steps', config.checkpoint_every_steps, 'a positive number of steps',
           'the final step is always saved; set it to num_train_steps to save only that')
  if config.log_every_steps <= 0:
    refuse('log_every_steps', config.log_every_steps, 'a positive number of steps',
           'metrics and the non-finite checks run at log steps')
  if config.eval_every_steps < 0:
    refuse('eval_every_steps', config.eval_every_steps, '0 (evaluate at the end only) or more',
           'steps between evaluations')
  fraction = config.get('max_skipped_fraction', 0.1)
  if not 0 <= fraction <= 1:
    refuse('max_skipped_fraction', fraction, 'a fraction in [0, 1]',
           'the share of steps skip_nonfinite_steps may skip before the run stops')


def _dataset_config(config, data) -> str:
  """The builder config the data was built with: `config.dataset_config`, or
  the builder's default when that is '' (so that '' and 'split_0' agree)."""
  if config.dataset_config:
    return config.dataset_config
  builder_config = getattr(getattr(data, 'builder', None), 'builder_config', None)
  return getattr(builder_config, 'name', '') or ''


def load_pretrained(state, config, state_sharding):
  """Loads ``config.pretrained`` into the model's backbone(s); the heads keep
  their initialization.

  One-backbone models take it under 'backbone'. The video ResNets (M3D, I3D,
  P3D, two-stream) take the same 2D file into each stream's backbone: 2D
  kernels inflate to I3D's 3D ones at the centre tap and the temporal kernels
  and RALs keep their (identity) initialization, so the network starts as the
  pretrained 2D CNN (docs/design.md, "Per-model decisions").
  """
  if config.model_name not in ('video_resnet', 'two_stream_m3d'):
    return pretrained.load_into_train_state(state, config.pretrained, state_sharding)
  weights = pretrained.load_state_dict(config.pretrained)  # read once for both streams
  for prefix in m3d.backbone_prefixes({'params': state.params}):
    state = pretrained.load_into_train_state(
        state, weights, state_sharding, prefix=prefix, keep_init=m3d.TEMPORAL_KEEP_INIT,
        adapt=pretrained.inflate_kernels)
  return state


def _abstract_state(config, num_classes: int, mesh):
  """(model, schedule, init(rng) -> state, abstract state, state sharding)."""
  model = build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config)
  sample = state_lib.sample_input(config.clip_len, config.height, config.width,
                                  flow=config.get('use_flow', False))
  init = lambda rng: state_lib.create_train_state(model, tx, rng, sample)
  abstract = jax.eval_shape(init, jax.random.key(config.seed))
  state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  return model, schedule, init, abstract, state_sharding


def setup_state(config, workdir: str, num_classes: int, mesh, for_training: bool = True,
                meta=None):
  """Builds the model and either restores the workdir's newest intact
  checkpoint (damaged ones are set aside, see ``checkpoint.py``) or
  initializes a new state in place on the mesh (then loading the backbone's
  ``config.pretrained`` weights, if set; never on resume).

  Args:
    meta: the record to save with and compare against (default
      ``checkpoint_meta(config, num_classes)``).
  Returns:
    (model, state, schedule, state_sharding, checkpointer, meta)
  """
  model, schedule, init, abstract, state_sharding = _abstract_state(config, num_classes, mesh)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints, for_training=for_training)
  meta = checkpoint_meta(config, num_classes) if meta is None else meta
  state, _ = ckpt.restore(checkpoint.abstract_with_shardings(abstract, state_sharding), meta)
  if state is None:
    state = jax.jit(init, out_shardings=state_sharding)(jax.random.key(config.seed))
    if config.get('pretrained'):  # ImageNet weights into every backbone
      state = load_pretrained(state, config, state_sharding)
  else:
    logging.info('Resumed from %s at step %d.', ckpt.directory, int(state.step))
  return model, state, schedule, state_sharding, ckpt, meta


def train_and_evaluate(config, workdir: str, data) -> dict:
  """Trains `config` on `data`, checkpointing in `workdir`, then evaluates.

  Resumes automatically from the newest intact checkpoint in `workdir`.
  Writes TensorBoard events and ``eval_results.json`` to `workdir`. Holds
  ``WORKDIR/.lock`` throughout: a second run on the same workdir stops before
  touching it.

  Returns:
    The final evaluation results (see ``retrieval.evaluate``).
  Raises:
    ValueError: a setting that would lose the model (``check_settings``), or
      the workdir is held by another live run (``workdir_lock``).
  """
  check_settings(config)
  with workdir_lock.hold(workdir):
    return _train_and_evaluate(config, workdir, data)


def _train_and_evaluate(config, workdir: str, data) -> dict:
  """`train_and_evaluate` under the workdir's lock."""
  losses.check_loss_weights(config.losses)
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.num_identities * config.num_instances, mesh,
                                 'config.num_identities * config.num_instances')
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  is_main = jax.process_index() == 0
  if is_main:
    print(reporting.format_table(['subset', '# ids', '# tracklets', '# cameras'],
                                 data.summary_rows()), flush=True)
  meta = checkpoint_meta(config, data.num_train_ids, getattr(data, 'train_pid_values', None),
                         _dataset_config(config, data))
  _, state, schedule, state_sharding, ckpt, meta = setup_state(
      config, workdir, data.num_train_ids, mesh, meta=meta)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info('Model %s: %.2fM parameters; %d devices.', config.model_name,
               num_params / 1e6, mesh.devices.size)

  writer = writers.create_writer(workdir, enabled=is_main)
  start_step = int(state.step)
  total_steps = config.num_train_steps
  if start_step == 0:
    writer.write_hparams({k: v for k, v in _flatten(config.to_dict()).items()})
  train_step = step_lib.make_train_step(config, schedule, state_sharding, mesh)
  embed_fn = step_lib.make_embed_fn(mesh, flip=config.eval.flip)
  batches = data.train_batches(start_step)
  skip = config.get('skip_nonfinite_steps', False)
  guard = _NonFiniteGuard(ckpt, skip, (ckpt.restored_meta or {}).get('skipped_steps', 0))
  preemption = _PreemptionNotice(ckpt)
  last_time, last_step, saved_step = time.time(), start_step, start_step
  try:
    for step in range(start_step, total_steps):
      batch = next(batches)
      if step == start_step:  # the first call compiles: say so, it can take minutes
        logging.info('Compiling the train step (the first step of every run: seconds for the '
                     'default config, minutes for the full-size video networks) ...')
        compile_start = time.time()
      state, metrics = train_step(state, sharding.to_global(batch, mesh))
      if step == start_step:
        jax.block_until_ready(metrics)
        logging.info('Compiled the train step and ran step %d in %.0f s.', step + 1,
                     time.time() - compile_start)
        # steps/s and ETA from here on exclude compilation
        last_time, last_step = time.time(), step + 1
      done = step + 1
      guard.update(done, metrics)  # on device: no host sync here
      if done % config.log_every_steps == 0 or done == total_steps:
        guard.check()
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        metrics.pop('nonfinite')
        if skip:
          metrics['skipped_steps'] = guard.skipped()
          guard.check_skipped(done, config.get('max_skipped_fraction', 0.1))
        now = time.time()
        rate = ((done - last_step) / max(now - last_time, 1e-9) if done > last_step
                else 1 / max(now - compile_start, 1e-9))  # only the compiling step so far
        last_time, last_step = now, done
        writer.write_scalars(done, {**metrics, 'steps_per_sec': rate})
        logging.info('step %d/%d (%.0f%%)  %s  %.2f steps/s  ETA %s', done, total_steps,
                     100 * done / total_steps, _format_metrics(metrics), rate,
                     _eta((total_steps - done) / max(rate, 1e-9)))
      stop = preemption.reached(done)
      if done % config.checkpoint_every_steps == 0 or done == total_steps or stop:
        guard.check()  # never write a non-finite state over the last good checkpoint
        ckpt.save(done, state, {**meta, 'skipped_steps': guard.skipped()})
        saved_step = done
      if stop:
        writer.flush()
        ckpt.close()
        raise PreemptedError(
            f'Stopped by a preemption notice (SIGTERM) after step {done}; saved the '
            f'checkpoint of step {saved_step} in {ckpt.directory}. Run the same command '
            'again to continue.')
      if config.eval_every_steps and done % config.eval_every_steps == 0 and done < total_steps:
        results = evaluate_and_report(config, workdir, embed_fn, state, data, mesh, writer, done)
  except NonFiniteLossError:
    writer.flush()
    ckpt.close()  # finishes the pending (good) saves
    raise
  finally:
    preemption.restore()
  ckpt.wait()
  results = evaluate_and_report(config, workdir, embed_fn, state, data, mesh, writer,
                                int(state.step))
  writer.flush()
  ckpt.close()
  return results


class PreemptedError(Exception):
  """Training stopped early on a preemption notice, after a final save."""


class _PreemptionNotice:
  """SIGTERM (preemption) asks the run to save and stop at the end of a step.

  One process: a signal handler sets a flag, read once per step. Several
  processes: Orbax's ``reached_preemption`` (JAX's preemption sync point), so
  that every process stops after the same step and saves collectively.
  """

  def __init__(self, ckpt):
    self.ckpt, self.requested, self.previous = ckpt, False, None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self.previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning('SIGTERM: saving a checkpoint and stopping after this step.')
    self.requested = True

  def reached(self, step: int) -> bool:
    if jax.process_count() > 1:
      return self.ckpt.manager.reached_preemption(step)
    return self.requested

  def restore(self):
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
      self.previous = None


class _NonFiniteGuard:
  """Watches the step's 'nonfinite' metric without a host sync per step.

  Without skipping, the first non-finite step and its metrics are kept on
  device and checked (one sync) before each log line and each save, so a
  non-finite state is never saved. With skipping (the step itself kept the old
  state), it counts the skipped steps, total over the run (kept in the
  checkpoint record, so a resumed run counts on).
  """

  def __init__(self, ckpt, skip: bool, skipped_before: int):
    self.ckpt, self.skip = ckpt, skip
    self.skipped_before = skipped_before
    self.count = jnp.zeros((), jnp.float32)
    self.first = None  # (step, metrics) of the first non-finite step, on device
    self._track = jax.jit(_track_first_nonfinite)

  def update(self, step: int, metrics):
    self.count = self.count + metrics['nonfinite']
    if not self.skip:
      if self.first is None:
        self.first = (jnp.asarray(-1, jnp.int32), metrics)
      self.first = self._track(self.first, step, metrics)

  def skipped(self) -> int:
    return self.skipped_before + (int(jax.device_get(self.count)) if self.skip else 0)

  def check_skipped(self, step: int, max_fraction: float):
    """At a log step, with skipping: one warning line for the steps skipped
    since the last log line; NonFiniteLossError once more than `max_fraction`
    of the steps so far were skipped (a diverged run, whose final model would
    be the one of its last finite step). One skipped step is always allowed:
    a single bad batch is not divergence."""
    total = self.skipped()
    new = total - getattr(self, '_reported', self.skipped_before)
    self._reported = total
    if new:
      logging.warning('Skipped %d non-finite step(s) since the last log line: %d of %d steps '
                      'so far (config.max_skipped_fraction = %g).', new, total, step,
                      max_fraction)
    if total > max(1.0, max_fraction * step):
      raise NonFiniteLossError(
          f'Skipped {total} of {step} steps as non-finite ({100 * total / step:.0f}%), more '
          f'than --config.max_skipped_fraction={max_fraction:g}: the run has diverged. '
          f'Training stopped; {self._kept()}. Lower the learning rate.')

  def _kept(self) -> str:
    """What the user still has: the last good checkpoint, if any."""
    last = self.ckpt.latest_step()
    return (f'the last good checkpoint (step {last}) is kept in {self.ckpt.directory}'
            if last is not None else 'no checkpoint was written yet')

  def check(self):
    """Raises NonFiniteLossError when a step went non-finite (skipping off)."""
    if self.skip or self.first is None:
      return
    step, metrics = jax.device_get(self.first)
    if step < 0:
      return
    values = ', '.join(f'{k}={float(v):.6g}' for k, v in sorted(metrics.items())
                       if k not in ('nonfinite', 'learning_rate'))
    raise NonFiniteLossError(
        f'Non-finite loss or gradient at step {int(step)}: {values}. Training stopped; '
        f'{self._kept()}. Lower the learning rate, or set --config.skip_nonfinite_steps=True to '
        'skip such steps.')


def _track_first_nonfinite(first, step, metrics):
  first_step, first_metrics = first
  new = (first_step < 0) & (metrics['nonfinite'] > 0)
  return (jnp.where(new, jnp.asarray(step, jnp.int32), first_step),
          jax.tree.map(lambda m, f: jnp.where(new, m, f), metrics, first_metrics))


def evaluate_and_report(config, workdir, embed_fn, state, data, mesh, writer, step: int) -> dict:
  """Evaluates, logs the results table and writes ``eval_results.json``."""
  results = retrieval.evaluate(embed_fn, state, data, mesh, metric=config.eval.metric,
                               protocol=config.eval.protocol,
                               normalize=config.eval.normalize_features,
                               rerank=config.eval.rerank.to_dict() if config.eval.use_rerank else None,
                               num_visualize=config.eval.num_visualize,
                               visualize_dir=os.path.join(workdir, 'ranked_lists'))
  results['step'] = step
  scalars = {k: results[k] for k in ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')}
  writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})
  logging.info('Evaluation at step %d: %s', step, _format_metrics(scalars))
  if jax.process_index() == 0:
    print(reporting.format_results(results, title=f'Results at step {step}'), flush=True)
    write_results(workdir, results)
  return results


def write_results(workdir: str, results: dict):
  """Writes ``eval_results.json`` atomically (write, then rename)."""
  path = os.path.join(workdir, 'eval_results.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(results, f, indent=1)
  os.replace(tmp, path)


def _format_metrics(metrics) -> str:
  """'loss=2.301 loss_ce=2.056 ...': the log line's metrics, learning rate last."""
  keys = sorted(k for k in metrics if k != 'learning_rate') + (
      ['learning_rate'] if 'learning_rate' in metrics else [])
  return ' '.join(f'{k}={metrics[k]:.6g}' for k in keys)


def _eta(seconds: float) -> str:
  seconds = int(seconds)
  return f'{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}'


def _flatten(d, prefix=''):
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out


def restore_for_inference(config, workdir: str, mesh):
  """The newest intact checkpoint of `workdir`, for evaluation, extraction or
  search (damaged ones are reported and skipped, see ``checkpoint.py``).

  The number of classes comes from the checkpoint's own record, so no dataset
  is needed; only the network must match (``checkpoint.INFERENCE_KEYS`` and
  the parameter shapes): the data, optimizer and schedule may differ, so a
  model evaluates on another dataset. Another input size or clip length that
  leaves the shapes unchanged is allowed with a warning.

  Returns:
    (state, checkpoint meta); the state's opt_state is the checkpoint's, as saved.
  Raises:
    FileNotFoundError: `workdir` holds no checkpoint.
  """
  ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
  ckpt = (checkpoint.Checkpointer(workdir, for_training=False)
          if os.path.isdir(ckpt_dir) else None)
  try:
    newest = ckpt.latest_meta() if ckpt else None
    if newest is None:
      raise FileNotFoundError(f'No checkpoint in {ckpt_dir}; train first with '
                              f'python -m experiments.train --workdir={workdir} ...')
    _, _, _, abstract, state_sharding = _abstract_state(config, newest['num_classes'], mesh)
    state, meta = ckpt.restore(checkpoint.abstract_with_shardings(abstract, state_sharding),
                               checkpoint_meta(config, newest['num_classes']),
                               for_inference=True)
    if state is None:  # every step vanished meanwhile (a running training's keep-N)
      raise FileNotFoundError(f'No checkpoint in {ckpt_dir}; train first with '
                              f'python -m experiments.train --workdir={workdir} ...')
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


def check_not_trained_on(meta, config, data):
  """Refuses to evaluate a checkpoint on persons it was trained on.

  Same dataset only (person ids of different datasets name different people):
  with the training ids in the checkpoint's record, any query or gallery id
  among them is refused; for an older record without them, another numbered
  split (split_k of iLIDS-VID or PRID-2011, whose splits share persons by
  construction) is refused. Cross-dataset evaluation is always allowed.

  Raises:
    ValueError: naming the dataset configs and the shared ids.
  """
  if meta.get('dataset') != config.dataset:
    return
  trained_on = meta.get('dataset_config')
  here = _dataset_config(config, data)
  if meta.get('train_pids') is not None:
    train = set(meta['train_pids'])
    shared = sorted({int(p) for split in ('query', 'gallery')
                     for p in data.split_labels(split)['pid'] if int(p) in train})
    if not shared:
      return
    detail = (f'{len(shared)} of its query/gallery person ids (e.g. '
              f'{", ".join(map(str, shared[:5]))}) are training persons of the checkpoint')
  elif trained_on != here and str(trained_on).startswith('split_') and here.startswith('split_'):
    detail = 'the numbered splits of a dataset share persons between train and test'
  else:
    return
  raise ValueError(
      f'The checkpoint was trained on {config.dataset} {trained_on!r}; evaluating it on '
      f'{config.dataset} {here!r} would report leaked results: {detail}. Evaluate with '
      f'--config.dataset_config={trained_on}, or on another dataset.')


def evaluate_checkpoint(config, workdir: str, data) -> dict:
  """Restores the newest intact checkpoint of `workdir` and evaluates it on
  `data`; refused on persons it was trained on (``check_not_trained_on``)."""
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  state, meta = restore_for_inference(config, workdir, mesh)
  check_not_trained_on(meta, config, data)
  writer = writers.create_writer(workdir, enabled=jax.process_index() == 0)
  results = evaluate_and_report(config, workdir, step_lib.make_embed_fn(mesh, config.eval.flip),
                                state, data, mesh, writer, int(state.step))
  writer.flush()
  return results
