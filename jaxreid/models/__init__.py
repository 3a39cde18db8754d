"""Model registry: ``MODELS[name](num_classes=..., **config.model)``.

Every model maps (B, T, H, W, 3) uint8 frames to a dict with ``embedding``
(B, D) for retrieval, ``logits`` (B, num_classes) when it has a classifier, and
whatever its losses need (docs/design.md, "Model contract"). Bracketed keys
such as [CRF] are entries of docs/references.md.
"""

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
  """Builds a registered model; unknown names list the valid ones."""
  if name not in MODELS:
    raise ValueError(
        f'Unknown model {name!r}; valid choices: {", ".join(sorted(MODELS))}.')
  return MODELS[name](**kwargs)
