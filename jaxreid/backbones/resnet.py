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
"""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax.numpy as jnp

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
  expansion = 1

  @nn.compact
  def __call__(self, x):  # (N, H, W, C_in)
    residual = x
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
  expansion = 4

  @nn.compact
  def __call__(self, x):  # (N, H, W, C_in)
    residual = x
    y = self.conv(self.filters, (1, 1), padding='VALID', name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
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
  """
  stage_sizes: Sequence[int]
  block_cls: Any
  width: int = 64
  last_stride: int = 2
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):  # (N, H, W, 3) normalized float
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
        x = self.block_cls(self.width * 2**i, conv=conv, norm=norm,
                           strides=strides, name=f'layer{i + 1}_{j}')(x)
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
  if backbone not in BACKBONES:
    raise ValueError(
        f'Unknown backbone {backbone!r}; valid choices: {", ".join(sorted(BACKBONES))}.')
  return BACKBONES[backbone](**kwargs)

