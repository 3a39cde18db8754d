"""Spatial-Temporal clues Integration Module (STIM; Liu et al., AAAI 2019, eq. 6).

Two 3D convolution blocks on the refined maps S (B, T, H, W, C): a 1x1x1
convolution to 256 channels + 3D BN + ReLU (reduces the dimension), then a
3x3x3 convolution (padding 1 in T, H and W) + 3D BN + ReLU, giving O (B, T, H,
W, 256); the video feature f is O averaged over T, H and W (eq. 6). With a
``frame_mask`` (B, T) (whole padded tracklets, ``jaxreid.models.common``), O
is zeroed at padded steps before the 3x3x3 convolution, which then sees each
tracklet's end as its zero padding, and the mean is over valid steps.

The convolutions have no bias (a BN follows; the official code's
``bias=False``); the BNs are PyTorch's BatchNorm3d defaults (eps 1e-5,
momentum 0.1), statistics over (B, T, H, W): time folded into the batch, so
shared across time as the model contract asks (docs/design.md, "Model contract").
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxreid.layers import time_mask


class STIM(nn.Module):
  """S (B, T, H, W, C) -> f (B, features).

  Attributes:
    features: channels of both 3D convolutions (256).
    dtype: computation dtype; the pooled feature is float32.
  """
  features: int = 256
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, s, train: bool = False, frame_mask=None):  # (B, T, H, W, C)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    o = nn.Conv(self.features, (1, 1, 1), use_bias=False, dtype=self.dtype,
                name='conv1')(s.astype(self.dtype))  # (B, T, H, W, 256)
    o = time_mask.zero_padding_steps(nn.relu(norm(name='bn1')(o)), frame_mask)
    o = nn.Conv(self.features, (3, 3, 3), padding=((1, 1), (1, 1), (1, 1)), use_bias=False,
                dtype=self.dtype, name='conv2')(o)  # (B, T, H, W, 256)
    o = nn.relu(norm(name='bn2')(o)).astype(jnp.float32)  # O
    if frame_mask is None:
      return jnp.mean(o, axis=(1, 2, 3))  # eq. 6: (B, 256)
    return time_mask.masked_time_mean(jnp.mean(o, axis=(2, 3)), frame_mask)
