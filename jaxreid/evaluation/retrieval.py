"""Query/gallery evaluation of a trained model: tracklet features, distances,
ranking metrics, and per-subset rank-1 (e.g. the synthetic gait twins).

The data side is reached only through plain numpy batches (docs/design.md, "Data contract"):
``eval_batches(split)`` yields padded chunks with 'frames', 'tracklet', 'mask';
``split_labels(split)`` gives per-tracklet 'pid', 'camid' and optional boolean
subset masks under 'subsets'.
"""

import time
from typing import Callable, Iterable, Mapping

import jax
import numpy as np
from absl import logging

from jaxreid.evaluation import ranking
from jaxreid.evaluation import rerank as rerank_lib
from jaxreid.evaluation import visualize
from jaxreid.training import sharding
from jaxreid.training.step import MODEL_INPUT_KEYS

RANKS = (1, 5, 10, 20)
_PROGRESS_SECONDS = 10  # a progress line at least this often while extracting


def extract_tracklet_features(embed_fn: Callable, state, batches: Iterable[Mapping],
                              num_tracklets: int, mesh, name: str = '') -> np.ndarray:
  """Averages chunk embeddings per tracklet.

  Args:
    embed_fn: from ``step.make_embed_fn``: (state, inputs, tracklet, mask) ->
      ((B, D), (B,), (B,)), gathered to every process.
    state: the train state.
    batches: padded eval batches; rows with mask False are ignored.
    num_tracklets: tracklets in the split; every one must receive a chunk.
    mesh: the data mesh.
    name: split name, for progress messages.
  Returns:
    (num_tracklets, D) float32 features.
  """
  sums, counts = None, np.zeros(num_tracklets, np.int64)
  start, num_chunks = time.time(), 0
  last_report = start
  logging.info('Extracting %s: %d tracklets ...', name, num_tracklets)
  for i, batch in enumerate(batches):
    # Every process reads the same padded batch and feeds only its own rows;
    # the embeddings come back gathered with their rows' tracklet and mask.
    row0, row1 = _process_rows(len(batch['mask']))
    keys = [k for k in MODEL_INPUT_KEYS if k in batch] + ['tracklet', 'mask']
    local = {k: np.asarray(batch[k])[row0:row1] for k in keys}
    glob = sharding.to_global(local, mesh)
    inputs = {k: glob[k] for k in MODEL_INPUT_KEYS if k in glob}
    emb, tracklet, mask = jax.device_get(
        embed_fn(state, inputs, glob['tracklet'], glob['mask']))
    emb, mask = np.asarray(emb), np.asarray(mask, bool)  # (B, D), (B,)
    batch = {'tracklet': np.asarray(tracklet)}
    if sums is None:
      sums = np.zeros((num_tracklets, emb.shape[1]), np.float64)
    np.add.at(sums, batch['tracklet'][mask], emb[mask])
    np.add.at(counts, batch['tracklet'][mask], 1)
    num_chunks += int(mask.sum())
    if time.time() - last_report >= _PROGRESS_SECONDS:
      last_report = time.time()
      done = counts.astype(bool).mean()
      elapsed = last_report - start
      logging.info('Extracting %s: %d chunks, %.0f%% of tracklets, ETA %.0fs', name,
                   num_chunks, 100 * done, elapsed * (1 - done) / max(done, 1e-9))
  if sums is None or (counts == 0).any():
    missing = np.flatnonzero(counts == 0)[:5].tolist()
    raise RuntimeError(f'The {name} eval pipeline gave no frames for tracklets {missing}...; '
                       'the split index and the batches disagree.')
  logging.info('Extracted %s: %d tracklets from %d chunks in %.1fs', name, num_tracklets,
               num_chunks, time.time() - start)
  return (sums / counts[:, None]).astype(np.float32)


def _process_rows(batch_size: int):
  """[start, stop) of the rows of an eval batch that this process feeds."""
  n = jax.process_count()
  if batch_size % n:
    raise ValueError(f'config.eval.batch_size = {batch_size} is not divisible by the '
                     f'{n} processes.')
  local = batch_size // n
  return jax.process_index() * local, (jax.process_index() + 1) * local


