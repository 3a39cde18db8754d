"""Query/gallery evaluation of a trained model: tracklet features, distances,
ranking metrics, and per-subset rank-1 (e.g. the synthetic gait twins).

The data side is reached only through plain numpy batches (DESIGN.md section 3):
``eval_batches(split)`` yields padded chunks with 'frames', 'tracklet', 'mask';
``split_labels(split)`` gives per-tracklet 'pid', 'camid' and optional boolean
subset masks under 'subsets'.
"""

import time
from typing import Callable, Iterable, Mapping

import jax
import numpy as np
from absl import logging

from jaxreid.evaluation import distance as distance_lib
from jaxreid.evaluation import ranking
from jaxreid.training import sharding

RANKS = (1, 5, 10, 20)


def extract_tracklet_features(embed_fn: Callable, state, batches: Iterable[Mapping],
                              num_tracklets: int, mesh, name: str = '') -> np.ndarray:
  """Averages chunk embeddings per tracklet.

  Args:
    embed_fn: from ``step.make_embed_fn``: (state, frames) -> (B, D), replicated.
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
  for i, batch in enumerate(batches):
    frames = sharding.to_global({'frames': batch['frames']}, mesh)['frames']
    emb = np.asarray(jax.device_get(embed_fn(state, frames)))  # (B, D)
    mask = np.asarray(batch['mask'], bool)
    if sums is None:
      sums = np.zeros((num_tracklets, emb.shape[1]), np.float64)
    np.add.at(sums, batch['tracklet'][mask], emb[mask])
    np.add.at(counts, batch['tracklet'][mask], 1)
    num_chunks += int(mask.sum())
    if (i + 1) % 50 == 0:
      done = counts.astype(bool).mean()
      elapsed = time.time() - start
      logging.info('Extracting %s: %d chunks, %.0f%% of tracklets, ETA %.0fs', name,
                   num_chunks, 100 * done, elapsed * (1 - done) / max(done, 1e-9))
  if sums is None or (counts == 0).any():
    missing = np.flatnonzero(counts == 0)[:5].tolist()
    raise RuntimeError(f'The {name} eval pipeline gave no frames for tracklets {missing}...; '
                       'the split index and the batches disagree.')
  logging.info('Extracted %s: %d tracklets from %d chunks in %.1fs', name, num_tracklets,
               num_chunks, time.time() - start)
  return (sums / counts[:, None]).astype(np.float32)


def evaluate(embed_fn: Callable, state, data, mesh, *, metric: str = 'euclidean',
             protocol: str = 'torchreid', normalize: bool = False) -> dict:
  """Extracts query and gallery features and ranks the gallery for each query.

  Returns:
    A JSON-able dict: rank1/5/10/20, mAP, mINP, cmc (list), counts, protocol,
    metric, and per-subset rank-1 / mAP under 'subsets'.
  """
  feats, labels = {}, {}
  for split in ('query', 'gallery'):
    labels[split] = data.split_labels(split)
    feats[split] = extract_tracklet_features(
        embed_fn, state, data.eval_batches(split), len(labels[split]['pid']), mesh, split)
  qf, gf = feats['query'], feats['gallery']
  if normalize:
    qf = qf / np.maximum(np.linalg.norm(qf, axis=1, keepdims=True), 1e-12)
    gf = gf / np.maximum(np.linalg.norm(gf, axis=1, keepdims=True), 1e-12)
  distmat = np.asarray(distance_lib.pairwise_distance(qf, gf, metric=metric))
  q, g = labels['query'], labels['gallery']
  rank = lambda rows: ranking.evaluate_rank(
      distmat[rows], q['pid'][rows], g['pid'], q['camid'][rows], g['camid'],
      max_rank=50, protocol=protocol)
  out = rank(np.arange(len(q['pid'])))
  results = _summarize(out)
  results.update(protocol=protocol, metric=metric, num_query=len(q['pid']),
                 num_gallery=len(g['pid']), subsets={})
  for name, mask in q.get('subsets', {}).items():
    rows = np.flatnonzero(mask)
    if len(rows):
      sub = _summarize(rank(rows))
      results['subsets'][name] = {k: sub[k] for k in ('rank1', 'mAP', 'num_valid_queries')}
  return results


def _summarize(out: Mapping) -> dict:
  cmc = np.asarray(out['cmc'], np.float64)
  results = {f'rank{r}': float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}
  results.update(mAP=float(out['mAP']), mINP=float(out['mINP']),
                 num_valid_queries=int(out['num_valid_queries']), cmc=cmc.tolist())
  return results
