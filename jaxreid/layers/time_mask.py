"""Whole tracklets padded to a common length: a (B, T) bool ``frame_mask``
marks each row's real steps (the first ones; padding follows), and the
temporal layers of a sequence model use these two to treat each row as a clip
of its own length (``jaxreid.models.common``, "Whole-sequence evaluation").
Without a mask both are the plain operation.
"""

import jax.numpy as jnp


def masked_time_mean(x, frame_mask=None):
  """Mean over time (axis 1) of (B, T, ...) `x`; with `frame_mask` (B, T)
  bool, over each row's valid steps only (``jnp.mean`` without one)."""
  if frame_mask is None:
    return jnp.mean(x, axis=1)
  weights = frame_mask.astype(x.dtype).reshape(frame_mask.shape + (1,) * (x.ndim - 2))
  count = jnp.maximum(jnp.sum(weights, axis=1), 1.0)  # an all-padding row gives 0, not NaN
  return jnp.sum(x * weights, axis=1) / count


def zero_padding_steps(x, frame_mask=None):
  """(B, T, ...) `x` with its padded steps zeroed, so that a temporal
  convolution with zero padding sees each tracklet end where it really ends."""
  if frame_mask is None:
    return x
  return jnp.where(frame_mask.reshape(frame_mask.shape + (1,) * (x.ndim - 2)), x,
                   jnp.zeros((), x.dtype))
