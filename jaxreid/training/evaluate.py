"""Evaluating a run's state and reporting it: TensorBoard scalars, the log,
the console table and ``WORKDIR/eval_results.json``; during training or on a
saved checkpoint (``experiments/evaluate.py``)."""

import json
import os

import jax
from absl import logging

from jaxreid import inference, reporting, sharding
from jaxreid.evaluation import retrieval
from jaxreid.training import checkpoint_record, run_record, setup, writers


def evaluate_and_report(config, workdir, embed_fn, state, data, mesh, writer, step: int) -> dict:
  """Evaluates; logs the results table; writes ``eval_results.json`` (with
  per-query results), a line of ``eval_history.jsonl`` and the ranked-list
  pictures (``config.eval.num_visualize``; also to TensorBoard)."""
  rerank = config.eval.rerank.to_dict() if config.eval.use_rerank else None
  pictures = []
  results = retrieval.evaluate(embed_fn, state, data, mesh, metric=config.eval.metric,
                               protocol=config.eval.protocol,
                               normalize=config.eval.normalize_features, rerank=rerank,
                               num_visualize=config.eval.num_visualize,
                               visualize_dir=os.path.join(workdir, 'ranked_lists', str(step)),
                               visualize_queries=config.eval.visualize_queries,
                               images_out=pictures)
  results['step'] = step
  scalars = {k: results[k] for k in ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')}
  writer.write_scalars(step, {f'eval/{k}': v for k, v in scalars.items()})
  if pictures:
    writer.write_images(step, {f'ranked_lists/{name}': image[None] for name, image in pictures})
  logging.info('Evaluation at step %d: %s', step, reporting.format_metrics(scalars))
  if jax.process_index() == 0:
    print(reporting.format_results(results, title=f'Results at step {step}'), flush=True)
    write_results(workdir, results)
    run_record.append_eval_history(workdir, run_record.eval_record(config, data, step, results))
  return results


def write_results(workdir: str, results: dict):
  """Writes ``eval_results.json`` atomically (write, then rename)."""
  path = os.path.join(workdir, 'eval_results.json')
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(results, f, indent=1)
  os.replace(tmp, path)


def evaluate_checkpoint(config, workdir: str, data, step='latest') -> dict:
  """Restores a checkpoint of `workdir` (`step`: 'latest', 'best' or a number,
  see ``setup.restore_for_inference``) and evaluates it on `data`; refused on
  persons it was trained on (``checkpoint_record.check_not_trained_on``)."""
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  state, meta = setup.restore_for_inference(config, workdir, mesh, step)
  checkpoint_record.check_not_trained_on(meta, config, data)
  writer = writers.create_writer(workdir, enabled=jax.process_index() == 0)
  embedder = inference.make_tracklet_embedder(mesh, config.eval)
  results = evaluate_and_report(config, workdir, embedder, state, data, mesh, writer,
                                int(state.step))
  writer.flush()
  return results
