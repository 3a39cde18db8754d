"""Temporal convolutions for video ResNets: the M3D layer (Li et al., AAAI 2019),
and the I3D and P3D-A/B/C blocks it is compared with (paper Table 1).

Every block here replaces the 3x3 spatial convolution of a ResNet bottleneck
(``conv2`` with its ``bn2`` and ReLU; a basic block's first, ``conv1``/``bn1``):
``spatiotemporal_conv`` is what ``jaxreid/models/m3d.py`` injects as a block's
``spatial`` unit (``jaxreid/backbones/resnet.py``). It works on *folded*
feature maps, (B*T, H, W, C) with time inner (``jaxreid/layers/folding.py``),
the layout the per-frame 2D backbone uses; ``time_steps`` (T) says how to
unfold them. T is never downsampled (the official code halves T with each
spatial stride; here a stage's clip keeps all its frames, so every block sees
the same T).

The spatial convolution keeps the 2D network's names (``conv2``, ``bn2``), so
ImageNet / 2D weights load unchanged; the temporal parts are new variables
(``temporal_conv*``, ``temporal_bn*``):

  block   output (s = the spatial conv, T = a (3, 1, 1) temporal conv)      at init
  ------  ----------------------------------------------------------------  -----------
  m3d     S = relu(bn2(conv2 x));  y = S + sum_{i=1..n} T_i(S), T_i dilated i   = 2D (T_i = 0)
  i3d     y = relu(bn2(conv2_3x3x3 x)), kernel centred on the 2D one            = 2D

P3D-A/B/C (Qiu, Yao, Mei, ICCV 2017) exist in two constructions, chosen by
``p3d_norm`` (tb = ``temporal_bn``, T_s = T on the spatially strided input):

  p3d_norm='per_path' (default): the M3D authors' own baselines (ljn114514/M3D,
  ResNet50-P3D/model/P3D_{A,B,C}.py), which produced the M3D paper's Table 1;
  every path gets its own BN + ReLU
  p3d_a   S = relu(bn2(conv2 x));  y = relu(tb(T(S))), T = identity at init   != 2D (BN)
  p3d_b   y = relu(bn2(conv2 x)) + relu(tb(T_s(x))), T He-initialised       != 2D
  p3d_c   S = relu(bn2(conv2 x));  y = S + relu(tb(T(S))), T He-initialised  != 2D
  (B and C's T gets their code's He init: started at 0, as AP3D starts it,
  relu(tb(0)) = 0 passes no gradient and T stays 0 for ever. Their P3D-A
  fills T with 1/3 and then their init loop overwrites it with He too; here
  P3D-A's T starts as the identity, which keeps S's features and trains.)

  p3d_norm='after_block': AP3D's blocks (guxinqian/AP3D, models/AP3D.py P3DA/B/C,
  models/ResNet.py Bottleneck3D): they replace only the convolution, and the
  bottleneck's bn2 + ReLU follow the whole spatial + temporal block
  p3d_a   y = relu(bn2(T(conv2 x))), T = identity at init                   = 2D
  p3d_b   y = relu(bn2(conv2 x + T_s(x)))                                   = 2D (T = 0)
  p3d_c   S = conv2 x;  y = relu(bn2(S + T(S)))                             = 2D (T = 0)

A temporal convolution (paper eq. 5) is y_t = sum_{a=-1..1} x_{t+a*i} W_a with
zero padding at the clip's borders (x_t = 0 for t outside [0, T)), i.e. torch's
``Conv3d(C, C, (3, 1, 1), dilation=(i, 1, 1), padding=(i, 0, 0))``. It is
computed as three time-shifted 1x1 matmuls (the same function); its kernel is
stored as (3, 1, 1, C, C), torch's Conv3d weight in Flax's DHWIO layout.
"""

from typing import Any, Callable, Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.layers import folding
from jaxreid.layers.choices import check_choice