def protocol_gallery(protocol: str, query: Mapping, gallery: Mapping, qf, gf):
  """The gallery each protocol ranks (docs/design.md, "Evaluation contract").

  torchreid and with_query_in_gallery drop junk (pid -1) tracklets, as
  torchreid's loaders do (ranking prepends the queries for the latter);
  mars_official ranks against every test tracklet, queries and junk included.

  Returns:
    (gallery features, gallery pids, gallery camids).
  """
  if protocol == 'mars_official':
    return (np.concatenate([qf, gf]), np.concatenate([query['pid'], gallery['pid']]),
            np.concatenate([query['camid'], gallery['camid']]))
  keep = gallery['pid'] != -1
  return gf[keep], gallery['pid'][keep], gallery['camid'][keep]


def split_features(embed_fn: Callable, state, data, split: str, mesh):
  """(features (N, D), labels dict) of every tracklet of an eval split."""
  labels = data.split_labels(split)
  feats = extract_tracklet_features(embed_fn, state, data.eval_batches(split),
                                    len(labels['pid']), mesh, split)
  return feats, labels


def evaluate(embed_fn: Callable, state, data, mesh, *, metric: str = 'euclidean',
             protocol: str = 'torchreid', normalize: bool = False, rerank=None,
             num_visualize: int = 0, visualize_dir: str = '') -> dict:
  """Extracts query and gallery features and ranks the gallery for each query.

  Args:
    rerank: None, or k-reciprocal re-ranking options {'k1', 'k2', 'lambda_value'}
      (``rerank.py``); the distances of the protocol's gallery are re-ranked.
    num_visualize, visualize_dir: also write ranked-list PNGs of the first
      `num_visualize` queries to `visualize_dir` (see ``visualize.py``).

  Returns:
    A JSON-able dict: rank1/5/10/20, mAP, mINP, cmc (list), counts, protocol,
    metric, and per-subset rank-1 / mAP under 'subsets'.
  """
  ranking.check_protocol(protocol)
  qf, q = split_features(embed_fn, state, data, 'query', mesh)
  gf_all, g_all = split_features(embed_fn, state, data, 'gallery', mesh)
  if normalize:
    qf, gf_all = _l2_normalize(qf), _l2_normalize(gf_all)
  gf, g_pids, g_camids = protocol_gallery(protocol, q, g_all, qf, gf_all)

  if rerank:
    # Re-ranking needs the whole (Q, G) matrix; with_query_in_gallery ranks the
    # queries prepended to the gallery, (Q, Q + G), as evaluate_rank expects.
    ranked_gallery = np.concatenate([qf, gf]) if protocol == 'with_query_in_gallery' else gf
    distmat = rerank_lib.rerank_features(qf, ranked_gallery, metric=metric, **rerank)

  def rank(rows):
    if rerank:
      return ranking.evaluate_rank(distmat[rows], q['pid'][rows], g_pids, q['camid'][rows],
                                   g_camids, max_rank=50, protocol=protocol)
    return ranking.evaluate_features(qf[rows], gf, q['pid'][rows], g_pids, q['camid'][rows],
                                     g_camids, metric=metric, max_rank=50, protocol=protocol)

  results = _summarize(rank(np.arange(len(q['pid']))))
  results.update(protocol=protocol, metric=metric, num_query=len(q['pid']),
                 num_gallery=len(g_pids), subsets={}, rerank=dict(rerank) if rerank else None)
  for name, mask in q.get('subsets', {}).items():
    rows = np.flatnonzero(mask)
    has_match = [np.any((g_pids == q['pid'][r]) & (g_camids != q['camid'][r])) for r in rows]
    if any(has_match):
      sub = _summarize(rank(rows))
      results['subsets'][name] = {k: sub[k] for k in ('rank1', 'mAP', 'num_valid_queries')}
  if num_visualize and jax.process_index() == 0:  # one writer of the pictures
    paths = visualize.write_ranked_lists(
        visualize_dir, qf, gf_all, q, g_all, data.tracklet_frames,
        num_queries=num_visualize, metric=metric)
    logging.info('Wrote %d ranked-list pictures to %s', len(paths), visualize_dir)
  return results


def _l2_normalize(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _summarize(out: Mapping) -> dict:
  cmc = np.asarray(out['cmc'], np.float64)
  results = {f'rank{r}': float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}
  results.update(mAP=float(out['mAP']), mINP=float(out['mINP']),
                 num_valid_queries=int(out['num_valid_queries']), cmc=cmc.tolist())
  return results
