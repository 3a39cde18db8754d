"""Embedding tracklets with a trained checkpoint (shared by extract and search)."""

import numpy as np

from jaxreid.evaluation import retrieval
from jaxreid.training import loop, sharding, step as step_lib


def embed_sources(config, workdir: str, sources) -> dict:
  """Features of every tracklet of each (name, data, split) in `sources`."""
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  state, _ = loop.restore_for_inference(config, workdir, mesh)
  embed_fn = step_lib.make_embed_fn(mesh, config.eval.flip)
  parts = []
  for name, data, split in sources:
    feats, labels = retrieval.split_features(embed_fn, state, data, split, mesh)
    names = (data.folders if split == 'folder'
             else [f'{name}/{t}' for t in range(len(feats))])
    parts.append({'features': feats, 'pid': labels['pid'], 'camid': labels['camid'],
                  'split': np.array([name] * len(feats)), 'name': np.array(names)})
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
