"""Inception-v3 in Flax linen, laid out like torchvision's ``inception.py``.

The backbone maps frames (N, H, W, 3), ImageNet-normalized as
``models.common.normalize_frames`` does, to a dict of block outputs:

  ``Mixed_5d`` (N, 35, 35, 288), ``Mixed_6e`` (N, 17, 17, 768) and
  ``Mixed_7c`` (N, 8, 8, 2048) at 299 x 299 (the RRU feature map), and
  ``aux_logits`` (N, aux_classes) in train mode when the auxiliary classifier
  is built (``aux_classes > 0``).

The final average pool, dropout and ``fc`` are left to the models (they add
their own heads); the auxiliary classifier keeps its ``fc`` because torchvision
builds it that way and the RRU code keeps it (with a new class count).

Layout choices, as in ``resnet.py``, so torchvision weights give the same function:
  * Module names follow torchvision (``Conv2d_1a_3x3`` ... ``Mixed_7c``,
    ``AuxLogits``, branches ``branch1x1``, ``branch5x5_1`` ...; every
    ``BasicConv2d`` holds ``conv`` and ``bn``), so a torchvision tensor name
    maps to a parameter path by replacing dots with slashes.
  * ``BasicConv2d`` is a convolution without bias, BatchNorm with eps 1e-3
    (momentum 0.1 in torch terms) and ReLU.
  * Paddings are torchvision's, explicit and symmetric; max-pools are 3 x 3,
    stride 2, unpadded; the 3 x 3 average pools of the A, C and E blocks count
    the zero padding (``F.avg_pool2d``'s default ``count_include_pad=True``).
  * ``transform_input=True`` re-normalizes ImageNet-normalized inputs to the
    (x - 0.5) / 0.5 scale that Google's ported weights (torchvision's
    ``Inception_V3_Weights.IMAGENET1K_V1``) expect, exactly as torchvision's
    ``transform_input`` does.

Any input of at least 75 x 75 pixels works (Mixed_7c is then 1 x 1); the
auxiliary classifier needs Mixed_6e maps of at least 17 x 17, i.e. inputs of
at least 299 x 299 pixels, as in torchvision.
"""

import functools
from typing import Any, Callable, Optional, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

MIN_INPUT_SIZE = 75
# The auxiliary head pools 5 x 5 / 3 and then applies a 5 x 5 unpadded conv.
MIN_AUX_MAP_SIZE = 17
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Padding = Tuple[Tuple[int, int], Tuple[int, int]]


