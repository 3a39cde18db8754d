"""Running a model on a batch: which batch entries it takes, the flip mirror,
and the jitted embedding forward that evaluation, extraction and search use.

Training (``training/step.py``) and evaluation (``evaluation/retrieval.py``)
both call models through this module, so neither imports the other.
"""

import functools
from typing import Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp

from jaxreid import sharding
from jaxreid.models import common

# Batch keys a model takes (docs/design.md, "Data contract" and "Model
# contract"): 'frames' positionally, the optional ones as keyword arguments
# only when the batch has them, so models without optical flow keep the plain
# ``(frames, train)`` signature.
MODEL_INPUT_KEYS = ('frames', 'flow')


def model_variables(params, batch_stats) -> dict:
  """The variables dict of ``model.apply``: 'batch_stats' only for models with BatchNorm."""
  return {'params': params, 'batch_stats': batch_stats} if batch_stats else {'params': params}


def model_inputs(batch: Mapping) -> dict:
  """The entries of `batch` the model consumes ('frames', and 'flow' if present)."""
  return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


def apply_model(apply_fn, variables, inputs: Mapping, **kwargs):
  """``apply_fn(variables, frames, [flow=...], **kwargs)`` from an inputs dict."""
  extra = {k: v for k, v in inputs.items() if k != 'frames'}
  return apply_fn(variables, inputs['frames'], **extra, **kwargs)


def mirror_inputs(inputs: Mapping) -> dict:
  """Horizontal mirror of a clip: frames flipped along W; optical flow flipped
  along W with its horizontal component (channel 0) negated."""
  mirrored = {'frames': inputs['frames'][:, :, :, ::-1]}  # (B, T, H, W, 3)
  if 'flow' in inputs:
    flow = inputs['flow'][:, :, :, ::-1]  # (B, T, H, W, 2): (dx, dy)
    mirrored['flow'] = flow * jnp.array([-1.0, 1.0], flow.dtype)
  return mirrored


def embed(state, inputs, *extras, flip: bool = False):
  """Eval forward: inputs {'frames': (B, T, H, W, 3), ['flow']} (or a bare
  frames array) -> float32 embeddings (B, D), followed by `extras` unchanged.

  With `flip`, the embedding is the mean of those of the clip and of its
  horizontal mirror (flip test-time augmentation; `mirror_inputs`).
  """
  variables = model_variables(state.params, state.batch_stats)
  if not isinstance(inputs, Mapping):  # a bare frames array
    inputs = {'frames': inputs}
  emb = apply_model(state.apply_fn, variables, inputs, train=False)['embedding']
  emb = emb.astype(jnp.float32)  # (B, D)
  if flip:
    mirrored = apply_model(state.apply_fn, variables, mirror_inputs(inputs),
                           train=False)['embedding']
    emb = 0.5 * (emb + mirrored.astype(jnp.float32))
  return (emb, *extras) if extras else emb


def make_embed_fn(mesh, flip: bool = False):
  """`embed`, jitted, its outputs gathered to every device (and so to every
  process) for ranking.

  Extra batch-sharded arguments (e.g. the rows' 'tracklet' and 'mask') are
  returned gathered too, ``(emb, *extras)``: with several processes each feeds
  only its own rows, and every process needs all of them to rank.
  """
  return jax.jit(functools.partial(embed, flip=flip), out_shardings=sharding.replicated(mesh))


# --- Whole-sequence features (eval.sampler 'sequence') ------------------------

def frame_features(state, inputs, *extras):
  """The model's per-frame part (``part=common.FRAMES``) on eval clips:
  inputs {'frames': (B, T, H, W, 3), ['flow']} -> ({name: (B, T, ...)}, *extras)."""
  variables = model_variables(state.params, state.batch_stats)
  features = apply_model(state.apply_fn, variables, inputs, train=False, part=common.FRAMES)
  return (features, *extras)


def sequence_embedding(state, features, frame_mask):
  """The model's sequence part over whole tracklets: features {name: (R, L,
  ...)} zero-padded to L, frame_mask (R, L) bool -> float32 embeddings (R, D)."""
  variables = model_variables(state.params, state.batch_stats)
  out = state.apply_fn(variables, features, train=False, part=common.SEQUENCE,
                       frame_mask=frame_mask)
  return out['embedding'].astype(jnp.float32)


class SequenceEmbedder(NamedTuple):
  """How whole-sequence features are computed (``evaluation/sequence_features.py``):
  `frames_fn` = ``frame_features`` jitted, outputs gathered to every process;
  `sequence_fn` = ``sequence_embedding`` jitted, replicated."""
  frames_fn: Callable
  sequence_fn: Callable


def make_tracklet_embedder(mesh, eval_config):
  """What evaluation extracts tracklet features with: ``make_embed_fn`` (clip
  embeddings, averaged per tracklet) or, with ``eval_config.sampler`` =
  'sequence', a ``SequenceEmbedder``."""
  if eval_config.sampler == 'sequence':
    replicated = sharding.replicated(mesh)
    return SequenceEmbedder(jax.jit(frame_features, out_shardings=replicated),
                            jax.jit(sequence_embedding, out_shardings=replicated))
  return make_embed_fn(mesh, eval_config.flip)
