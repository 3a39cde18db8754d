"""Two-stream M3D network with Residual Attention Layers (Li, Zhang, Huang, AAAI 2019),
and the single-stream 3D ResNet-50s of its Table 1 (I3D, P3D-A/B/C, M3D).

``VideoResNet`` is one stream: a ResNet whose blocks are chosen per block
(``temporal``: '2d', 'm3d' at the first block of each stage, or 'i3d' /
'p3d_*' in every block; ``jaxreid/backbones/resnet.py``), optional RALs after
stages 1-3 (``ral``: branches 'sct' or a subset), then spatial average pooling
of C5, temporal average pooling (for '2d' this is eq. 2's frame average), an
optional linear reduction (``feature_dim``; the official code's 128-d
``feat``), a BatchNorm and the identity classifier. The embedding is the
BatchNorm's output (eval statistics), as the repository's baseline.

``TwoStreamM3D`` holds a 2D stream (``spatial``) and an M3D + RAL stream
(``temporal``), each with its classifier; its embedding is their
concatenation (eq. 1), ``stream_logits`` feed the ``ce_streams`` loss (softmax
CE of each stream, summed: the same gradients as training them apart, which
is what the paper did).

Departures from the official code (ljn114514/M3D), all from the
paper's text: 4 M3D layers (the code also puts one after the stem), T is not
downsampled inside the network (the code halves it at every strided stage),
the temporal kernels are plain convolutions (eq. 5; the code's BN + ReLU per
branch is ``m3d_branch_norm``), the head is a BNNeck without dropout. The
P3D baselines follow the same authors' ResNet50-P3D code by default (BN +
ReLU on every path, ``p3d_norm='per_path'``); ``p3d_norm='after_block'`` is
AP3D's construction (docs/m3d.md says why the default is the first).

ImageNet / 2D weights: ``load_pretrained`` puts one torchvision ResNet-50 file
into every stream's backbone; inflated I3D kernels get the 2D kernel at their
centre tap, and the new temporal and RAL variables keep their (identity)
initialization, so the loaded network computes what the 2D one does.
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.backbones import pretrained as pretrained_lib
from jaxreid.backbones import resnet
from jaxreid.models import common

# Variables a torchvision file cannot provide (fnmatch patterns below a backbone).
TEMPORAL_KEEP_INIT = ('*/temporal_conv*', '*/temporal_bn*', 'ral*')


def _kernels(value):
  """n for every M3D layer (int / None) or per stage (a tuple, also from a config list)."""
  return tuple(value) if isinstance(value, (list, tuple)) else value


class VideoResNet(nn.Module):
  """One stream: a (temporal) ResNet, GAP, temporal mean, BN, classifier.

  Attributes:
    num_classes: training identities; 0 for no classifier.
    backbone: a name in ``resnet.BACKBONES`` ('resnet50' in the paper).
    backbone_width: stem width (None: the published 64).
    last_stride: stride of the last stage (the official M3D code: 2).
    temporal: block choice, see ``resnet.resolve_temporal_blocks``.
    clip_len: training T (fixes the M3D layers' n = floor((T-1)/2)).
    m3d_kernels: n for every M3D layer instead, or one n per stage.
    m3d_branch_norm: BN + ReLU after each temporal kernel (official code).
    p3d_norm: P3D-A/B/C's BN + ReLU placement, 'per_path' (the M3D authors'
      Table 1 baselines) or 'after_block' (AP3D's); ``resnet.ResNet``.
    ral: RAL branches ('' for none; 'sct', 's', 'c', 't', ...).
    ral_stages: stages followed by a RAL (the paper: 1, 2, 3).
    ral_channel_relu: the official code's ReLU ending the channel branch.
    ral_zero_init: 'one' (trainable identity init) or 'all' (the paper's literal
      all-zero init, a saddle with 2+ branches; ``attention.RAL``).
    feature_dim: a linear layer to this width before the BN (0: none).
  """
  num_classes: int
  backbone: str = 'resnet50'
  backbone_width: Optional[int] = None
  last_stride: int = 1
  temporal: Any = 'm3d'
  clip_len: int = 8
  m3d_kernels: Any = None
  m3d_branch_norm: bool = False
  p3d_norm: str = 'per_path'
  ral: str = ''
  ral_stages: Sequence[int] = (1, 2, 3)
  ral_channel_relu: bool = False
  ral_zero_init: str = 'one'
  feature_dim: int = 0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames, train: bool = False):  # (B, T, H, W, 3) uint8
    x = common.normalize_frames(frames, self.dtype)  # (B, T, H, W, 3)
    width = {'width': self.backbone_width} if self.backbone_width else {}
    temporal = None if self.temporal in (None, '2d') else self.temporal
    extra = {}
    if temporal is not None or self.ral:
      extra = dict(temporal_blocks=temporal, clip_len=self.clip_len,
                   m3d_kernels=_kernels(self.m3d_kernels), m3d_branch_norm=self.m3d_branch_norm,
                   p3d_norm=self.p3d_norm,
                   ral_stages=tuple(self.ral_stages) if self.ral else (),
                   ral_branches=self.ral or 'sct', ral_channel_relu=self.ral_channel_relu,
                   ral_zero_init=self.ral_zero_init)
    c5 = resnet.get_backbone(self.backbone, last_stride=self.last_stride, dtype=self.dtype,
                             name='backbone', **width, **extra)(x, train=train)['C5']
    if c5.ndim == 4:  # a plain 2D backbone returns folded frames
      c5 = common.unfold_time(c5, frames.shape[0])
    features = jnp.mean(c5.astype(jnp.float32), axis=(2, 3)).mean(axis=1)  # (B, C)
    if self.feature_dim:
      features = nn.Dense(self.feature_dim, name='feat')(features)
    embedding = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, use_bias=False, name='bnneck')(features)
    outputs = {'embedding': embedding, 'triplet_features': features}
    if self.num_classes:
      outputs['logits'] = nn.Dense(
          self.num_classes, use_bias=False,
          kernel_init=nn.initializers.normal(0.001), name='classifier')(embedding)
    return outputs


class TwoStreamM3D(nn.Module):
  """2D stream + M3D(+RAL) stream; embedding = [f_s, f_t] (eq. 1).

  Attributes are those of ``VideoResNet``, shared by both streams except
  ``temporal`` / ``ral`` (the spatial stream is 2D without RAL).
  ``normalize_streams`` L2-normalizes each stream's embedding before the
  concatenation (the official evaluation normalizes per-tracklet features).
  """
  num_classes: int
  backbone: str = 'resnet50'
  backbone_width: Optional[int] = None
  last_stride: int = 1
  temporal: Any = 'm3d'
  clip_len: int = 8
  m3d_kernels: Any = None
  m3d_branch_norm: bool = False
  p3d_norm: str = 'per_path'
  ral: str = 'sct'
  ral_stages: Sequence[int] = (1, 2, 3)
  ral_channel_relu: bool = False
  ral_zero_init: str = 'one'
  feature_dim: int = 0
  normalize_streams: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frames, train: bool = False):
    common_args = dict(num_classes=self.num_classes, backbone=self.backbone,
                       backbone_width=self.backbone_width, last_stride=self.last_stride,
                       clip_len=self.clip_len, feature_dim=self.feature_dim, dtype=self.dtype)
    spatial = VideoResNet(temporal='2d', ral='', name='spatial', **common_args)(frames, train)
    temporal = VideoResNet(temporal=self.temporal, ral=self.ral, ral_stages=self.ral_stages,
                           ral_channel_relu=self.ral_channel_relu,
                           ral_zero_init=self.ral_zero_init,
                           m3d_kernels=_kernels(self.m3d_kernels),
                           m3d_branch_norm=self.m3d_branch_norm, p3d_norm=self.p3d_norm,
                           name='temporal', **common_args)(frames, train)
    embeddings = [spatial['embedding'], temporal['embedding']]
    if self.normalize_streams:
      embeddings = [e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
                    for e in embeddings]
    outputs = {
        'embedding': jnp.concatenate(embeddings, axis=-1),
        'triplet_features': jnp.concatenate(
            [spatial['triplet_features'], temporal['triplet_features']], axis=-1),
        'stream_embeddings': {'spatial': spatial['embedding'],
                              'temporal': temporal['embedding']},
    }
    if self.num_classes:
      outputs['stream_logits'] = [spatial['logits'], temporal['logits']]
      # For accuracy logging (and the plain 'ce' term): the streams' mean score.
      outputs['logits'] = 0.5 * (spatial['logits'] + temporal['logits'])
    return outputs


def backbone_prefixes(variables) -> Sequence[str]:
  """Where the backbones sit in a model's variables: 'backbone' (one stream) or
  'spatial/backbone' and 'temporal/backbone' (two streams)."""
  params = variables['params']
  if 'backbone' in params:
    return ('backbone',)
  return tuple(f'{s}/backbone' for s in ('spatial', 'temporal') if s in params)


def load_pretrained(variables, weights, *, strict: bool = True):
  """One torchvision-layout ResNet file into every backbone of a VideoResNet /
  TwoStreamM3D: 2D kernels inflate to I3D's 3D ones at the centre tap, the
  temporal kernels and RALs keep their initialization.

  Returns:
    (variables, [LoadReport per backbone]).
  """
  reports = []
  for prefix in backbone_prefixes(variables):
    variables, report = pretrained_lib.merge_pretrained(
        variables, weights, prefix=prefix, strict=strict, keep_init=TEMPORAL_KEEP_INIT,
        adapt=pretrained_lib.inflate_kernels)
    reports.append(report)
  return variables, reports
