"""ResNet-18/34/50 in Flax linen, laid out like torchvision's (ResNet v1.5).

The backbone maps a batch of frames (N, H, W, 3) to the outputs of its four
stages, ``{'C2': ..., 'C3': ..., 'C4': ..., 'C5': ...}``, so that models can use
one scale (the pooling baseline) or several (MSTN's multi-scale fusion).

Layout choices that matter later:
  * Paddings are explicit and symmetric, as in torchvision (Flax's 'SAME' pads
    stride-2 convolutions asymmetrically), so imported ImageNet weights give
    the same function.
  * The stride of a bottleneck block sits on its 3x3 convolution (v1.5).
  * Module names follow torchvision (``conv1``, ``bn1``, ``layer1_0``,
    ``downsample_conv``), which keeps the weight-name mapping obvious.
  * ``last_stride=1`` keeps C5 at 1/16 resolution (16 x 8 maps at 256 x 128),
    as the strong re-ID baseline and TRSA do.

Video variants (M3D paper, Table 1): ``temporal_blocks`` chooses, per block,
what its 3x3 convolution becomes (``jaxreid/layers/temporal_conv.py``: '2d',
'm3d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c'), and ``ral_stages`` inserts Residual
Attention Layers after stages. Such a backbone takes clips (B, T, H, W, 3) and
returns (B, T, h, w, C) stage outputs; frames stay folded (B*T, ...) inside, so
the spatial layers and their names are the 2D network's.
"""

import functools
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.layers import attention
from jaxreid.layers import temporal_conv

ModuleDef = Callable[..., nn.Module]


def _same_padding(kernel: int):
  pad = kernel // 2
  return ((pad, pad), (pad, pad))


