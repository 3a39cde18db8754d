"""``train_and_evaluate(config, workdir, data)``: the whole training run.

The data object comes from ``data_pipelines`` (built by ``experiments/``); this
module never imports TensorFlow and sees only numpy batches. It needs:

  * ``num_train_ids``: classifier width;
  * ``summary_rows()``: (split, #ids, #tracklets, #cameras) rows to print;
  * ``train_batches(start_step)``: iterator of this process's slice of the PK
    batch of each step from `start_step` on ('frames', 'pid', ...);
  * ``eval_batches(split)``, ``split_labels(split)``: see ``retrieval.py``.
"""

import json
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
from absl import logging
from clu import metric_writers

from jaxreid import losses, reporting
from jaxreid.backbones import pretrained
from jaxreid.evaluation import retrieval
from jaxreid.models import get_model, m3d
from jaxreid.training import checkpoint, optim, sharding, state as state_lib, step as step_lib

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


def checkpoint_meta(config, num_classes: int) -> dict:
  """What a checkpoint must agree with to be resumed by this config."""
  return {'model_name': config.model_name, 'model': config.model.to_dict(),
          'num_classes': num_classes, 'dataset': config.dataset,
          'clip_len': config.clip_len, 'height': config.height, 'width': config.width,
          # A backbone learning-rate multiplier splits the optimizer state in two groups.
          'backbone_lr_group': config.pretrained_lr_mult != 1.0}


def load_pretrained(state, config, state_sharding):
  """Loads ``config.pretrained`` into the model's backbone(s); the heads keep
  their initialization.

  One-backbone models take it under 'backbone'. The video ResNets (M3D, I3D,
  P3D, two-stream) take the same 2D file into each stream's backbone: 2D
  kernels inflate to I3D's 3D ones at the centre tap and the temporal kernels
  and RALs keep their (identity) initialization, so the network starts as the
  pretrained 2D CNN (DESIGN.md section 7).
  """
  if config.model_name not in ('video_resnet', 'two_stream_m3d'):
    return pretrained.load_into_train_state(state, config.pretrained, state_sharding)
  weights = pretrained.load_state_dict(config.pretrained)  # read once for both streams
  for prefix in m3d.backbone_prefixes({'params': state.params}):
    state = pretrained.load_into_train_state(
        state, weights, state_sharding, prefix=prefix, keep_init=m3d.TEMPORAL_KEEP_INIT,
        adapt=pretrained.inflate_kernels)
  return state


def setup_state(config, workdir: str, num_classes: int, mesh, for_training: bool = True):
  """Builds the model and either restores the workdir's latest checkpoint or
  initializes a new state in place on the mesh (then loading the backbone's
  ``config.pretrained`` weights, if set; never on resume).

  Returns:
    (model, state, schedule, state_sharding, checkpointer, meta)
  """
  model = build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config)
  sample = state_lib.sample_input(config.clip_len, config.height, config.width,
                                  flow=config.get('use_flow', False))
  init = lambda rng: state_lib.create_train_state(model, tx, rng, sample)
  abstract = jax.eval_shape(init, jax.random.key(config.seed))
  state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints, for_training=for_training)
  meta = checkpoint_meta(config, num_classes)
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

  Resumes automatically from the latest checkpoint in `workdir`. Writes
  TensorBoard events and ``eval_results.json`` to `workdir`.

  Returns:
    The final evaluation results (see ``retrieval.evaluate``).
  """
  losses.check_loss_weights(config.losses)
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.num_identities * config.num_instances, mesh,
                                 'config.num_identities * config.num_instances')
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  is_main = jax.process_index() == 0
  if is_main:
    print(reporting.format_table(['subset', '# ids', '# tracklets', '# cameras'],
                                 data.summary_rows()), flush=True)
  _, state, schedule, state_sharding, ckpt, meta = setup_state(
      config, workdir, data.num_train_ids, mesh)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info('Model %s: %.2fM parameters; %d devices.', config.model_name,
               num_params / 1e6, mesh.devices.size)

  writer = metric_writers.create_default_writer(workdir, just_logging=not is_main)
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
      state, metrics = train_step(state, sharding.to_global(batch, mesh))
      done = step + 1
      guard.update(done, metrics)  # on device: no host sync here
      if done % config.log_every_steps == 0 or done == total_steps:
        guard.check()
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        metrics.pop('nonfinite')
        if skip:
          metrics['skipped_steps'] = guard.skipped()
        now = time.time()
        rate = (done - last_step) / max(now - last_time, 1e-9)
        last_time, last_step = now, done
        writer.write_scalars(done, metrics)
        writer.write_scalars(done, {'steps_per_sec': rate})
        logging.info('step %d/%d (%.0f%%)  %.2f steps/s  ETA %s', done, total_steps,
                     100 * done / total_steps, rate,
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

  def check(self):
    """Raises NonFiniteLossError when a step went non-finite (skipping off)."""
    if self.skip or self.first is None:
      return
    step, metrics = jax.device_get(self.first)
    if step < 0:
      return
    values = ', '.join(f'{k}={float(v):.6g}' for k, v in sorted(metrics.items())
                       if k not in ('nonfinite', 'learning_rate'))
    last = self.ckpt.latest_step()
    kept = (f'the last good checkpoint (step {last}) is kept in {self.ckpt.directory}'
            if last is not None else 'no checkpoint was written yet')
    raise NonFiniteLossError(
        f'Non-finite loss or gradient at step {int(step)}: {values}. Training stopped; '
        f'{kept}. Lower the learning rate, or set --config.skip_nonfinite_steps=True to '
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
  writer.write_scalars(step, {f'eval/{k}': results[k]
                              for k in ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')})
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
  """The latest checkpoint of `workdir`, for evaluation, extraction or search.

  The number of classes comes from the checkpoint's own record, so no dataset
  is needed; the rest of the model config must match it.

  Returns:
    (state, checkpoint meta).
  Raises:
    FileNotFoundError: `workdir` holds no checkpoint.
  """
  ckpt_dir = os.path.join(os.path.abspath(workdir), 'checkpoints')
  meta = (checkpoint.Checkpointer(workdir, for_training=False).latest_meta()
          if os.path.isdir(ckpt_dir) else None)
  if meta is None:
    raise FileNotFoundError(f'No checkpoint in {ckpt_dir}; train first with '
                            f'python -m experiments.train --workdir={workdir} ...')
  _, state, _, _, ckpt, meta = setup_state(config, workdir, meta['num_classes'], mesh,
                                           for_training=False)
  ckpt.close()
  return state, meta


def evaluate_checkpoint(config, workdir: str, data) -> dict:
  """Restores the latest checkpoint of `workdir` and evaluates it on `data`."""
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  state, _ = restore_for_inference(config, workdir, mesh)
  writer = metric_writers.create_default_writer(workdir, just_logging=jax.process_index() > 0)
  results = evaluate_and_report(config, workdir, step_lib.make_embed_fn(mesh, config.eval.flip),
                                state, data, mesh, writer, int(state.step))
  writer.flush()
  return results
