"""Residual Attention Layer (RAL) of the M3D network (Li et al., AAAI 2019, eq. 7-12).

Given clip features x (B, T, H, W, C) (or folded (B*T, H, W, C) with
``time_steps``), three branches give low-dimensional logits

  spatial  S_m (B, 1, H, W, 1): temporal mean, conv_1^s (3x3, C -> 1), ReLU, BN,
           conv_2^s (1x1, 1 -> 1)                                         (eq. 9-10)
  channel  C_m (B, 1, 1, 1, C): mean over T, H, W, conv_1^c (C -> C/r), ReLU, BN,
           conv_2^c (C/r -> C), r = 16 (SE bottleneck)                     (eq. 11-12)
           (at least ``MIN_CHANNEL_HIDDEN`` hidden units: narrow test and
           benchmark backbones; the paper's ResNet-50 has C/r >= 16)
  temporal T_m (B, T, 1, 1, 1): mean over C, H, W, T -> 2T, ReLU, BN, 2T -> T
           (the channel branch's shape over time)

and M = sigmoid(S_m * C_m * T_m) (eq. 8), y = x/2 + M x (eq. 7). M = 1/2 and
y = x at initialization as soon as one factor is 0. The paper zero-initializes
"all convolution layers" (the official code: every branch's second one), but
with two or more branches that is a saddle the layer never leaves: the
gradient of each factor is the product of the others, all 0, so every RAL
parameter gets a zero gradient at every step (``tests/test_m3d.py`` checks
it). So by default (``zero_init='one'``) only one branch's second convolution
is zero (the channel branch, else the first present) and the others keep a
random init; the zero one then has a non-zero gradient and the rest follow
after the first update. ``zero_init='all'`` is the literal version. Layer
order conv -> ReLU -> BN and the absence
of biases follow the official code (``Attention`` in
ResNet50-M3D/model/M3D_attention.py of ljn114514/M3D); its channel
branch also ends with a ReLU (``channel_relu``), not in the paper.

``branches`` selects a subset ('s', 'c', 't'; Table 2's RAL(s), RAL(c),
RAL(t)); an absent branch contributes a factor of 1 to the product. The
temporal branch has T-sized weights, so a model with it must see clips of the
training length at eval time (the paper's test protocol does: floor(L/T) clips
of T frames).
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.layers import folding
from jaxreid.layers.choices import check_choice

# Fewest hidden units of the channel branch. C / r alone gives a 16-channel
# stage one unit; its ReLU is 0 on the whole batch for about half the random
# inits (its inputs are means of post-ReLU features, all alike), and then the
# branch, and with it the whole RAL, never gets a gradient.
MIN_CHANNEL_HIDDEN = 8


class RAL(nn.Module):
  """Residual spatial x channel x temporal attention; identity at init.

  Attributes:
    branches: which of 's' (spatial), 'c' (channel), 't' (temporal) to use.
    reduction: r of the channel bottleneck.
    time_steps: T when the input is folded (B*T, H, W, C); None for (B, T, H, W, C).
    channel_relu: the official code's ReLU after conv_2^c.
    zero_init: 'one' (one branch's second convolution is zero, the others
      random: identity at init and trainable) or 'all' (every branch's, the
      paper and official code: identity, but frozen with 2+ branches).
    train: BatchNorm in training mode.
  """
  branches: str = 'sct'
  reduction: int = 16
  time_steps: Optional[int] = None
  channel_relu: bool = False
  zero_init: str = 'one'
  train: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    unknown = set(self.branches) - set('sct')
    if unknown or not self.branches:
      raise ValueError(f"RAL branches {self.branches!r}: use a non-empty subset of 's' "
                       f"(spatial), 'c' (channel), 't' (temporal).")
    check_choice('RAL zero_init', self.zero_init, ('one', 'all'))
    zeroed = next(b for b in 'cst' if b in self.branches)
    is_zero = lambda branch: self.zero_init == 'all' or branch == zeroed
    folded = self.time_steps is not None
    if folded:
      x = folding.unfold_time(x, self.time_steps)
    b, t, h, w, c = x.shape
    norm = lambda name: nn.BatchNorm(use_running_average=not self.train, momentum=0.9,
                                     epsilon=1e-5, dtype=self.dtype, name=name)
    dense = lambda features, name, zero=False: nn.Dense(
        features, use_bias=False, dtype=self.dtype, name=name,
        kernel_init=nn.initializers.zeros if zero else nn.initializers.he_normal())
    xf = x.astype(jnp.float32)
    logits = jnp.ones((b, 1, 1, 1, 1), jnp.float32)
    if 's' in self.branches:
      xs = jnp.mean(xf, axis=1).astype(self.dtype)  # (B, H, W, C), eq. 9
      s = nn.Conv(1, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype,
                  kernel_init=nn.initializers.he_normal(), name='spatial_conv1')(xs)
      s = norm('spatial_bn')(nn.relu(s))
      s = nn.Conv(1, (1, 1), use_bias=False, dtype=self.dtype, name='spatial_conv2',
                  kernel_init=(nn.initializers.zeros if is_zero('s')
                               else nn.initializers.he_normal()))(s)
      logits = logits * s.astype(jnp.float32)[:, None]  # (B, 1, H, W, 1)
    if 'c' in self.branches:
      xc = jnp.mean(xf, axis=(1, 2, 3)).astype(self.dtype)  # (B, C), eq. 11
      hidden = max(c // self.reduction, min(c, MIN_CHANNEL_HIDDEN))
      m = norm('channel_bn')(nn.relu(dense(hidden, 'channel_conv1')(xc)))
      m = dense(c, 'channel_conv2', zero=is_zero('c'))(m)
      if self.channel_relu:
        m = nn.relu(m)
      logits = logits * m.astype(jnp.float32)[:, None, None, None, :]  # (B, 1, 1, 1, C)
    if 't' in self.branches:
      xt = jnp.mean(xf, axis=(2, 3, 4)).astype(self.dtype)  # (B, T)
      m = norm('temporal_bn')(nn.relu(dense(2 * t, 'temporal_conv1')(xt)))
      m = dense(t, 'temporal_conv2', zero=is_zero('t'))(m)
      logits = logits * m.astype(jnp.float32)[:, :, None, None, None]  # (B, T, 1, 1, 1)
    mask = nn.sigmoid(logits)  # eq. 8
    y = (0.5 * xf + mask * xf).astype(x.dtype)  # eq. 7
    return folding.fold_time(y) if folded else y
