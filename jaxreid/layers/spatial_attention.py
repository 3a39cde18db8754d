"""Parameter-free spatial attention (TRSA, Wang & Zhao, eq. 1-3).

For a frame's feature map f (H, W, C):

  R(i, j)     = sum_k f_k(i, j)                          (eq. 1, channel sum)
  alpha(i, j) = exp R(i, j) / sum_{i,j} exp R(i, j)     (eq. 2, softmax over H x W)
  v(i, j)     = alpha(i, j) f(i, j)                      (eq. 3)

There are no parameters. The only public code near it (Spatial-Re-Scaling,
arXiv:1811.12150) normalises the channel *mean* by its spatial sum, with no
exponential (``SpatialAttn`` in reid/models/reSAnet.py of
HRanWang/Spatial-Re-Scaling); this module implements the
TRSA text. ``reduce='mean'`` (softmax of the channel mean, i.e. a temperature
of C) is offered because the channel sum of a 2048-channel ReLU map makes the
softmax nearly one-hot; the paper's choice, and the default, is 'sum'.
"""

import jax
import jax.numpy as jnp

from jaxreid.layers.choices import check_choice

REDUCTIONS = ('sum', 'mean')


def spatial_attention_map(features, reduce: str = 'sum'):
  """(N, H, W, C) feature maps -> (N, H, W) attention, each map summing to 1.

  Computed in float32 whatever the features' dtype (a softmax over values in
  the hundreds or thousands is not something to do in bfloat16).
  """
  check_choice('spatial attention reduce', reduce, REDUCTIONS)
  f = features.astype(jnp.float32)
  scores = jnp.sum(f, axis=-1) if reduce == 'sum' else jnp.mean(f, axis=-1)  # (N, H, W), eq. 1
  n, h, w = scores.shape
  alpha = jax.nn.softmax(scores.reshape(n, h * w), axis=-1)  # eq. 2, over positions
  return alpha.reshape(n, h, w)


def parameter_free_spatial_attention(features, reduce: str = 'sum'):
  """Applies eq. 1-3 to every map of a batch.

  Args:
    features: (N, H, W, C) frame feature maps (time folded into N).
    reduce: 'sum' (eq. 1) or 'mean' over channels before the softmax.
  Returns:
    (weighted, alpha): the re-weighted maps v = alpha * f, (N, H, W, C) in the
    features' dtype, and the attention alpha, (N, H, W) float32.
  """
  alpha = spatial_attention_map(features, reduce)
  weighted = features * alpha[..., None].astype(features.dtype)  # eq. 3
  return weighted, alpha
