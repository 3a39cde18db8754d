"""Whole-sequence evaluation of the recurrent models (MSTN, RRU + STIM, CRF):
the per-frame part run in chunks, then the sequence part over the whole
padded tracklet with its frame mask, must give what the model gives on the
tracklet as one clip of its own length (the definition of "the recurrence
over the whole tracklet once"), whatever the padding holds; and differ from
averaging chunk features, since the recurrence then restarts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreid.models import common
from jaxreid.models import crf, mstn, rru

_CHUNK = 3
_LENGTHS = (7, 8)  # 3 + 3 + 1 and 3 + 3 + 2 frames (one chunk shape); padded to 8

MODELS = {
    'mstn_clstm': lambda: mstn.MSTN(num_classes=3, backbone='resnet_tiny', backbone_width=8,
                                    scale_features=4, cut_features=4, lstm_features=4),
    'rru_stim': lambda: rru.RRUNet(num_classes=3, backbone='resnet_tiny', backbone_width=8,
                                   transition_features=4, spatial_hidden=4, stim_features=4,
                                   classifier_hidden=4),
    'crf': lambda: crf.CRF(num_classes=3, filters=(3, 4, 4), feature_dim=6, conv_padding=2,
                           use_flow=False),
}


def _tracklets(seed=0):
  rng = np.random.default_rng(seed)
  return [rng.integers(0, 256, (n, 32, 16, 3), np.uint8) for n in _LENGTHS]


def _trained_like(model, frames):
  """Variables with non-trivial BN statistics (one train-mode forward), so
  eval BN is not the identity."""
  variables = jax.jit(model.init)(jax.random.key(0), frames[:, :2])
  if 'batch_stats' not in variables:
    return variables
  train_apply = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats'],
                                                 rngs={'dropout': jax.random.key(1)}))
  _, updates = train_apply(variables, frames)
  return {**variables, 'batch_stats': updates['batch_stats']}


def _applier(model):
  """model.apply, jitted (eager scans are slow on CPU)."""
  return jax.jit(model.apply, static_argnames=('part', 'train'))


def _sequence_embeddings(model, variables, tracklets, padding_value):
  """Chunks of _CHUNK frames through part=FRAMES (the last chunk cycled, as
  the eval pipeline does), the real frames kept, padded to a common length
  with `padding_value`, then part=SEQUENCE."""
  apply = _applier(model)
  per_tracklet = []
  for frames in tracklets:
    n = len(frames)
    chunks = [start + np.arange(_CHUNK) % (n - start) for start in range(0, n, _CHUNK)]
    feats = apply(variables, jnp.asarray(np.stack([frames[c] for c in chunks])),
                  part=common.FRAMES)
    valid = [min(_CHUNK, n - c[0]) for c in chunks]
    per_tracklet.append({k: np.concatenate([np.asarray(v[i, :m]) for i, m in enumerate(valid)])
                         for k, v in feats.items()})
  length = 8
  padded = {k: np.stack([np.concatenate([f[k], np.full((length - len(f[k]),) + f[k].shape[1:],
                                                       padding_value, f[k].dtype)])
                         for f in per_tracklet]) for k in per_tracklet[0]}
  mask = np.arange(length)[None] < np.array(_LENGTHS)[:, None]
  return np.asarray(apply(variables, padded, part=common.SEQUENCE,
                          frame_mask=jnp.asarray(mask))['embedding'])


@pytest.mark.parametrize('name', sorted(MODELS))
def test_sequence_parts_equal_the_tracklet_as_one_clip(name):
  model = MODELS[name]()
  tracklets = _tracklets()
  variables = _trained_like(model, jnp.asarray(np.stack([t[:4] for t in tracklets])))
  apply = _applier(model)
  whole = np.concatenate([np.asarray(apply(variables, jnp.asarray(t[None]))['embedding'])
                          for t in tracklets])
  for padding_value in (0.0, 1e3):  # what padding holds must not matter
    seq = _sequence_embeddings(model, variables, tracklets, padding_value)
    np.testing.assert_allclose(seq, whole, rtol=2e-4, atol=2e-5)
  # Chunk averaging restarts the recurrence every _CHUNK frames: another feature.
  chunked = []
  for frames in tracklets:
    n = len(frames)
    chunks = np.stack([frames[s + np.arange(_CHUNK) % (n - s)] for s in range(0, n, _CHUNK)])
    chunked.append(np.asarray(apply(variables, jnp.asarray(chunks))['embedding']).mean(0))
  assert not np.allclose(np.stack(chunked), whole, rtol=1e-3, atol=1e-4)


def test_models_without_sequence_parts_refuse_them():
  from jaxreid.models import baselines  # pylint: disable=g-import-not-at-top
  model = baselines.TemporalPooling(num_classes=3, backbone='resnet_tiny', backbone_width=8)
  frames = jnp.zeros((1, 2, 32, 16, 3), jnp.uint8)
  with pytest.raises(TypeError):
    jax.eval_shape(lambda: model.init(jax.random.key(0), frames, part=common.FRAMES))
  with pytest.raises(ValueError, match='frame_mask is only for part=SEQUENCE'):
    jax.eval_shape(lambda: MODELS['crf']().init(jax.random.key(0), frames,
                                                frame_mask=jnp.ones((1, 2), bool)))
