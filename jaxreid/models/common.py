"""Pieces every video re-ID model shares: input normalization, time folding."""

import jax.numpy as jnp
import numpy as np

# ImageNet statistics on the 0..255 scale (torchvision's), so imported
# ImageNet weights see the inputs they were trained on. NumPy float32, not
# jnp: a jnp array here would start the XLA backend at import, before
# jax.distributed.initialize() can run (--multihost).
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * np.float32(255.0)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * np.float32(255.0)


def normalize_frames(frames, dtype=jnp.float32):
  """uint8 RGB frames (..., 3) -> ImageNet-normalized floats of `dtype`.

  Frames stay uint8 until they reach the device (docs/design.md, "Data contract"): a
  quarter of the host-to-device traffic, and an exported model takes raw frames.
  """
  x = (frames.astype(jnp.float32) - IMAGENET_MEAN) / IMAGENET_STD
  return x.astype(dtype)


def fold_time(x):
  """(B, T, ...) -> (B * T, ...): per-frame encoders see time as batch."""
  return x.reshape((x.shape[0] * x.shape[1],) + x.shape[2:])


def unfold_time(x, batch_size: int):
  """(B * T, ...) -> (B, T, ...)."""
  return x.reshape((batch_size, -1) + x.shape[1:])