TEMPORAL_BLOCKS = ('2d', 'm3d', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c')
# Where the P3D blocks put BN + ReLU (see the module docstring).
P3D_NORMS = ('per_path', 'after_block')

ModuleDef = Callable[..., nn.Module]

# The init loop of the M3D authors' P3D models (and torchvision's ResNet):
# N(0, sqrt(2 / n)), n = kernel volume x output channels.
HE_FAN_OUT = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


def default_num_kernels(clip_len: int) -> int:
  """Paper eq. 6: n = floor((T - 1) / 2), so the receptive field 2n + 1 <= T."""
  return max(0, (int(clip_len) - 1) // 2)


def center_init(base_init=nn.initializers.lecun_normal()):
  """A 3D kernel (kt, kh, kw, in, out) holding a 2D kernel drawn by `base_init`
  at its middle time tap and zeros elsewhere (I3D's centre initialization: the
  block starts as its 2D counterpart, frame by frame)."""
  def init(key, shape, dtype=jnp.float32):
    kernel = base_init(key, shape[1:], dtype)
    return jnp.zeros(shape, dtype).at[shape[0] // 2].set(kernel)
  return init


def identity_center_init(key, shape, dtype=jnp.float32):
  """(3, 1, 1, C, C) with the identity at the middle tap (AP3D's P3D-A)."""
  del key
  eye = jnp.eye(shape[-2], shape[-1], dtype=dtype)
  return jnp.zeros(shape, dtype).at[shape[0] // 2, 0, 0].set(eye)


def shift_time(x, offset: int):
  """z[:, t] = x[:, t + offset], zero where t + offset is outside [0, T); x (B, T, ...)."""
  t = x.shape[1]
  if offset == 0:
    return x
  if abs(offset) >= t:
    return jnp.zeros_like(x)
  pad = [(0, 0)] * x.ndim
  if offset > 0:
    pad[1] = (0, offset)
    return jnp.pad(x[:, offset:], pad)
  pad[1] = (-offset, 0)
  return jnp.pad(x[:, :t + offset], pad)


class TemporalConv(nn.Module):
  """A (3, 1, 1) convolution over time with dilation `dilation` (paper eq. 5).

  Input (B*T, H, W, C_in) folded with `time_steps` = T, or (B, T, H, W, C_in);
  output of the same layout with `features` channels. `strides` subsamples
  space first (a 1x1 spatial kernel with stride s, as P3D-B's temporal path).
  No bias (the official code's Conv3d has none).
  """
  features: int
  dilation: int = 1
  time_steps: Optional[int] = None  # None: the input is (B, T, H, W, C)
  strides: int = 1
  kernel_init: Callable = nn.initializers.zeros
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    folded = self.time_steps is not None
    if folded:
      x = folding.unfold_time(x, self.time_steps)  # (B, T, H, W, C)
    if self.strides > 1:
      x = x[:, :, ::self.strides, ::self.strides]
    kernel = self.param('kernel', self.kernel_init,
                        (3, 1, 1, x.shape[-1], self.features), jnp.float32)
    kernel = kernel.astype(self.dtype)
    x = x.astype(self.dtype)
    y = 0
    for a in (-1, 0, 1):  # y_t = sum_a x_{t + a*i} W_a
      y = y + jnp.einsum('bthwc,cd->bthwd', shift_time(x, a * self.dilation),
                         kernel[a + 1, 0, 0])
    return folding.fold_time(y) if folded else y


def spatiotemporal_conv(x, *, kind: str, features: int, strides: int, conv: ModuleDef,
                        norm: ModuleDef, conv_name: str, norm_name: str, time_steps: int,
                        num_kernels: int = 0, branch_norm: bool = False,
                        p3d_norm: str = 'per_path', dtype: Any = jnp.float32):
  """A block's 3x3 convolution (+ BN + ReLU) as block `kind`.

  With `kind` and the keywords after `norm_name` bound (``functools.partial``),
  it is a ResNet block's ``spatial`` unit (``jaxreid/backbones/resnet.py``),
  which the block calls inside its ``nn.compact`` method: the modules made
  here (``conv2``, ``bn2``, ``temporal_conv*``, ``temporal_bn*``) belong to the
  block, so the spatial ones keep the 2D network's names and its weights load
  unchanged.

  Args:
    x: (B*T, H, W, C_in) folded frames.
    kind: one of ``TEMPORAL_BLOCKS``.
    features: output channels of the spatial convolution.
    strides: spatial stride of the 3x3 convolution.
    conv, norm: the backbone's conv and BatchNorm constructors.
    conv_name, norm_name: names of the spatial conv and its BatchNorm (a
      bottleneck's ``conv2`` / ``bn2``; a basic block's ``conv1`` / ``bn1``).
    time_steps: T of the folded input.
    num_kernels: n of the M3D layer (dilations 1..n), fixed by the training T
      (``jaxreid/models/m3d.py`` resolves it), so parameters do not depend on
      the T seen at eval time.
    branch_norm: the official code's M3D branch, T_i -> BN -> ReLU (default:
      the paper's eq. 4-5, plain T_i).
    p3d_norm: where the P3D blocks put BN + ReLU: 'per_path' (the M3D authors'
      baselines: after the spatial conv and, with ``temporal_bn``, after the
      temporal one) or 'after_block' (AP3D: ``bn2`` + ReLU after the sum / the
      serial pair only).
  Returns:
    (B*T, H/strides, W/strides, features).
  """
  check_choice('temporal block', kind, TEMPORAL_BLOCKS)
  check_choice('p3d_norm', p3d_norm, P3D_NORMS)

  def spatial(inputs):
    return conv(features, (3, 3), (strides,) * 2, padding=((1, 1), (1, 1)), name=conv_name)(inputs)

  def temporal(name, dilation=1, stride=1, init=nn.initializers.zeros):
    return TemporalConv(features, dilation=dilation, time_steps=time_steps, strides=stride,
                        kernel_init=init, dtype=dtype, name=name)

  def bn_relu(inputs, name):
    return nn.relu(norm(name=name)(inputs))

  if kind == 'i3d':
    y = conv(features, (3, 3, 3), (1, strides, strides), padding=((1, 1), (1, 1), (1, 1)),
             kernel_init=center_init(), name=conv_name)(folding.unfold_time(x, time_steps))
    return bn_relu(folding.fold_time(y), norm_name)
  if kind.startswith('p3d') and p3d_norm == 'after_block':
    # AP3D: the block replaces conv2 only; bn2 + ReLU follow it whole.
    s = spatial(x)  # (B*T, H/s, W/s, features), no BN yet
    if kind == 'p3d_a':  # serial: T(S(x))
      y = temporal('temporal_conv', init=identity_center_init)(s)
    elif kind == 'p3d_b':  # parallel: S(x) + T(x), T strided in space like S
      y = s + temporal('temporal_conv', stride=strides)(x)
    else:  # p3d_c, residual: S(x) + T(S(x))
      y = s + temporal('temporal_conv')(s)
    return bn_relu(y, norm_name)
  s = bn_relu(spatial(x), norm_name)  # (B*T, H/s, W/s, features)
  if kind == '2d':
    return s
  # P3D, per path (the M3D authors' P3D_A/B/C.py): BN + ReLU on the temporal
  # path too. B and C's T takes their code's He init: a zero T would make the
  # path relu(temporal_bn(0)) = 0, whose gradient is 0 for ever (relu'(0) = 0,
  # and BN of a constant is constant), so T could never leave 0.
  if kind == 'p3d_b':  # parallel: the temporal path sees the block's input
    return s + bn_relu(temporal('temporal_conv', stride=strides, init=HE_FAN_OUT)(x),
                       'temporal_bn')
  if kind == 'p3d_a':  # serial
    return bn_relu(temporal('temporal_conv', init=identity_center_init)(s), 'temporal_bn')
  if kind == 'p3d_c':  # residual
    return s + bn_relu(temporal('temporal_conv', init=HE_FAN_OUT)(s), 'temporal_bn')
  y = s
  for i in range(1, num_kernels + 1):  # m3d, eq. 4
    t = temporal(f'temporal_conv{i}', dilation=i)(s)
    if branch_norm:
      t = nn.relu(norm(name=f'temporal_bn{i}')(t))
    y = y + t
  return y
