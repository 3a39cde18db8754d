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
The pieces it runs live beside it: the state (``setup``), the checkpoint's
record (``checkpoint_record``), the guards (``nonfinite``, ``preemption``) and the
evaluation (``evaluate``).
"""

import time

import jax
from absl import logging

from jaxreid import inference, losses, reporting, sharding
from jaxreid.training import checkpoint_record, evaluate, nonfinite, preemption, settings
from jaxreid.training import checkpoint, run_record, setup, step as step_lib
from jaxreid.training import workdir_lock, writers


def train_and_evaluate(config, workdir: str, data) -> dict:
  """Trains `config` on `data`, checkpointing in `workdir`, then evaluates.

  Resumes automatically from the newest intact checkpoint in `workdir`.
  Writes TensorBoard events and ``eval_results.json`` to `workdir`. Holds
  ``WORKDIR/.lock`` throughout: a second run on the same workdir stops before
  touching it.

  Returns:
    The final evaluation results (see ``retrieval.evaluate``).
  Raises:
    ValueError: a setting that would lose the model (``settings.check_settings``),
      or the workdir is held by another live run (``workdir_lock``).
    nonfinite.NonFiniteLossError: the run diverged (the last good checkpoint is kept).
    preemption.PreemptedError: stopped by SIGTERM after a final save.
  """
  settings.check_settings(config)
  with workdir_lock.hold(workdir), run_record.LogFile(workdir):  # WORKDIR/log.txt
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
  meta = checkpoint_record.checkpoint_meta(config, data.num_train_ids,
                                           getattr(data, 'train_pid_values', None),
                                           checkpoint_record.dataset_config(config, data))
  run = setup.setup_state(config, workdir, data.num_train_ids, mesh, meta=meta)
  num_params = sum(x.size for x in jax.tree.leaves(run.state.params))
  logging.info('Model %s: %.2fM parameters; %d devices.', config.model_name,
               num_params / 1e6, mesh.devices.size)
  run_record.write_config(workdir, config)
  writer = writers.create_writer(workdir, enabled=is_main)
  if int(run.state.step) == 0:
    writer.write_hparams(_flatten(config.to_dict()))
  embed_fn = inference.make_tracklet_embedder(mesh, config.eval)
  ckpt = run.checkpointer
  metric = config.best_checkpoint_metric
  best = (checkpoint.Checkpointer(workdir, max_to_keep=1, best_metric=metric) if metric
          else None)

  def evaluate_now(state, step: int) -> dict:
    """Evaluates `state` and offers it to the best checkpoint (Orbax keeps it
    if its metric beats the kept one's)."""
    results = evaluate.evaluate_and_report(config, workdir, embed_fn, state, data, mesh,
                                           writer, step)
    if best is not None and step not in best.all_steps():
      best.save(step, state, run.meta, metrics={metric: float(results[metric])})
    return results

  try:
    state = _train(config, data, mesh, run, writer, evaluate_now)
    ckpt.wait()
    results = evaluate_now(state, int(state.step))
  finally:
    if best is not None:
      best.close()
  writer.flush()
  ckpt.close()
  return results


def _train(config, data, mesh, run: setup.Setup, writer, evaluate_now):
  """The step loop from the restored step to ``config.num_train_steps``, with
  its log lines, saves and periodic evaluations (``evaluate_now(state,
  step)``). Returns the final state.

  The log line reports the time spent waiting for the input pipeline (per
  step and as a share of the interval): when it is a large share, the
  pipeline, not the model, sets the pace.
  """
  state, ckpt = run.state, run.checkpointer
  start_step, total_steps = int(state.step), config.num_train_steps
  train_step = step_lib.make_train_step(config, run.schedule, run.state_sharding, mesh)
  batches = data.train_batches(start_step)
  skip = config.skip_nonfinite_steps
  guard = nonfinite.NonFiniteGuard(ckpt, skip,
                                   (ckpt.restored_meta or {}).get('skipped_steps', 0))
  notice = preemption.PreemptionNotice(ckpt)
  last_time, last_step, saved_step = time.time(), start_step, start_step
  data_wait = 0.0  # seconds spent in next(batches) since the last log line
  try:
    for step in range(start_step, total_steps):
      wait_start = time.perf_counter()
      batch = next(batches)
      data_wait += time.perf_counter() - wait_start
      global_batch = sharding.to_global(batch, mesh)
      if step == start_step:  # compiling can take minutes: say so
        logging.info('Compiling the train step (the first step of every run: seconds for the '
                     'default config, minutes for the full-size video networks) ...')
        compile_start = time.time()
        # Compile ahead, then meet: the first run of the step's collectives
        # needs every process there at once (`wait_for_all_processes`).
        train_step = train_step.lower(state, global_batch).compile()
        sharding.wait_for_all_processes(f'jaxreid_first_train_step_{step}')
      state, metrics = train_step(state, global_batch)
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
          guard.check_skipped(done, config.max_skipped_fraction)
        now = time.time()
        rate = ((done - last_step) / max(now - last_time, 1e-9) if done > last_step
                else 1 / max(now - compile_start, 1e-9))  # only the compiling step so far
        steps = max(done - last_step, 1)
        wait_ms, wait_share = 1e3 * data_wait / steps, data_wait / max(now - last_time, 1e-9)
        last_time, last_step, data_wait = now, done, 0.0
        writer.write_scalars(done, {**metrics, 'steps_per_sec': rate,
                                    'data_wait_ms_per_step': wait_ms})
        logging.info('step %d/%d (%.0f%%)  %s  %.2f steps/s  data wait %.0f ms/step (%.0f%%)  '
                     'ETA %s', done, total_steps, 100 * done / total_steps,
                     reporting.format_metrics(metrics), rate, wait_ms, 100 * min(wait_share, 1),
                     reporting.format_duration((total_steps - done) / max(rate, 1e-9)))
      stop = notice.reached(done)
      if done % config.checkpoint_every_steps == 0 or done == total_steps or stop:
        guard.check()  # never write a non-finite state over the last good checkpoint
        ckpt.save(done, state, {**run.meta, 'skipped_steps': guard.skipped()})
        saved_step = done
      if stop:
        writer.flush()
        ckpt.close()
        raise preemption.PreemptedError(
            f'Stopped by a preemption notice (SIGTERM) after step {done}; saved the '
            f'checkpoint of step {saved_step} in {ckpt.directory}. Run the same command '
            'again to continue.')
      if config.eval_every_steps and done % config.eval_every_steps == 0 and done < total_steps:
        evaluate_now(state, done)
  except nonfinite.NonFiniteLossError:
    writer.flush()
    ckpt.close()  # finishes the pending (good) saves
    raise
  finally:
    notice.restore()
  return state


def _flatten(d, prefix=''):
  """{'a': {'b': 1}} -> {'a.b': 1}, values made TensorBoard hparams (str if not scalar)."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(_flatten(v, f'{prefix}{k}.'))
    else:
      out[f'{prefix}{k}'] = v if isinstance(v, (int, float, str, bool)) else str(v)
  return out
