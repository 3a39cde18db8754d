"""Model registry: ``MODELS[name](num_classes=..., **config.model)``.

Every model maps (B, T, H, W, 3) uint8 frames to a dict with ``embedding``
(B, D) for retrieval, ``logits`` (B, num_classes) when it has a classifier, and
whatever its losses need (docs/design.md, "Model contract"). Bracketed keys
such as [CRF] are entries of docs/references.md.
"""

from jaxreid.layers.choices import check_choice
from jaxreid.models import baselines
from jaxreid.models import crf
from jaxreid.models import m3d
from jaxreid.models import mstn
from jaxreid.models import rru
from jaxreid.models import trsa

MODELS = {
    'temporal_pooling': baselines.TemporalPooling,
    'video_resnet': m3d.VideoResNet,  # 2D / M3D / I3D / P3D-A/B/C by `temporal`, RAL by `ral`
    'two_stream_m3d': m3d.TwoStreamM3D,
    'trsa': trsa.TRSA,
    'crf': crf.CRF,  # CNN + RNN fusion ([CRF]); needs config.use_flow unless model.use_flow=False
    'mstn': mstn.MSTN,  # multi-scale ResNet + CLSTM; Table 1 rows by `recurrence`
    'rru': rru.RRUNet,  # RRU + STIM; Table 1 rows by `rru` and `temporal`
}


def get_model(name: str, **kwargs):
  """Builds a registered model; unknown names list the valid ones. Every
  model also has ``load(variables, weights) -> variables``, which puts a
  torchvision-layout state dict into its backbone(s) (``models.common``)."""
  check_choice('model', name, sorted(MODELS))
  return MODELS[name](**kwargs)


# --- What models return and which of it each loss term reads -----------------
# (imports here: this part of the file is the model -> loss contract, apart
# from the registry above)
from typing import TypedDict  # pylint: disable=g-import-not-at-top,wrong-import-position

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import flax.linen as nn  # pylint: disable=g-import-not-at-top,wrong-import-position


class ModelOutputs(TypedDict, total=False):
  """The dict every model returns (docs/design.md, "Model contract"):
  'embedding' always, the others when the model has them."""
  embedding: jax.Array  # (B, D) float32: the retrieval feature
  logits: jax.Array  # (B, num_classes): the identity classifier's scores
  triplet_features: jax.Array  # (B, D'): the triplet's feature where it is not the
  #   embedding (before a BNNeck; the two streams' concatenated)
  pair_features: jax.Array  # (B, D): the siamese feature, rows (2i, 2i + 1) a pair (crf)
  part_features: jax.Array  # (B, H, D): one feature per horizontal strip (rru)
  attention: jax.Array  # (B, T, h, w): each frame's spatial attention, summing to 1 (trsa)
  aux_logits: list  # [(B, num_classes)]: auxiliary classifiers (mstn's f1, rru's
  #   Inception-v3, crf's branches)
  stream_logits: list  # [(B, num_classes)]: one classifier per stream (two_stream_m3d)
  stream_embeddings: dict  # {'spatial', 'temporal': (B, D)} (two_stream_m3d; no loss reads them)
  temporal_features: jax.Array  # (B, F): the temporal branch alone (mstn; no loss reads it)


# Loss term (jaxreid.losses.LOSS_TERMS) -> the outputs it can read, in order
# of preference: the first one the model returns is the term's input.
LOSS_INPUTS = {
    'ce': ('logits',),
    'focal': ('logits',),
    'aux_ce': ('aux_logits',),
    'ce_streams': ('stream_logits',),
    'triplet': ('triplet_features', 'embedding'),
    'part_triplet': ('part_features',),
    'contrastive': ('pair_features', 'embedding'),
    'temporal_reg': ('attention',),
}


def model_name(model) -> str:
  """The registry name of a Flax module (or of its bound ``apply``); '' for
  anything else."""
  module = getattr(model, '__self__', model)
  if not isinstance(module, nn.Module):
    return ''
  return next((name for name, cls in MODELS.items() if type(module) is cls),
              type(module).__name__)


def loss_inputs(terms, outputs, model=None) -> dict:
  """{term: the model output it reads} for every loss term in `terms`.

  Raises:
    ValueError: a term needs an output the model does not return; one line
      naming the term, the outputs it can read and those the model returns.
  """
  inputs = {}
  for term in terms:
    key = next((k for k in LOSS_INPUTS[term] if k in outputs), None)
    if key is None:
      name = model_name(model)
      raise ValueError(
          f'loss term {term!r} needs model output '
          f'{" or ".join(repr(k) for k in LOSS_INPUTS[term])}; '
          f'{f"model {name!r}" if name else "the model"} returns: '
          f'{", ".join(sorted(outputs))}.')
    inputs[term] = outputs[key]
  return inputs