class BasicBlock(nn.Module):
  """Two 3x3 convolutions with an identity (or 1x1 projected) shortcut."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  temporal: str = '2d'  # what conv1 becomes (temporal_conv.TEMPORAL_BLOCKS)
  time_steps: int = 1  # T of the folded input (N = B*T)
  temporal_options: Any = None  # num_kernels, clip_len, branch_norm, p3d_norm
  expansion = 1

  @nn.compact
  def __call__(self, x):  # (N, H, W, C_in)
    residual = x
    if self.temporal != '2d':
      y = temporal_conv.spatiotemporal_conv(
          x, self.temporal, features=self.filters, conv=self.conv, norm=self.norm,
          time_steps=self.time_steps, strides=self.strides, conv_name='conv1',
          norm_name='bn1', **(self.temporal_options or {}))
    else:
      y = self.conv(self.filters, (3, 3), (self.strides,) * 2,
                    padding=_same_padding(3), name='conv1')(x)
      y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.filters, (3, 3), padding=_same_padding(3), name='conv2')(y)
    y = self.norm(name='bn2')(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters, (1, 1), (self.strides,) * 2,
                           padding='VALID', name='downsample_conv')(residual)
      residual = self.norm(name='downsample_bn')(residual)
    return nn.relu(residual + y)  # (N, H/s, W/s, filters)


class Bottleneck(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a projected shortcut."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  temporal: str = '2d'  # what conv2 becomes (temporal_conv.TEMPORAL_BLOCKS)
  time_steps: int = 1  # T of the folded input (N = B*T)
  temporal_options: Any = None  # num_kernels, clip_len, branch_norm, p3d_norm
  expansion = 4

  @nn.compact
  def __call__(self, x):  # (N, H, W, C_in)
    residual = x
    y = self.conv(self.filters, (1, 1), padding='VALID', name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    if self.temporal != '2d':
      y = temporal_conv.spatiotemporal_conv(
          y, self.temporal, features=self.filters, conv=self.conv, norm=self.norm,
          time_steps=self.time_steps, strides=self.strides, **(self.temporal_options or {}))
    else:
      y = self.conv(self.filters, (3, 3), (self.strides,) * 2,
                    padding=_same_padding(3), name='conv2')(y)
      y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(self.filters * 4, (1, 1), padding='VALID', name='conv3')(y)
    y = self.norm(name='bn3')(y)
    if residual.shape != y.shape:
      residual = self.conv(self.filters * 4, (1, 1), (self.strides,) * 2,
                           padding='VALID', name='downsample_conv')(residual)
      residual = self.norm(name='downsample_bn')(residual)
    return nn.relu(residual + y)  # (N, H/s, W/s, 4 * filters)


class ResNet(nn.Module):
  """ResNet trunk returning the four stage outputs C2..C5.

  Attributes:
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    block_cls: ``BasicBlock`` or ``Bottleneck``.
    width: channels of the stem and the first stage (64 in the paper nets;
      smaller for CPU-sized variants).
    last_stride: stride of the first block of the last stage (2 or 1).
    dtype: computation dtype (parameters stay float32).
    temporal_blocks: None or '2d' (a 2D network); a preset, 'm3d' (M3D at
      the first block of each stage, as the paper) or 'i3d' / 'p3d_a' /
      'p3d_b' / 'p3d_c' (every block, paper Table 1); or one sequence of block
      kinds per stage. Non-2D blocks need clip input (B, T, H, W, 3).
    clip_len: training T; fixes the M3D layers' n = floor((T - 1) / 2).
    m3d_kernels: n for every M3D layer instead (None: from clip_len), or one
      n per stage (the official code's layout: (3, 3, 2, 1) for T = 8).
    m3d_branch_norm: BN + ReLU after each temporal kernel (official code).
    p3d_norm: where P3D-A/B/C put BN + ReLU: 'per_path' (the M3D authors'
      baselines, behind the paper's Table 1: a ``temporal_bn`` + ReLU on the
      temporal path) or 'after_block' (AP3D: ``bn2`` + ReLU after the whole
      spatial + temporal block); ``temporal_conv.P3D_NORMS``.
    ral_stages: 1-based stages followed by a RAL (the paper: (1, 2, 3)).
    ral_branches: the RALs' branches, a subset of 'sct'.
    ral_channel_relu: the official code's ReLU ending the channel branch.
    ral_zero_init: 'one' or 'all' (``attention.RAL``).
  """
  stage_sizes: Sequence[int]
  block_cls: Any
  width: int = 64
  last_stride: int = 2
  dtype: Any = jnp.float32
  temporal_blocks: Any = None
  clip_len: int = 8
  m3d_kernels: Any = None
  m3d_branch_norm: bool = False
  p3d_norm: str = 'per_path'
  ral_stages: Sequence[int] = ()
  ral_branches: str = 'sct'
  ral_channel_relu: bool = False
  ral_zero_init: str = 'one'

  @nn.compact
  def __call__(self, x, train: bool = False):  # (N, H, W, 3) or (B, T, H, W, 3) normalized
    kinds = resolve_temporal_blocks(self.temporal_blocks, self.stage_sizes)
    if self.p3d_norm not in temporal_conv.P3D_NORMS:  # checked even where no P3D block uses it
      raise ValueError(f'Unknown p3d_norm {self.p3d_norm!r}; valid choices: '
                       f'{", ".join(temporal_conv.P3D_NORMS)}.')
    video = x.ndim == 5
    if not video and (self.ral_stages or any(k != '2d' for stage in kinds for k in stage)):
      raise ValueError('A backbone with temporal blocks or RAL takes clips (B, T, H, W, 3); '
                       f'got an input of shape {x.shape}.')
    batch_size, time_steps = (x.shape[0], x.shape[1]) if video else (x.shape[0], 1)
    if video:
      x = x.reshape((batch_size * time_steps,) + x.shape[2:])  # (B*T, H, W, 3), time inner
    options = dict(num_kernels=self.m3d_kernels, clip_len=self.clip_len,
                   branch_norm=self.m3d_branch_norm, p3d_norm=self.p3d_norm, dtype=self.dtype)
    conv = functools.partial(nn.Conv, use_bias=False, dtype=self.dtype)
    # torch.nn.BatchNorm2d defaults: momentum 0.1 (= Flax 0.9), eps 1e-5.
    norm = functools.partial(nn.BatchNorm, use_running_average=not train,
                             momentum=0.9, epsilon=1e-5, dtype=self.dtype)
    x = conv(self.width, (7, 7), (2, 2), padding=_same_padding(7), name='conv1')(x)
    x = nn.relu(norm(name='bn1')(x))
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    outputs = {}
    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 1
        if j == 0 and i > 0:
          strides = self.last_stride if i == len(self.stage_sizes) - 1 else 2
        stage_options = dict(options)
        if isinstance(self.m3d_kernels, (tuple, list)):  # n per stage
          stage_options['num_kernels'] = self.m3d_kernels[i]
        temporal = {} if kinds[i][j] == '2d' else dict(
            temporal=kinds[i][j], time_steps=time_steps, temporal_options=stage_options)
        x = self.block_cls(self.width * 2**i, conv=conv, norm=norm,
                           strides=strides, name=f'layer{i + 1}_{j}', **temporal)(x)
      if i + 1 in self.ral_stages:
        x = attention.RAL(self.ral_branches, time_steps=time_steps, train=train,
                          channel_relu=self.ral_channel_relu, zero_init=self.ral_zero_init,
                          dtype=self.dtype,
                          name=f'ral{i + 1}')(x)
      outputs[f'C{i + 2}'] = x  # (N, H/2^(i+2), W/2^(i+2), C_i)
    if video:  # (B, T, h, w, C)
      outputs = {k: v.reshape((batch_size, time_steps) + v.shape[1:]) for k, v in outputs.items()}
    return outputs


TEMPORAL_PRESETS = ('2d', 'm3d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c')


def resolve_temporal_blocks(spec, stage_sizes: Sequence[int]):
  """The block kind of every block, one tuple per stage.

  None / '2d': all 2D; 'm3d': the first block of each stage (the paper's 4 M3D
  layers); 'i3d', 'p3d_a', 'p3d_b', 'p3d_c': every block (Table 1); or an
  explicit sequence of per-stage sequences of kinds.
  """
  if spec is None or isinstance(spec, str):
    spec = spec or '2d'
    if spec not in TEMPORAL_PRESETS:
      raise ValueError(f'Unknown temporal_blocks preset {spec!r}; valid choices: '
                       f'{", ".join(TEMPORAL_PRESETS)}, or one sequence of block kinds per stage.')
    if spec == 'm3d':
      return tuple(('m3d',) + ('2d',) * (n - 1) for n in stage_sizes)
    return tuple((spec,) * n for n in stage_sizes)
  kinds = tuple(tuple(stage) for stage in spec)
  if tuple(len(stage) for stage in kinds) != tuple(stage_sizes):
    raise ValueError(f'temporal_blocks has {tuple(len(s) for s in kinds)} blocks per stage; '
                     f'the backbone has {tuple(stage_sizes)}.')
  for stage in kinds:
    for kind in stage:
      if kind not in temporal_conv.TEMPORAL_BLOCKS:
        raise ValueError(f'Unknown temporal block {kind!r}; valid choices: '
                         f'{", ".join(temporal_conv.TEMPORAL_BLOCKS)}.')
  return kinds


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block_cls=BasicBlock)
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=BasicBlock)
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block_cls=Bottleneck)
# One block per stage and 8 channels: for unit tests only.
ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1), block_cls=BasicBlock, width=8)

BACKBONES = {
    'resnet18': ResNet18,
    'resnet34': ResNet34,
    'resnet50': ResNet50,
    'resnet_tiny': ResNetTiny,
}


def get_backbone(backbone: str, **kwargs) -> nn.Module:
  """Builds a registered backbone; unknown names list the valid ones."""
  if backbone not in BACKBONES:
    raise ValueError(
        f'Unknown backbone {backbone!r}; valid choices: {", ".join(sorted(BACKBONES))}.')
  return BACKBONES[backbone](**kwargs)

