"""STIM (Liu et al., AAAI 2019, eq. 6; jaxreid/layers/stim.py) against NumPy
3D convolutions and BatchNorm in PyTorch's layout (tests/test_p3d_reference.py)."""

import chex
import flax
import jax
import numpy as np

from jaxreid.layers import stim as stim_lib
from test_p3d_reference import bn as np_bn3d, conv3d as np_conv3d
from test_rru import random_bn


class STIMTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_stim_matches_numpy_eq6(self):
    """1x1x1 conv + BN + ReLU, 3x3x3 conv (padding 1) + BN + ReLU, the mean over
    T, H, W; BN in eval mode with given statistics; no biases."""
    layer = stim_lib.STIM(6)
    s = jax.random.normal(jax.random.key(0), (2, 4, 3, 2, 5))  # (B, T, H, W, C)
    variables = flax.core.unfreeze(jax.jit(layer.init)(jax.random.key(1), s))
    rng = np.random.default_rng(2)
    for name in ('bn1', 'bn2'):
      variables['params'][name], variables['batch_stats'][name] = random_bn(rng, 6)
    params, stats = jax.tree.map(lambda v: np.asarray(v, np.float64), (
        variables['params'], variables['batch_stats']))
    torch_bn = lambda n: dict(weight=params[n]['scale'], bias=params[n]['bias'], **stats[n])
    torch_kernel = lambda n: params[n]['kernel'].transpose(4, 3, 0, 1, 2)  # DHWIO -> OIDHW
    x = np.asarray(s, np.float64).transpose(0, 4, 1, 2, 3)  # (B, C, T, H, W)
    o = np.maximum(np_bn3d(np_conv3d(x, torch_kernel('conv1')), torch_bn('bn1')), 0)
    o = np.maximum(np_bn3d(np_conv3d(o, torch_kernel('conv2'), padding=(1, 1, 1)),
                           torch_bn('bn2')), 0)
    chex.assert_trees_all_close(self.variant(layer.apply)(variables, s),
                                o.mean(axis=(2, 3, 4)).astype(np.float32), atol=1e-5, rtol=1e-5)
