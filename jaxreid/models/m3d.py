"""Two-stream M3D network with Residual Attention Layers (Li, Zhang, Huang, AAAI 2019),
and the single-stream 3D ResNet-50s of its Table 1 (I3D, P3D-A/B/C, M3D).

``VideoResNet`` is one stream: the generic ResNet of
``jaxreid/backbones/resnet.py`` with the blocks this module injects, chosen
per block by ``temporal`` ('2d'; 'm3d' at the first block of each stage; 'i3d'
/ 'p3d_*' in every block; ``jaxreid/layers/temporal_conv.py``), optional RALs
after stages 1-3 (``ral``: branches 'sct' or a subset;
``jaxreid/layers/attention.py``), then spatial average pooling of C5,
temporal average pooling (for '2d' this is eq. 2's frame average), an optional
linear reduction (``feature_dim``; the official code's 128-d ``feat``), a
BatchNorm and the identity classifier. The embedding is the BatchNorm's output
(eval statistics), as the repository's baseline.

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

ImageNet / 2D weights (``load``): one torchvision ResNet-50 file goes into
every stream's backbone; inflated I3D kernels get the 2D kernel at their
centre tap, and the new temporal and RAL variables keep their (identity)
initialization, so the loaded network computes what the 2D one does.
"""

import functools
from typing import Any, Mapping, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from jaxreid.backbones import pretrained
from jaxreid.backbones import resnet
from jaxreid.layers import attention, folding, temporal_conv
from jaxreid.layers.choices import check_choice
from jaxreid.models import common

TEMPORAL_PRESETS = ('2d', 'm3d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c')
# Variables a 2D file cannot provide (fnmatch patterns below a backbone): they
# keep their initialization, at which they change nothing.
KEEP_INIT = ('*/temporal_conv*', '*/temporal_bn*', 'ral*')


def resolve_temporal_blocks(spec, stage_sizes: Sequence[int]) -> Tuple[Tuple[str, ...], ...]:
  """The block kind of every block, one tuple per stage.

  None / '2d': all 2D; 'm3d': the first block of each stage (the paper's 4 M3D
  layers); 'i3d', 'p3d_a', 'p3d_b', 'p3d_c': every block (Table 1); or an
  explicit sequence of per-stage sequences of kinds.
  """
  if spec is None or isinstance(spec, str):
    spec = spec or '2d'
    check_choice('temporal preset', spec, TEMPORAL_PRESETS,
                 ', or one sequence of block kinds per stage')
    if spec == 'm3d':
      return tuple(('m3d',) + ('2d',) * (n - 1) for n in stage_sizes)
    return tuple((spec,) * n for n in stage_sizes)
  kinds = tuple(tuple(stage) for stage in spec)
  if tuple(len(stage) for stage in kinds) != tuple(stage_sizes):
    raise ValueError(f'temporal has {tuple(len(s) for s in kinds)} blocks per stage; '
                     f'the backbone has {tuple(stage_sizes)}.')
  for stage in kinds:
    for kind in stage:
      check_choice('temporal block', kind, temporal_conv.TEMPORAL_BLOCKS)
  return kinds


def kernels_per_stage(m3d_kernels, clip_len: int, num_stages: int) -> Tuple[int, ...]:
  """n, the number of temporal kernels of each stage's M3D layers: one per
  stage (a sequence: the official code's (3, 3, 2, 1) at T = 8), the same for
  every stage (an int), or None: eq. 6's floor((clip_len - 1) / 2), fixed by
  the training T so that the parameters do not depend on the eval T."""
  if m3d_kernels is None:
    return (temporal_conv.default_num_kernels(clip_len),) * num_stages
  if isinstance(m3d_kernels, (tuple, list)):
    return tuple(int(n) for n in m3d_kernels)
  return (int(m3d_kernels),) * num_stages


def _load_streams(prefixes: Sequence[str]):
  """A ``load`` filling the backbones under `prefixes` from one 2D file."""
  def load(self, variables: dict, weights: Mapping[str, np.ndarray]) -> dict:
    """The 2D file into every stream's backbone: 2D kernels inflate to I3D's
    3D ones at the centre tap; temporal kernels and RALs keep their init."""
    del self
    return pretrained.merge_backbones(variables, weights, prefixes, keep_init=KEEP_INIT,
                                      adapt=pretrained.inflate_kernels)
  return load


