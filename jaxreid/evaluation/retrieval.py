"""Query/gallery evaluation of a trained model: tracklet features, distances,
ranking metrics, and per-subset rank-1 (e.g. the synthetic gait twins).

The data side is reached only through plain numpy batches (docs/design.md, "Data contract"):
``eval_batches(split)`` yields padded chunks with 'frames', 'tracklet', 'mask';
``split_labels(split)`` gives per-tracklet 'pid', 'camid' and optional boolean
subset masks under 'subsets'.
"""

import os
import time
from typing import Callable, Iterable, Mapping, Optional

import jax
import numpy as np
from absl import logging

from jaxreid import sharding
from jaxreid.evaluation import distance as distance_lib
from jaxreid.evaluation import ranking
from jaxreid.evaluation import rerank as rerank_lib
from jaxreid.evaluation import sequence_features
from jaxreid.evaluation import visualize
from jaxreid.inference import MODEL_INPUT_KEYS, SequenceEmbedder

RANKS = (1, 5, 10, 20)
_PROGRESS_SECONDS = 10  # a progress line at least this often while extracting


def extract_tracklet_features(embed_fn: Callable, state, batches: Iterable[Mapping],
                              num_tracklets: int, mesh, name: str = '') -> np.ndarray:
  """Averages chunk embeddings per tracklet.

  Args:
    embed_fn: from ``jaxreid.inference.make_embed_fn``: (state, inputs, tracklet, mask) ->
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
    # The embeddings come back gathered with their rows' tracklet and mask.
    inputs = [k for k in MODEL_INPUT_KEYS if k in batch]
    glob = sharding.own_rows_to_global(batch, inputs + ['tracklet', 'mask'], mesh)
    emb, tracklet, mask = jax.device_get(
        embed_fn(state, {k: glob[k] for k in inputs}, glob['tracklet'], glob['mask']))
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


def split_features(embed_fn, state, data, split: str, mesh):
  """(features (N, D), labels dict) of every tracklet of an eval split.

  `embed_fn`: from ``jaxreid.inference.make_tracklet_embedder``: chunk
  embeddings, averaged per tracklet, or a ``SequenceEmbedder`` (whole-sequence
  features, ``sequence_features``).
  """
  labels = data.split_labels(split)
  extract = (sequence_features.extract_sequence_features
             if isinstance(embed_fn, SequenceEmbedder) else extract_tracklet_features)
  feats = extract(embed_fn, state, data.eval_batches(split), len(labels['pid']), mesh, split)
  return feats, labels


def evaluate(embed_fn: Callable, state, data, mesh, *, metric: str = 'euclidean',
             protocol: str = 'torchreid', normalize: bool = False, rerank=None,
             num_visualize: int = 0, visualize_dir: str = '', visualize_queries: str = 'worst',
             images_out: Optional[list] = None) -> dict:
  """Extracts query and gallery features and ranks the gallery for each query.

  Args:
    rerank: None, or k-reciprocal re-ranking options {'k1', 'k2', 'lambda_value'}
      (``rerank.py``); the distances of the protocol's gallery are re-ranked.
    num_visualize, visualize_dir, visualize_queries: also write ranked-list
      PNGs of `num_visualize` queries to `visualize_dir`: the 'worst' by AP,
      the 'first' or 'random' ones (``visualize.choose_queries``), drawn with
      the distances the protocol ranked (re-ranked ones when `rerank` is on).
    images_out: if a list, the pictures are appended to it as (name, (h, w, 3)
      uint8) pairs (for TensorBoard).

  Returns:
    A JSON-able dict: rank1/5/10/20, mAP, mINP, cmc (list), counts, protocol,
    metric, per-subset rank-1 / mAP under 'subsets', and under 'per_query'
    each query's 'ap' (None where it has no match) and 'first_match_rank'
    (1-based, 0 where it has no match), in split order.
  """
  ranking.check_protocol(protocol)
  qf, q = split_features(embed_fn, state, data, 'query', mesh)
  gf_all, g_all = split_features(embed_fn, state, data, 'gallery', mesh)
  if normalize:
    qf, gf_all = _l2_normalize(qf), _l2_normalize(gf_all)
  gf, g_pids, g_camids = protocol_gallery(protocol, q, g_all, qf, gf_all)
  # with_query_in_gallery ranks the queries prepended to the gallery, (Q, Q + G)
  ranked_gallery = np.concatenate([qf, gf]) if protocol == 'with_query_in_gallery' else gf

  if rerank:
    # Re-ranking needs the whole matrix of distances that evaluate_rank ranks.
    distmat = rerank_lib.rerank_features(qf, ranked_gallery, metric=metric, **rerank)

  def rank(rows):
    if rerank:
      return ranking.evaluate_rank(distmat[rows], q['pid'][rows], g_pids, q['camid'][rows],
                                   g_camids, max_rank=50, protocol=protocol)
    return ranking.evaluate_features(qf[rows], gf, q['pid'][rows], g_pids, q['camid'][rows],
                                     g_camids, metric=metric, max_rank=50, protocol=protocol)

  everyone = rank(np.arange(len(q['pid'])))
  results = _summarize(everyone)
  results.update(protocol=protocol, metric=metric, num_query=len(q['pid']),
                 num_gallery=len(g_pids), subsets={}, rerank=dict(rerank) if rerank else None)
  for name, mask in q.get('subsets', {}).items():
    rows = np.flatnonzero(mask)
    has_match = [np.any((g_pids == q['pid'][r]) & (g_camids != q['camid'][r])) for r in rows]
    if any(has_match):
      sub = _summarize(rank(rows))
      results['subsets'][name] = {k: sub[k] for k in ('rank1', 'mAP', 'num_valid_queries')}
  ap, first = everyone['ap_per_query'], everyone['first_match_rank']
  results['per_query'] = {'ap': [None if np.isnan(a) else float(a) for a in ap],
                          'first_match_rank': [int(r) for r in first]}
  if num_visualize and jax.process_index() == 0:  # one writer of the pictures
    queries = visualize.choose_queries(ap, visualize_queries, num_visualize)
    if rerank:
      dist = distmat[queries]
    else:
      dist = distance_lib.pairwise_distance(qf[queries], ranked_gallery, metric=metric)
    columns = _ranked_columns(protocol, q, g_all, g_pids, g_camids)
    written = visualize.write_ranked_lists(
        visualize_dir, dist, q, columns, data.tracklet_frames, queries=queries,
        ap_per_query=ap, first_match_rank=first, name_fn=getattr(data, 'tracklet_name', None))
    logging.info('Wrote %d ranked-list pictures (%s queries by AP) to %s', len(written),
                 visualize_queries, visualize_dir)
    if images_out is not None:
      images_out.extend((os.path.splitext(os.path.basename(p))[0], image)
                        for p, image in written)
  return results


def _ranked_columns(protocol: str, q: Mapping, g_all: Mapping, g_pids, g_camids) -> dict:
  """Labels and (split, tracklet) sources of the columns each protocol ranks
  (``protocol_gallery``; with_query_in_gallery prepends the queries)."""
  queries = [('query', i) for i in range(len(q['pid']))]
  if protocol == 'mars_official':
    sources = queries + [('gallery', j) for j in range(len(g_all['pid']))]
    return {'pid': g_pids, 'camid': g_camids, 'source': sources}
  kept = [('gallery', int(j)) for j in np.flatnonzero(g_all['pid'] != -1)]
  if protocol == 'with_query_in_gallery':
    return {'pid': np.concatenate([q['pid'], g_pids]),
            'camid': np.concatenate([q['camid'], g_camids]), 'source': queries + kept}
  return {'pid': g_pids, 'camid': g_camids, 'source': kept}


def _l2_normalize(x):
  return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _summarize(out: Mapping) -> dict:
  cmc = np.asarray(out['cmc'], np.float64)
  results = {f'rank{r}': float(cmc[min(r, len(cmc)) - 1]) for r in RANKS}
  results.update(mAP=float(out['mAP']), mINP=float(out['mINP']),
                 num_valid_queries=int(out['num_valid_queries']), cmc=cmc.tolist())
  return results
