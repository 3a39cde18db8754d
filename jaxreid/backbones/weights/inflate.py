"""3D kernels from 2D ones: how I3D / P3D / M3D backbones take 2D weights."""

from typing import Optional, Tuple

import numpy as np

from jaxreid.layers.choices import check_choice


def inflate_kernels(flax_path: str, kernel: np.ndarray, model_shape: Tuple[int, ...],
                    mode: str = 'center') -> Optional[np.ndarray]:
  """An ``adapt`` for ``merge_pretrained``: a 2D kernel (kh, kw, in, out) into a
  3D kernel (kt, kh, kw, in, out).

  'center' puts the 2D kernel at the middle time tap and zeros elsewhere (the
  I3D of AP3D's code: the inflated network starts as the 2D one frame by
  frame); 'mean' repeats it over time divided by kt (Carreira & Zisserman's
  inflation: the same response to a clip of identical frames). Returns None
  where the shapes are not such a pair.
  """
  del flax_path
  if kernel.ndim != 4 or len(model_shape) != 5 or tuple(model_shape[1:]) != kernel.shape:
    return None
  check_choice('inflation mode', mode, ('center', 'mean'))
  kt = model_shape[0]
  if mode == 'center':
    out = np.zeros(model_shape, kernel.dtype)
    out[kt // 2] = kernel
    return out
  return np.repeat(kernel[None] / kt, kt, axis=0).astype(kernel.dtype)