class StreamOptions(common.BackboneModel):
  """The attributes of a stream: those of ``common.BackboneModel``
  ('resnet50' in the paper; the official M3D code's ``last_stride`` is 2), and:

    temporal: block choice, see ``resolve_temporal_blocks``.
    clip_len: training T (fixes the M3D layers' n = floor((T-1)/2)).
    m3d_kernels: n for every M3D layer instead, or one n per stage
      (``kernels_per_stage``).
    m3d_branch_norm: BN + ReLU after each temporal kernel (official code).
    p3d_norm: P3D-A/B/C's BN + ReLU placement, 'per_path' (the M3D authors'
      Table 1 baselines) or 'after_block' (AP3D's);
      ``temporal_conv.P3D_NORMS``.
    ral: RAL branches ('' for none; 'sct', 's', 'c', 't', ...).
    ral_stages: stages followed by a RAL (the paper: 1, 2, 3).
    ral_channel_relu: the official code's ReLU ending the channel branch.
    ral_zero_init: 'one' (trainable identity init) or 'all' (the paper's literal
      all-zero init, a saddle with 2+ branches; ``attention.RAL``).
    feature_dim: a linear layer to this width before the BN (0: none).
  """
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


class VideoResNet(StreamOptions):
  """One stream: a (temporal) ResNet, GAP, temporal mean, BN, classifier."""

  load = _load_streams((common.BACKBONE,))
  new_layers = KEEP_INIT  # learn at the base rate under config.pretrained_lr_mult

  def _trunk(self, time_steps: int, train: bool) -> nn.Module:
    """The backbone: the ResNet with this stream's blocks and RALs injected."""
    kinds = resolve_temporal_blocks(self.temporal, resnet.stage_sizes(self.backbone))
    if all(kind == '2d' for stage in kinds for kind in stage) and not self.ral:
      return self.resnet()
    check_choice('p3d_norm', self.p3d_norm, temporal_conv.P3D_NORMS)
    kernels = kernels_per_stage(self.m3d_kernels, self.clip_len, len(kinds))

    def spatial_at(stage: int, block: int):
      if kinds[stage][block] == '2d':
        return None  # the block's own 3x3 convolution
      return functools.partial(
          temporal_conv.spatiotemporal_conv, kind=kinds[stage][block], time_steps=time_steps,
          num_kernels=kernels[stage], branch_norm=self.m3d_branch_norm,
          p3d_norm=self.p3d_norm, dtype=self.dtype)

    def after_stage(x, stage: int):  # runs inside the trunk: the RAL is 'backbone/ral{i}'
      if not self.ral or stage + 1 not in self.ral_stages:
        return x
      return attention.RAL(self.ral, time_steps=time_steps, train=train,
                           channel_relu=self.ral_channel_relu, zero_init=self.ral_zero_init,
                           dtype=self.dtype, name=f'ral{stage + 1}')(x)

    return self.resnet(spatial_at=spatial_at, after_stage=after_stage)

  @nn.compact
  def __call__(self, frames, train: bool = False):  # (B, T, H, W, 3) uint8
    batch_size, time_steps = frames.shape[:2]
    x = folding.fold_time(common.normalize_frames(frames, self.dtype))  # (B*T, H, W, 3)
    c5 = self._trunk(time_steps, train)(x, train=train)['C5']  # (B*T, h, w, C)
    c5 = folding.unfold_time(c5, time_steps)  # (B, T, h, w, C)
    features = jnp.mean(c5.astype(jnp.float32), axis=(2, 3)).mean(axis=1)  # (B, C)
    if self.feature_dim:
      features = nn.Dense(self.feature_dim, name='feat')(features)
    outputs = common.bnneck_head(features, self.num_classes, train)
    return common.check_outputs(outputs, batch_size, self.num_classes)


class TwoStreamM3D(StreamOptions):
  """2D stream + M3D(+RAL) stream; embedding = [f_s, f_t] (eq. 1).

  Attributes are those of ``StreamOptions``, shared by both streams except
  ``temporal`` / ``ral`` (the spatial stream is 2D without RAL).
  ``normalize_streams`` L2-normalizes each stream's embedding before the
  concatenation (the official evaluation normalizes per-tracklet features).
  """
  ral: str = 'sct'
  normalize_streams: bool = False

  load = _load_streams(tuple(f'{s}/{common.BACKBONE}' for s in ('spatial', 'temporal')))
  new_layers = KEEP_INIT

  @nn.compact
  def __call__(self, frames, train: bool = False):  # (B, T, H, W, 3) uint8
    stream = common.fields_of(self, StreamOptions)
    spatial = VideoResNet(**{**stream, 'temporal': '2d', 'ral': ''}, name='spatial')(frames, train)
    temporal = VideoResNet(**stream, name='temporal')(frames, train)
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
    return common.check_outputs(outputs, frames.shape[0], self.num_classes)
