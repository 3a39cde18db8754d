"""Eval batches with each clip's frames shuffled or frozen, for
``experiments/temporal_probe.py`` (no absl flags here, so tests can import it)."""

import zlib

import numpy as np

MODES = ('as_is', 'shuffled', 'frozen')


def perturb(batch: dict, mode: str, rng: np.random.Generator) -> dict:
  """`batch` with each clip's frames (B, T, H, W, 3) (and 'flow') reordered
  or frozen as `mode` says (module docstring)."""
  if mode == 'as_is':
    return batch
  frames = batch['frames']
  rows = np.arange(len(frames))[:, None]
  if mode == 'shuffled':
    order = np.argsort(rng.random(frames.shape[:2]), axis=1)  # (B, T): a permutation per row
    out = {**batch, 'frames': frames[rows, order]}
    if 'flow' in batch:
      out['flow'] = batch['flow'][rows, order]
    return out
  if mode == 'frozen':
    out = {**batch, 'frames': np.repeat(frames[:, :1], frames.shape[1], axis=1)}
    if 'flow' in batch:
      out['flow'] = np.zeros_like(batch['flow'])
    return out
  raise ValueError(f'Unknown mode {mode!r}; valid: {", ".join(MODES)}.')


class PerturbedData:
  """The eval data object with `perturb` applied to every eval batch."""

  def __init__(self, data, mode: str, seed: int):
    self._data, self._mode, self._seed = data, mode, seed

  def __getattr__(self, name):
    return getattr(self._data, name)

  def eval_batches(self, split: str):
    rng = np.random.default_rng([self._seed, zlib.crc32(split.encode())])  # stable per split
    for batch in self._data.eval_batches(split):
      yield perturb(batch, self._mode, rng)