def _pad(ph: int, pw: int) -> Padding:
  """torch's ``padding=(ph, pw)``: symmetric, per spatial axis."""
  return ((ph, ph), (pw, pw))


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: conv (no bias) + BatchNorm(eps=1e-3) + ReLU."""
  features: int
  kernel_size: Tuple[int, int]
  strides: Tuple[int, int] = (1, 1)
  padding: Padding = ((0, 0), (0, 0))
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):  # (N, H, W, C_in)
    x = nn.Conv(self.features, self.kernel_size, self.strides, padding=self.padding,
                use_bias=False, dtype=self.dtype, name='conv')(x)
    # torch.nn.BatchNorm2d(eps=0.001), momentum 0.1 (= Flax 0.9).
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-3,
                     dtype=self.dtype, name='bn')(x)
    return nn.relu(x)  # (N, H', W', features)


def _avg_pool_3x3(x):
  # F.avg_pool2d(x, 3, stride=1, padding=1): zeros count in the mean.
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=True)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


def _basic_conv(features: int, kernel, strides: int = 1, padding=None, *, dtype: Any,
                name: str) -> BasicConv2d:
  """A ``BasicConv2d`` from a short spec: `kernel` an int (k x k) or (kh, kw);
  `padding` None keeps the map size at stride 1 ((kh // 2, kw // 2)) and pads
  nothing when strided, as every torchvision Inception block does."""
  kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
  if padding is None:
    padding = (kh // 2, kw // 2) if strides == 1 else 0
  ph, pw = (padding, padding) if isinstance(padding, int) else padding
  return BasicConv2d(features, (kh, kw), (strides, strides), padding=_pad(ph, pw), dtype=dtype,
                     name=name)


def _chain(x, name: str, *convs, train: bool, dtype: Any):
  """``BasicConv2d`` layers in sequence, made in the calling module: each of
  `convs` is a ``_basic_conv`` spec (features, kernel[, strides[, padding]]).
  They are named `name` (one) or `name`_1, `name`_2, ... (torchvision's)."""
  for i, spec in enumerate(convs):
    layer = name if len(convs) == 1 else f'{name}_{i + 1}'
    x = _basic_conv(*spec, dtype=dtype, name=layer)(x, train)
  return x


class _Block(nn.Module):
  """An Inception block: its ``branches`` side by side on the channel axis."""

  @nn.compact
  def __call__(self, x, train: bool = False):
    chain = functools.partial(_chain, train=train, dtype=self.dtype)
    return jnp.concatenate(self.branches(x, chain), axis=-1)


class InceptionA(_Block):
  """35 x 35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 (224 + pool_features)."""
  pool_features: int
  dtype: Any = jnp.float32

  def branches(self, x, chain):
    return [chain(x, 'branch1x1', (64, 1)),
            chain(x, 'branch5x5', (48, 1), (64, 5)),
            chain(x, 'branch3x3dbl', (64, 1), (96, 3), (96, 3)),
            chain(_avg_pool_3x3(x), 'branch_pool', (self.pool_features, 1))]


class InceptionB(_Block):
  """35 -> 17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 (480 + C_in channels)."""
  dtype: Any = jnp.float32

  def branches(self, x, chain):
    return [chain(x, 'branch3x3', (384, 3, 2)),
            chain(x, 'branch3x3dbl', (64, 1), (96, 3), (96, 3, 2)), _max_pool_3x3_s2(x)]


class InceptionC(_Block):
  """17 x 17 block with factorized 7x7 convolutions, 1x7 and 7x1 (768 channels)."""
  channels_7x7: int
  dtype: Any = jnp.float32

  def branches(self, x, chain):
    c7 = self.channels_7x7
    return [chain(x, 'branch1x1', (192, 1)),
            chain(x, 'branch7x7', (c7, 1), (c7, (1, 7)), (192, (7, 1))),
            chain(x, 'branch7x7dbl', (c7, 1), (c7, (7, 1)), (c7, (1, 7)), (c7, (7, 1)),
                  (192, (1, 7))),
            chain(_avg_pool_3x3(x), 'branch_pool', (192, 1))]


class InceptionD(_Block):
  """17 -> 8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 (512 + C_in channels)."""
  dtype: Any = jnp.float32

  def branches(self, x, chain):
    return [chain(x, 'branch3x3', (192, 1), (320, 3, 2)),
            chain(x, 'branch7x7x3', (192, 1), (192, (1, 7)), (192, (7, 1)), (192, 3, 2)),
            _max_pool_3x3_s2(x)]


class InceptionE(_Block):
  """8 x 8 block with expanded 1x3 / 3x1 branches (2048 channels)."""
  dtype: Any = jnp.float32

  def branches(self, x, chain):
    expanded = lambda y, name: jnp.concatenate(  # 1x3 | 3x1 side by side
        [chain(y, f'{name}a', (384, (1, 3))), chain(y, f'{name}b', (384, (3, 1)))], axis=-1)
    return [chain(x, 'branch1x1', (320, 1)),
            expanded(chain(x, 'branch3x3_1', (384, 1)), 'branch3x3_2'),
            expanded(chain(x, 'branch3x3dbl', (448, 1), (384, 3)), 'branch3x3dbl_3'),
            chain(_avg_pool_3x3(x), 'branch_pool', (192, 1))]


class InceptionAux(nn.Module):
  """torchvision's InceptionAux: avgpool 5/3, 1x1 conv 128, 5x5 conv 768, GAP, fc."""
  num_classes: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False):  # (N, h, w, 768), h, w >= 17
    if min(x.shape[1:3]) < MIN_AUX_MAP_SIZE:
      raise ValueError(
          f'The Inception-v3 auxiliary classifier needs Mixed_6e maps of at least '
          f'{MIN_AUX_MAP_SIZE} x {MIN_AUX_MAP_SIZE} (inputs of at least 299 x 299 pixels), '
          f'got {x.shape[1]} x {x.shape[2]}; feed larger frames or build the backbone '
          f'with aux_classes=0.')
    x = nn.avg_pool(x, (5, 5), strides=(3, 3), padding='VALID')  # (N, 5, 5, 768) at 17 x 17
    x = _chain(x, 'conv0', (128, 1), train=train, dtype=self.dtype)
    x = _chain(x, 'conv1', (768, 5, 1, 0), train=train, dtype=self.dtype)  # (N, 1, 1, 768)
    x = jnp.mean(x, axis=(1, 2))  # adaptive_avg_pool2d((1, 1))
    # torchvision initializes this fc with std 0.001 (truncated normal).
    return nn.Dense(self.num_classes, dtype=self.dtype,
                    kernel_init=nn.initializers.truncated_normal(0.001), name='fc')(x)


class InceptionV3(nn.Module):
  """Inception-v3 trunk (torchvision's ``Inception3`` without avgpool/dropout/fc).

  Attributes:
    aux_classes: width of the auxiliary classifier's fc; 0 builds no auxiliary
      classifier (torchvision's ``aux_logits=False``). When > 0, its parameters
      are created at init whatever the mode, and ``aux_logits`` is computed
      and returned in train mode only.
    transform_input: re-normalize ImageNet-normalized inputs to the
      (x - 0.5) / 0.5 scale (torchvision's ``transform_input``; True for
      Google's ImageNet weights).
    dtype: computation dtype (parameters stay float32).
  """
  aux_classes: int = 0
  transform_input: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool = False,
               aux_transform: Optional[Callable[[Any], Any]] = None):
    """Runs the trunk on `x` (N, H, W, 3), ImageNet-normalized floats.

    Args:
      x: frames, H and W at least 75.
      train: BatchNorm uses batch statistics (and updates ``batch_stats``);
        the auxiliary classifier runs.
      aux_transform: applied to Mixed_6e before the auxiliary classifier (the
        RRU code averages it over each clip's frames first); None: per frame.

    Returns:
      {'Mixed_5d', 'Mixed_6e', 'Mixed_7c'} and, in train mode with an
      auxiliary classifier, 'aux_logits'.
    """
    if min(x.shape[1:3]) < MIN_INPUT_SIZE:
      raise ValueError(f'Inception-v3 needs inputs of at least {MIN_INPUT_SIZE} x '
                       f'{MIN_INPUT_SIZE} pixels, got {x.shape[1]} x {x.shape[2]}.')
    if self.transform_input:
      mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
      x = x * (std / 0.5) + (mean - 0.5) / 0.5
    x = x.astype(self.dtype)
    chain = functools.partial(_chain, train=train, dtype=self.dtype)
    x = chain(x, 'Conv2d_1a_3x3', (32, 3, 2))  # 149 x 149 at 299
    x = chain(x, 'Conv2d_2a_3x3', (32, 3, 1, 0))  # 147, unpadded
    x = chain(x, 'Conv2d_2b_3x3', (64, 3))  # 147
    x = _max_pool_3x3_s2(x)  # 73
    x = chain(x, 'Conv2d_3b_1x1', (80, 1))  # 73
    x = chain(x, 'Conv2d_4a_3x3', (192, 3, 1, 0))  # 71, unpadded
    x = _max_pool_3x3_s2(x)  # 35
    x = InceptionA(32, dtype=self.dtype, name='Mixed_5b')(x, train)  # 256 channels
    x = InceptionA(64, dtype=self.dtype, name='Mixed_5c')(x, train)  # 288
    x = InceptionA(64, dtype=self.dtype, name='Mixed_5d')(x, train)  # 288
    outputs = {'Mixed_5d': x}
    x = InceptionB(dtype=self.dtype, name='Mixed_6a')(x, train)  # 17 x 17 x 768
    for name, c7 in (('Mixed_6b', 128), ('Mixed_6c', 160), ('Mixed_6d', 160), ('Mixed_6e', 192)):
      x = InceptionC(c7, dtype=self.dtype, name=name)(x, train)
    outputs['Mixed_6e'] = x
    # The auxiliary head's parameters must exist however the model is
    # initialized (an eval-mode init would otherwise leave the training step
    # without them), so it also runs while initializing.
    if self.aux_classes and (train or self.is_initializing()):
      aux_in = aux_transform(x) if aux_transform is not None else x
      aux = InceptionAux(self.aux_classes, dtype=self.dtype, name='AuxLogits')(aux_in, train)
      if train:
        outputs['aux_logits'] = aux  # (N', aux_classes)
    x = InceptionD(dtype=self.dtype, name='Mixed_7a')(x, train)  # 8 x 8 x 1280
    x = InceptionE(dtype=self.dtype, name='Mixed_7b')(x, train)  # 2048
    x = InceptionE(dtype=self.dtype, name='Mixed_7c')(x, train)  # 2048
    outputs['Mixed_7c'] = x
    return outputs


def feature_sizes(size: int) -> Sequence[int]:
  """Spatial sizes of (Mixed_5d, Mixed_6e, Mixed_7c) for an input side `size`."""
  down = lambda n: (n - 3) // 2 + 1  # 3 x 3, stride 2, unpadded
  s5 = down(down(down(size) - 2) - 2)
  s6 = down(s5)
  return s5, s6, down(s6)
