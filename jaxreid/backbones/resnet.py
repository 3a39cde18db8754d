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

Where a model changes the network (the Flax examples' ``functools.partial``
blocks, big_vision's stages): a block's 3x3 convolution with its BatchNorm and
ReLU is its ``spatial`` unit (``conv3x3_bn_relu`` by default);
``ResNet.spatial_at(stage, block)`` gives a block another unit and
``ResNet.after_stage(x, stage)`` adds layers after a stage. Both run inside
the trunk, so what they create is named below it (``layer1_0/temporal_conv1``,
``ral1``) and the 2D layers keep their names. The M3D paper's video ResNets
are built that way in ``jaxreid/models/m3d.py``; this trunk knows nothing of
time.
"""

import functools
from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.layers.choices import check_choice

ModuleDef = Callable[..., nn.Module]
# unit(x, *, features, strides, conv, norm, conv_name, norm_name) -> y: a
# block's 3x3 convolution + BN + ReLU, creating `conv_name` and `norm_name`.
SpatialUnit = Callable[..., Any]


def _same_padding(kernel: int):
  pad = kernel // 2
  return ((pad, pad), (pad, pad))


def conv3x3_bn_relu(x, *, features: int, strides: int, conv: ModuleDef, norm: ModuleDef,
                    conv_name: str, norm_name: str):
  """A block's 2D spatial unit: 3x3 convolution (stride `strides`), BN, ReLU."""
  y = conv(features, (3, 3), (strides,) * 2, padding=_same_padding(3), name=conv_name)(x)
  return nn.relu(norm(name=norm_name)(y))


def _add_shortcut(x, y, features: int, strides: int, conv: ModuleDef, norm: ModuleDef):
  """relu(shortcut(x) + y); the shortcut is the identity, or a strided 1x1
  projection + BN where the shapes differ. Called inside a block."""
  if x.shape != y.shape:
    x = conv(features, (1, 1), (strides,) * 2, padding='VALID', name='downsample_conv')(x)
    x = norm(name='downsample_bn')(x)
  return nn.relu(x + y)  # (N, H/s, W/s, features)


class _Block(nn.Module):
  """A residual block: `filters` channels (x ``expansion`` at its output), the
  trunk's conv and BatchNorm constructors, the stride of its spatial unit."""
  filters: int
  conv: ModuleDef
  norm: ModuleDef
  strides: int = 1
  spatial: SpatialUnit = conv3x3_bn_relu

  def _spatial(self, x, conv_name: str, norm_name: str):
    return self.spatial(x, features=self.filters, strides=self.strides, conv=self.conv,
                        norm=self.norm, conv_name=conv_name, norm_name=norm_name)


class BasicBlock(_Block):
  """Two 3x3 convolutions (the first is the spatial unit) and a shortcut."""
  expansion = 1

  @nn.compact
  def __call__(self, x):  # (N, H, W, C_in)
    y = self._spatial(x, 'conv1', 'bn1')
    y = self.conv(self.filters, (3, 3), padding=_same_padding(3), name='conv2')(y)
    y = self.norm(name='bn2')(y)
    return _add_shortcut(x, y, self.filters, self.strides, self.conv, self.norm)


class Bottleneck(_Block):
  """1x1 reduce, the (strided) spatial unit, 1x1 expand by 4, and a shortcut."""
  expansion = 4

  @nn.compact
  def __call__(self, x):  # (N, H, W, C_in)
    y = self.conv(self.filters, (1, 1), padding='VALID', name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self._spatial(y, 'conv2', 'bn2')
    y = self.conv(self.filters * 4, (1, 1), padding='VALID', name='conv3')(y)
    y = self.norm(name='bn3')(y)
    return _add_shortcut(x, y, self.filters * 4, self.strides, self.conv, self.norm)


class ResNet(nn.Module):
  """ResNet trunk returning the four stage outputs C2..C5.

  Attributes:
    stage_sizes: blocks per stage, e.g. (3, 4, 6, 3) for ResNet-50.
    block_cls: ``BasicBlock`` or ``Bottleneck``.
    width: channels of the stem and the first stage (64 in the paper nets;
      smaller for CPU-sized variants).
    last_stride: stride of the first block of the last stage (2 or 1).
    dtype: computation dtype (parameters stay float32).
    spatial_at: None, or ``spatial_at(stage, block)`` (0-based) -> the
      spatial unit of that block (None: the block's own 2D one).
    after_stage: None, or ``after_stage(x, stage)`` -> x, applied to the
      output of every stage (0-based) before it is returned.
  """
  stage_sizes: Sequence[int]
  block_cls: ModuleDef
  width: int = 64
  last_stride: int = 2
  dtype: Any = jnp.float32
  spatial_at: Optional[Callable[[int, int], Optional[SpatialUnit]]] = None
  after_stage: Optional[Callable[[Any, int], Any]] = None

  @nn.compact
  def __call__(self, x, train: bool = False):  # (N, H, W, 3), normalized
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
        unit = self.spatial_at(i, j) if self.spatial_at is not None else None
        spatial = {} if unit is None else {'spatial': unit}
        x = self.block_cls(self.width * 2**i, conv=conv, norm=norm, strides=strides,
                           name=f'layer{i + 1}_{j}', **spatial)(x)
      if self.after_stage is not None:
        x = self.after_stage(x, i)
      outputs[f'C{i + 2}'] = x  # (N, H/2^(i+2), W/2^(i+2), C_i)
    return outputs


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
  check_choice('backbone', backbone, sorted(BACKBONES))
  return BACKBONES[backbone](**kwargs)


def stage_sizes(backbone: str) -> Tuple[int, ...]:
  """Blocks per stage of a registered backbone, e.g. (3, 4, 6, 3)."""
  check_choice('backbone', backbone, sorted(BACKBONES))
  return tuple(BACKBONES[backbone].keywords['stage_sizes'])
