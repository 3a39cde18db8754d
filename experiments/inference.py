"""Embedding tracklets with a trained checkpoint (shared by extract and search).

Features are only comparable when one checkpoint made them, so every result
carries its provenance: the training run's workdir, the checkpoint's step and
a fingerprint (`fingerprint`), stored by extract in the gallery .npz as the
0-d arrays of PROVENANCE_KEYS and checked by search.
"""

import hashlib
import json
import os

import numpy as np

from jaxreid import inference, sharding
from jaxreid.evaluation import retrieval
from jaxreid.training import setup

# 0-d arrays of a gallery .npz naming the checkpoint that embedded it.
PROVENANCE_KEYS = ('checkpoint_workdir', 'checkpoint_step', 'checkpoint_fingerprint')


def fingerprint(meta, step: int) -> str:
  """A short hash of the checkpoint's JSON record (what it was built for:
  model name and arguments, classes, input shape, data, ...; see
  ``jaxreid.training.record.checkpoint_meta``) and its step."""
  blob = json.dumps({'meta': meta, 'step': int(step)}, sort_keys=True, default=str)
  return hashlib.sha256(blob.encode()).hexdigest()[:16]


def provenance(workdir: str, step: int, meta) -> dict:
  """The PROVENANCE_KEYS of features embedded by `workdir`'s checkpoint of `step`."""
  return {'checkpoint_workdir': os.path.realpath(workdir), 'checkpoint_step': int(step),
          'checkpoint_fingerprint': fingerprint(meta, step)}


def embed_sources(config, workdir: str, sources, check=None, step='latest') -> dict:
  """Features of every tracklet of each (name, data, split) in `sources`, with
  the PROVENANCE_KEYS of the checkpoint used. `check(provenance)`, if given,
  runs once the checkpoint is restored, before any embedding (search refuses
  a gallery of another checkpoint there). `step`: which checkpoint (latest,
  best or a number; ``setup.restore_for_inference``)."""
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  state, meta = setup.restore_for_inference(config, workdir, mesh, step)
  origin = provenance(workdir, int(state.step), meta)
  if check is not None:
    check(origin)
  embed_fn = inference.make_tracklet_embedder(mesh, config.eval)
  parts = []
  for name, data, split in sources:
    feats, labels = retrieval.split_features(embed_fn, state, data, split, mesh)
    names = (data.folders if split == 'folder'
             else [f'{name}/{t}' for t in range(len(feats))])
    parts.append({'features': feats, 'pid': labels['pid'], 'camid': labels['camid'],
                  'split': np.array([name] * len(feats)), 'name': np.array(names)})
  arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  arrays.update({k: np.array(v) for k, v in origin.items()})  # 0-d: str or int
  return arrays
