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
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from clu import metric_writers

from jaxreid import losses, reporting
from jaxreid.backbones import pretrained
from jaxreid.evaluation import retrieval
from jaxreid.models import get_model
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


def setup_state(config, workdir: str, num_classes: int, mesh):
  """Builds the model and either restores the workdir's latest checkpoint or
  initializes a new state in place on the mesh (then loading the backbone's
  ``config.pretrained`` weights, if set; never on resume).

  Returns:
    (model, state, schedule, state_sharding, checkpointer, meta)
  """
  model = build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config)
  sample = state_lib.sample_input(config.clip_len, config.height, config.width)
  init = lambda rng: state_lib.create_train_state(model, tx, rng, sample)
  abstract = jax.eval_shape(init, jax.random.key(config.seed))
  state_sharding = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  ckpt = checkpoint.Checkpointer(workdir, config.keep_checkpoints)
  meta = checkpoint_meta(config, num_classes)
  state, _ = ckpt.restore(checkpoint.abstract_with_shardings(abstract, state_sharding), meta)
  if state is None:
    state = jax.jit(init, out_shardings=state_sharding)(jax.random.key(config.seed))
    if config.get('pretrained'):  # ImageNet weights into params/batch_stats['backbone']
      state = pretrained.load_into_train_state(state, config.pretrained, state_sharding)
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
  last_time, last_step = time.time(), start_step
  for step in range(start_step, total_steps):
    batch = next(batches)
    state, metrics = train_step(state, sharding.to_global(batch, mesh))
    done = step + 1
    if done % config.log_every_steps == 0 or done == total_steps:
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not all(np.isfinite(v) for v in metrics.values()):
        ckpt.close()
        raise NonFiniteLossError(
            f'Non-finite training metrics at step {done}: {metrics}. The last good '
            f'checkpoint is kept in {ckpt.directory}.')
      now = time.time()
      rate = (done - last_step) / max(now - last_time, 1e-9)
      last_time, last_step = now, done
      metrics['steps_per_sec'] = rate
      writer.write_scalars(done, metrics)
      logging.info('step %d/%d (%.0f%%)  %.2f steps/s  ETA %s', done, total_steps,
                   100 * done / total_steps, rate,
                   _eta((total_steps - done) / max(rate, 1e-9)))
    if done % config.checkpoint_every_steps == 0 or done == total_steps:
      ckpt.save(done, state, meta)
    if config.eval_every_steps and done % config.eval_every_steps == 0 and done < total_steps:
      results = evaluate_and_report(config, workdir, embed_fn, state, data, mesh, writer, done)
  ckpt.wait()
  results = evaluate_and_report(config, workdir, embed_fn, state, data, mesh, writer,
                                int(state.step))
  writer.flush()
  ckpt.close()
  return results


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
  meta = checkpoint.Checkpointer(workdir).latest_meta() if os.path.isdir(ckpt_dir) else None
  if meta is None:
    raise FileNotFoundError(f'No checkpoint in {ckpt_dir}; train first with '
                            f'python -m experiments.train --workdir={workdir} ...')
  _, state, _, _, ckpt, meta = setup_state(config, workdir, meta['num_classes'], mesh)
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
