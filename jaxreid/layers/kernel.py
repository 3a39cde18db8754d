"""A layer's kernel alone, for recurrent cells that apply parts of it themselves."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class Kernel(nn.Module):
  """The parameter of a bias-free ``nn.Dense`` (or 1x1 ``nn.Conv``) without the
  layer: 'kernel' of `shape` with their lecun-normal initializer, returned as
  an array. A cell that hoists the carry-independent part of a product out of
  its scan slices this one parameter, so the variable tree stays the layer's."""
  shape: Sequence[int]

  @nn.compact
  def __call__(self):
    return self.param('kernel', nn.initializers.lecun_normal(), tuple(self.shape), jnp.float32)
