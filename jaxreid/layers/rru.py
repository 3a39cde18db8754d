"""Refining Recurrent Unit (RRU; Liu, Yuan, Zhou, Li, AAAI 2019, eq. 1-5).

For every frame t the RRU refines the raw feature map X_t with the refined map
of the previous frame:

  Z_i = [X_t - S_{t-1}, X_t - X_{t-1}]                     (eq. 1's input)
  Z_t = ReLU(BN(conv1x1(Z_i)))          transition layer, 256 channels
  Z_s = W_s^2 ReLU(W_s^1 mean_c(Z_t))   spatial attention, (H, W)   (eq. 2)
  Z_c = W_c mean_hw(Z_t)                channel attention, (C,)     (eq. 3)
  Z   = sigmoid(Z_s * Z_c)              update gate, (H, W, C)      (eq. 4)
  S_t = (1 - Z) S_{t-1} + Z X_t                                      (eq. 5)

with S_0 = X_0 (the paper's "X_0 and S_0 are initialized with X_1"; with it
the first gate input is all zeros and the first output is X_0 itself, which
is what we return without computing that gate).

``RRUCell`` is one step; ``RRU`` scans it over time with ``lax.scan``, one set
of parameters for every step (docs/design.md "Model contract"). The
motion term X_t - X_{t-1} does not depend on the recurrence, so it is computed
for all t in one batched pass before the scan, and so is its share of the
transition conv: a 1x1 conv of a channel concatenation is the sum of the convs
of its blocks, W [X_t - S_{t-1}, M_t] = W_a (X_t - S_{t-1}) + W_m M_t, and
W_m M_t ('full'; W_x X_t for 'od') is one batched matmul over all steps
before the scan, which then only computes the block that depends on S_{t-1}
(the kernel stays one (1, 1, C_in, F) parameter, sliced at apply time).
X_t - S_{t-1} itself is not split into W_a X_t - W_a S_{t-1}: that would
round X_t and S_{t-1} apart (in bfloat16 visibly) where their difference is
small.

BatchNorm in the recurrence (the transition layer's BN). Its input at step t
depends on S_{t-1}, so it cannot be batched over time, and the model contract
(docs/design.md) keeps BatchNorm variables out of scanned cells. ``TimeSharedBatchNorm`` therefore
owns the variables outside the scan (one scale and bias, one running mean and
variance for every time step) and hands them to the cell as broadcast
arguments:
  * train: step t normalizes with the batch statistics of its own gate input
    (the only causal choice; it is also what the official code computes, one
    ``nn.BatchNorm2d`` called at every step); the cell returns each step's
    mean and mean square, and after the scan the running statistics are
    updated ONCE with the statistics over all time steps' gate inputs
    (steps 1..T-1 pooled: equal counts, so pooling the moments is exact);
  * eval: every step normalizes with the running statistics.
So there is one set of statistics, independent of T (evaluation may use any
clip length), and its update is the plain BatchNorm update on the (B, T-1, H,
W) gate inputs. The official code instead updates its running averages T
times per clip, including once on the all-zero gate input of t = 0.

Table 1's variants: ``gate_branches`` 's' (RRU(s): Z = sigmoid(Z_s), broadcast
over channels), 'c' (RRU(c): Z = sigmoid(Z_c), broadcast over positions) or
'sc' (both, eq. 4); ``gate_input`` 'ad' (RRU(ad): [X_t - S_{t-1}] only), 'od'
(RRU(od): [X_t, S_{t-1}]) or 'full' (eq. 1).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxreid.layers.choices import check_choice
from jaxreid.layers.kernel import Kernel

GATE_BRANCHES = ('sc', 's', 'c')
GATE_INPUTS = ('full', 'ad', 'od')


def check_options(gate_branches: str, gate_input: str) -> None:
  """Clear errors for unknown gate options."""
  check_choice('RRU gate_branches', gate_branches, GATE_BRANCHES,
               ' (sc: eq. 4, s: RRU(s), c: RRU(c))')
  check_choice('RRU gate_input', gate_input, GATE_INPUTS,
               ' (full: eq. 1, ad: RRU(ad), od: RRU(od))')


def _dense(x, kernel, dtype, out_dtype=jnp.float32):
  """x (..., C_in) @ kernel (C_in, C_out) in `dtype` (what nn.Dense and a 1x1
  nn.Conv compute), cast to `out_dtype`."""
  return jnp.dot(x.astype(dtype), kernel.astype(dtype)).astype(out_dtype)


class TimeSharedBatchNorm(nn.Module):
  """The transition layer's BatchNorm variables, shared by every time step.

  Called without arguments it returns {'scale', 'bias', 'mean', 'var'} for the
  cell (which applies them with its ``bn_epsilon``); called with ``moments`` =
  (mean, mean of squares), each (S, F) for S scanned steps, it updates the
  running statistics once with the statistics of all S steps together (Flax's
  BatchNorm update: biased variance, ``ra = momentum * ra + (1 - momentum) *
  batch``).

  Attributes:
    features: channels F.
    momentum: running-average decay (0.9 = PyTorch's momentum 0.1).
  """
  features: int
  momentum: float = 0.9

  @nn.compact
  def __call__(self, moments=None):
    scale = self.param('scale', nn.initializers.ones, (self.features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (self.features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (self.features,), jnp.float32)
    if moments is not None and not self.is_initializing():
      step_mean, step_meansq = moments  # (S, F) each
      mean = jnp.mean(step_mean, axis=0)  # (F,), over all steps' gate inputs
      var = jnp.maximum(jnp.mean(step_meansq, axis=0) - jnp.square(mean), 0.0)
      ra_mean.value = self.momentum * ra_mean.value + (1.0 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1.0 - self.momentum) * var
    return {'scale': scale, 'bias': bias, 'mean': ra_mean.value, 'var': ra_var.value}


class RRUOptions(nn.Module):
  """The settings of an RRU, shared by the cell and the scanned layer.

  Attributes:
    transition_features: channels of the transition layer (256).
    spatial_hidden: width of the spatial branch's first FC layer (128).
    gate_branches: 'sc' (eq. 4), 's' (RRU(s)) or 'c' (RRU(c)).
    gate_input: 'full' (eq. 1), 'ad' (RRU(ad)) or 'od' (RRU(od)).
    bn_epsilon: the transition BN's epsilon (1e-3: the official BasicConv2d).
    dtype: computation dtype of the convolution and FC layers; the BN, the
      gate and the update (eq. 5) are float32.
  """
  transition_features: int = 256
  spatial_hidden: int = 128
  gate_branches: str = 'sc'
  gate_input: str = 'full'
  bn_epsilon: float = 1e-3
  dtype: Any = jnp.float32


class RRUCell(RRUOptions):
  """One RRU step (eq. 1-5): (S_{t-1}, inputs_t, norm) -> (S_t, (S_t, moments)).

  Attributes: ``RRUOptions``'s, and ``train``: normalize with this step's
  batch statistics and return them.
  """
  train: bool = False

  def __call__(self, s_prev, inputs, norm):
    """Args:
      s_prev: S_{t-1} (B, H, W, C) float32.
      inputs: {'x': X_t (B, H, W, C), 'motion': X_t - X_{t-1}} ('motion' only
        for gate_input 'full').
      norm: ``TimeSharedBatchNorm``'s dict.
    Returns:
      S_t and (S_t, moments): moments = (mean, mean square) over (B, H, W) of
      the transition conv's output (F,) each in train mode, else None.
    """
    check_options(self.gate_branches, self.gate_input)
    weights = self.weights(*inputs['x'].shape[1:])
    return self.step(weights, s_prev, inputs, self.carry_free_input(weights, inputs), norm)

  @nn.compact
  def weights(self, height: int, width: int, channels: int):
    """The cell's parameters as arrays (created on first use), under the names
    and initializers of the nn.Conv / nn.Dense layers they stand for:
    'transition_conv' (1, 1, C_in, F) with C_in = 2C ('full', 'od') or C
    ('ad'), 'spatial_fc1' (HW, hidden), 'spatial_fc2' (hidden, HW),
    'channel_fc' (F, C), the last three as the gate branches need them."""
    check_options(self.gate_branches, self.gate_input)
    f = self.transition_features
    in_features = channels if self.gate_input == 'ad' else 2 * channels
    shapes = {'transition_conv': (1, 1, in_features, f)}
    if 's' in self.gate_branches:
      shapes['spatial_fc1'] = (height * width, self.spatial_hidden)
      shapes['spatial_fc2'] = (self.spatial_hidden, height * width)
    if 'c' in self.gate_branches:
      shapes['channel_fc'] = (f, channels)
    return {name: Kernel(shape, name=name)() for name, shape in shapes.items()}

  def carry_free_input(self, weights, inputs):
    """The part of the transition conv's output that does not depend on
    S_{t-1}: W_m (X_t - X_{t-1}) for 'full' (the motion half of eq. 1's Z_i),
    W_x X_t for 'od', None for 'ad' (all of X_t - S_{t-1} depends on it).
    Works on any leading axes, so `RRU` computes it for all steps at once."""
    kernel = weights['transition_conv'][0, 0]  # (C_in, F)
    channels = inputs['x'].shape[-1]
    if self.gate_input == 'full':
      return _dense(inputs['motion'], kernel[channels:], self.dtype)
    if self.gate_input == 'od':
      return _dense(inputs['x'], kernel[:channels], self.dtype)
    return None

  def step(self, weights, s_prev, inputs, carry_free, norm):
    """Eq. 1-5 given `carry_free_input`'s part of the transition conv."""
    x = inputs['x']  # (B, H, W, C)
    batch, height, width, channels = x.shape
    kernel = weights['transition_conv'][0, 0]  # (C_in, F)
    # Transition layer: 1x1 conv (no bias: BN follows) + BN + ReLU. The conv
    # of Z_i is the sum of the convs of its channel blocks; only the blocks
    # that depend on S_{t-1} are computed here.
    if self.gate_input == 'full':  # eq. 1: [X_t - S_{t-1}, X_t - X_{t-1}]
      u = _dense(x - s_prev, kernel[:channels], self.dtype) + carry_free
    elif self.gate_input == 'ad':  # [X_t - S_{t-1}]
      u = _dense(x - s_prev, kernel, self.dtype)
    else:  # 'od': the raw pair [X_t, S_{t-1}], no explicit differences
      u = carry_free + _dense(s_prev, kernel[channels:], self.dtype)
    if self.train:
      mean = jnp.mean(u, axis=(0, 1, 2))  # (F,), this step's batch statistics
      meansq = jnp.mean(jnp.square(u), axis=(0, 1, 2))
      var = jnp.mean(jnp.square(u - mean), axis=(0, 1, 2))
      moments = (mean, meansq)
    else:
      mean, var, moments = norm['mean'], norm['var'], None
    z_t = (u - mean) * (norm['scale'] / jnp.sqrt(var + self.bn_epsilon)) + norm['bias']
    z_t = nn.relu(z_t)  # (B, H, W, F), Z_t
    logit = jnp.ones((), jnp.float32)
    if 's' in self.gate_branches:  # eq. 2: cross-channel mean, FC(HW -> 128), ReLU, FC(128 -> HW)
      pooled = jnp.mean(z_t, axis=-1).reshape(batch, height * width)  # (B, HW)
      z_s = _dense(pooled, weights['spatial_fc1'], self.dtype, out_dtype=self.dtype)
      z_s = _dense(nn.relu(z_s), weights['spatial_fc2'], self.dtype)  # (B, HW)
      logit = logit * z_s.astype(jnp.float32).reshape(batch, height, width, 1)
    if 'c' in self.gate_branches:  # eq. 3: spatial mean, FC(256 -> C)
      z_c = _dense(jnp.mean(z_t, axis=(1, 2)), weights['channel_fc'], self.dtype)  # (B, C)
      logit = logit * z_c.astype(jnp.float32).reshape(batch, 1, 1, channels)
    z = nn.sigmoid(logit)  # eq. 4: (B, H, W, C) after broadcasting
    s_t = (1.0 - z) * s_prev + z * x  # eq. 5
    return s_t, (s_t, moments)


class RRU(RRUOptions):
  """The RRU over a clip: X (B, T, H, W, C) -> S (B, T, H, W, C).

  Attributes: ``RRUOptions``'s, and ``bn_momentum`` of the transition layer's
  time-shared BatchNorm.
  """
  bn_momentum: float = 0.9

  @nn.compact
  def __call__(self, x, train: bool = False):  # (B, T, H, W, C)
    check_options(self.gate_branches, self.gate_input)
    x = x.astype(jnp.float32)
    bn = TimeSharedBatchNorm(self.transition_features, momentum=self.bn_momentum,
                             name='transition_bn')
    norm = bn()
    x_tm = jnp.moveaxis(x, 1, 0)  # (T, B, H, W, C), time-major for the scan
    s_0 = x_tm[0]  # S_0 = X_0
    cell = RRUCell(self.transition_features, self.spatial_hidden, self.gate_branches,
                   self.gate_input, self.bn_epsilon, self.dtype, train=train, name='cell')
    weights = cell.weights(*x.shape[2:])  # one set for every step (any T, also T = 1)
    if x_tm.shape[0] == 1:
      return x
    inputs = _step_inputs(x_tm, self.gate_input)  # (T-1, B, H, W, C) each
    # Hoisted out of the scan: the S-independent part of the transition conv
    # for all steps in one batched matmul ((T-1) * B * H * W rows).
    carry_free = cell.carry_free_input(weights, inputs)  # (T-1, B, H, W, F) or None

    def step(s_prev, scanned):
      inputs_t, carry_free_t = scanned
      return cell.step(weights, s_prev, inputs_t, carry_free_t, norm)

    _, (s_rest, moments) = jax.lax.scan(step, s_0, (inputs, carry_free))
    if train:
      bn(moments)  # one update with the statistics of steps 1..T-1 together
    s = jnp.concatenate([s_0[None], s_rest], axis=0)  # (T, B, H, W, C)
    return jnp.moveaxis(s, 0, 1)  # (B, T, H, W, C)


def _step_inputs(x_tm, gate_input: str):
  """The scanned inputs of steps 1..T-1: X_t and, for the 'full' gate, the
  motion X_t - X_{t-1}, computed for all t in one batched pass."""
  inputs = {'x': x_tm[1:]}  # (T-1, B, H, W, C)
  if gate_input == 'full':
    inputs['motion'] = x_tm[1:] - x_tm[:-1]  # (T-1, B, H, W, C)
  return inputs
