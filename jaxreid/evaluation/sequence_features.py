"""Whole-sequence tracklet features (``config.eval.sampler = 'sequence'``).

The recurrent models (MSTN, RRU + STIM, CRF) build a tracklet's feature by
running their recurrence over all its frames (the RRU paper: "using all
frames of one video sequence"). Averaging the features of T-frame chunks
instead restarts the recurrence at every chunk. Here the model's per-frame
part (its backbone: the memory-heavy part) runs on the eval pipeline's
fixed-size chunks, the real frames of each tracklet are gathered on the
host, and the model's sequence part then runs once per tracklet over all of
them (``jaxreid.models.common``, "Whole-sequence evaluation").

Tracklets are padded to a power-of-two multiple of the chunk length, so a
dataset compiles the sequence part for a handful of lengths, and batched so
that one call holds about as many frames as one eval batch. The sequence
part runs replicated on every device (it is small next to the backbone).
"""

import time
from typing import Iterable, Mapping

import jax
import numpy as np
from absl import logging

from jaxreid import sharding
from jaxreid.inference import MODEL_INPUT_KEYS

_PROGRESS_SECONDS = 10


def padded_length(num_frames: int, chunk_len: int) -> int:
  """The length a tracklet of `num_frames` is padded to: chunk_len * 2^k >= it."""
  length = chunk_len
  while length < num_frames:
    length *= 2
  return length


class _Buckets:
  """Finished tracklets waiting for the sequence part, by padded length."""

  def __init__(self, sequence_fn, state, mesh, chunk_len: int, frames_per_call: int, out):
    self.sequence_fn, self.state, self.mesh = sequence_fn, state, mesh
    self.chunk_len, self.frames_per_call, self.out = chunk_len, frames_per_call, out
    self.waiting = {}  # padded length -> [(tracklet, {name: (L, ...) array})]

  def add(self, tracklet: int, features: Mapping[str, np.ndarray]):
    length = padded_length(len(next(iter(features.values()))), self.chunk_len)
    bucket = self.waiting.setdefault(length, [])
    bucket.append((tracklet, features))
    if len(bucket) == self._rows(length):
      self._run(length)

  def flush(self):
    for length in sorted(self.waiting):
      if self.waiting[length]:
        self._run(length)

  def _rows(self, length: int) -> int:
    return max(1, self.frames_per_call // length)

  def _run(self, length: int):
    bucket, self.waiting[length] = self.waiting[length], []
    rows = self._rows(length)  # a fixed row count per length: one compile each
    names = list(bucket[0][1])
    batch = {}
    for name in names:
      sample = bucket[0][1][name]
      padded = np.zeros((rows, length) + sample.shape[1:], sample.dtype)  # (R, L, ...)
      for i, (_, features) in enumerate(bucket):
        padded[i, :len(features[name])] = features[name]
      batch[name] = padded
    counts = np.array([len(f[names[0]]) for _, f in bucket] + [0] * (rows - len(bucket)))
    frame_mask = np.arange(length)[None] < counts[:, None]  # (R, L)
    put = lambda x: jax.make_array_from_process_local_data(sharding.replicated(self.mesh), x)
    emb = np.asarray(jax.device_get(self.sequence_fn(
        self.state, {k: put(v) for k, v in batch.items()}, put(frame_mask))))
    for i, (tracklet, _) in enumerate(bucket):
      self.out[tracklet] = emb[i]


def extract_sequence_features(embedder, state, batches: Iterable[Mapping], num_tracklets: int,
                              mesh, name: str = '') -> np.ndarray:
  """One feature per tracklet from its whole sequence.

  Args:
    embedder: ``jaxreid.inference.SequenceEmbedder`` (its ``frames_fn``
      gathers the per-frame features to every process, as ``make_embed_fn``).
    state: the train state.
    batches: padded eval batches of the 'sequence' sampler: 'tracklet',
      'mask' and 'real_frames' per clip, a tracklet's clips in order and one
      after another.
    num_tracklets: tracklets in the split; every one must receive a chunk.
    mesh: the data mesh.
    name: split name, for progress messages.
  Returns:
    (num_tracklets, D) float32 features.
  """
  out = {}
  buckets = None
  current, pieces, done = None, [], set()
  start = last_report = time.time()
  logging.info('Extracting %s, whole sequences: %d tracklets ...', name, num_tracklets)

  def finish():
    if current is None:
      return
    if current in done:
      raise RuntimeError(f'The {name} eval pipeline gave tracklet {current}\'s clips apart; '
                         'whole-sequence features need them one after another.')
    done.add(current)
    buckets.add(current, {k: np.concatenate([p[k] for p in pieces]) for k in pieces[0]})

  for batch in batches:
    if 'real_frames' not in batch:
      raise ValueError("Whole-sequence features need eval batches with 'real_frames' "
                       "(config.eval.sampler = 'sequence').")
    inputs = [k for k in MODEL_INPUT_KEYS if k in batch]
    glob = sharding.own_rows_to_global(batch, inputs + ['tracklet', 'mask', 'real_frames'], mesh)
    features, tracklets, mask, real = jax.device_get(embedder.frames_fn(
        state, {k: glob[k] for k in inputs}, glob['tracklet'], glob['mask'], glob['real_frames']))
    if buckets is None:
      chunk_len = next(iter(features.values())).shape[1]
      buckets = _Buckets(embedder.sequence_fn, state, mesh, chunk_len, len(mask) * chunk_len, out)
    for row in np.flatnonzero(np.asarray(mask, bool)):
      tracklet = int(tracklets[row])
      if tracklet != current:
        finish()
        current, pieces = tracklet, []
      pieces.append({k: np.asarray(v[row, :int(real[row])]) for k, v in features.items()})
    if time.time() - last_report >= _PROGRESS_SECONDS:
      last_report = time.time()
      fraction = len(done) / max(num_tracklets, 1)
      logging.info('Extracting %s: %.0f%% of tracklets, ETA %.0fs', name, 100 * fraction,
                   (last_report - start) * (1 - fraction) / max(fraction, 1e-9))
  finish()
  if buckets is not None:
    buckets.flush()
  missing = sorted(set(range(num_tracklets)) - set(out))[:5]
  if missing:
    raise RuntimeError(f'The {name} eval pipeline gave no frames for tracklets {missing}...; '
                       'the split index and the batches disagree.')
  logging.info('Extracted %s: %d whole sequences in %.1fs', name, num_tracklets,
               time.time() - start)
  return np.stack([out[t] for t in range(num_tracklets)]).astype(np.float32)

