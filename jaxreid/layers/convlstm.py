"""Convolutional LSTM (Shi et al., NIPS 2015), as MSTN's CLSTM block ([MSTN] eq. 1).

[MSTN]: Wang, He, Gao, Huang, Multi-scale spatial-temporal network for person
re-identification (keys: docs/references.md).

The paper's eq. 1 has eight convolutions (W_x* on the input, W_h* on the hidden
state). We compute them as ONE convolution over concat[x_t, h_{t-1}] with
4F output channels split into the i, f, o, g gates (docs/design.md,
"Per-model decisions"; ndrplz/ConvLSTM_pytorch's convlstm.py layout): a
convolution over a channel concatenation is the sum of the convolutions of
its parts, so this is eq. 1 exactly, with one shared bias vector per gate.

  i_t = sigma(W_i * [x_t, h_{t-1}] + b_i (+ w_ci o c_{t-1}))
  f_t = sigma(W_f * [x_t, h_{t-1}] + b_f + forget_bias (+ w_cf o c_{t-1}))
  g_t = tanh(W_g * [x_t, h_{t-1}] + b_g)
  c_t = f_t o c_{t-1} + i_t o g_t
  o_t = sigma(W_o * [x_t, h_{t-1}] + b_o (+ w_co o c_t))
  h_t = o_t o tanh(c_t)

Peepholes (Shi et al. eq. 3, not in MSTN's eq. 1) are Hadamard weights of
shape (H, W, F) on the cell state, the output gate's on the *new* state;
they tie the layer to one feature-map size, so they are off by default.
``forget_bias`` is a constant added to the forget gate's pre-activation
(TF's LSTMCell ``forget_bias``), 0 by default. The initial state is zero.

``ConvLSTM`` runs the recurrence with ``lax.scan``: one set of parameters for
every step, any T, one traced step whatever T. The input half of the gate
convolution does not depend on the carry, so it is hoisted out of the scan:
W_x * x_t + b for all B * T frames is ONE batched convolution before the scan,
and each scanned step convolves only h_{t-1} with the hidden-state slice of
the same kernel (the kernel stays one (kh, kw, C + F, 4F) parameter, sliced
at apply time, so checkpoints and parameter names are unchanged). This halves
the FLOPs inside the loop (for C = F) and turns T small convolutions into one
large one, which XLA runs at a far higher rate. There is no
BatchNorm in the cell (docs/design.md, "Model contract": per-step statistics would tie
evaluation to the training T).
"""

from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxreid.layers import folding

Carry = Tuple[Any, Any]  # (c, h), each (B, H, W, F)


class _GateKernel(nn.Module):
  """The parameters of the fused gate convolution, under nn.Conv's names and
  initializers ('kernel' (kh, kw, C + F, 4F) lecun-normal, 'bias' (4F,) zeros),
  returned as arrays so the two halves of the kernel can be applied apart."""
  features: int  # 4F
  kernel_size: Sequence[int]
  in_features: int  # C + F

  @nn.compact
  def __call__(self):
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        tuple(self.kernel_size) + (self.in_features, self.features), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return kernel, bias


def _conv_same(x, kernel, dtype):
  """Stride-1 'SAME' convolution of (N, H, W, C) by (kh, kw, C, F) in `dtype`
  (what nn.Conv computes), returned as float32 (N, H, W, F)."""
  y = jax.lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), (1, 1), 'SAME',
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y.astype(jnp.float32)


def _input_gates(weights, x, dtype):
  """The carry-independent part of eq. 1's pre-activations, W_x* * x + b_*:
  x (N, H, W, C) -> (N, H, W, 4F) float32. N may be B * T (all frames at once)."""
  in_channels = x.shape[-1]
  return _conv_same(x, weights['kernel'][:, :, :in_channels], dtype) + weights['bias']


def _recurrent_step(weights, forget_bias, dtype, carry: Carry, x_gates):
  """One step given the hoisted input part: adds W_h* * h_{t-1} and applies the
  gates. carry (c, h) (B, H, W, F); x_gates (B, H, W, 4F) -> ((c_t, h_t), h_t)."""
  c, h = carry
  features = c.shape[-1]
  kernel_h = weights['kernel'][:, :, -features:]  # (kh, kw, F, 4F): W_h*
  gates = x_gates + _conv_same(h, kernel_h, dtype)  # (B, H, W, 4F), float32
  i, f, o, g = jnp.split(gates, 4, axis=-1)  # ndrplz's order
  if 'w_ci' in weights:  # peepholes on c_{t-1}
    i = i + weights['w_ci'] * c
    f = f + weights['w_cf'] * c
  i = nn.sigmoid(i)
  f = nn.sigmoid(f + forget_bias)
  new_c = f * c + i * jnp.tanh(g)  # c_t
  if 'w_co' in weights:
    o = o + weights['w_co'] * new_c  # Shi: c_t, not c_{t-1}
  new_h = nn.sigmoid(o) * jnp.tanh(new_c)  # h_t
  return (new_c, new_h), new_h


class ConvLSTMOptions(nn.Module):
  """The settings of a ConvLSTM, shared by the cell and the scanned layer.

  Attributes:
    features: F, the channels of c and h.
    kernel_size: the gate convolution's kernel (3 x 3 here: MSTN does not say).
    peephole: Hadamard peephole weights w_ci, w_cf, w_co of shape (H, W, F)
      (Shi et al. 2015), zero-initialised.
    forget_bias: constant added to the forget gate's pre-activation.
    dtype: computation dtype (parameters stay float32).
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  peephole: bool = False
  forget_bias: float = 0.0
  dtype: Any = jnp.float32


class ConvLSTMCell(ConvLSTMOptions):
  """One ConvLSTM step: ``(carry, x_t) -> (carry', h_t)``."""

  @nn.compact
  def weights(self, in_channels: int, spatial: Sequence[int]):
    """The cell's parameters as arrays (created on first use): 'kernel'
    (kh, kw, C + F, 4F) over concat[x_t, h_{t-1}], input channels first, 'bias'
    (4F,), and with peepholes 'w_ci', 'w_cf', 'w_co' (H, W, F)."""
    kernel, bias = _GateKernel(4 * self.features, tuple(self.kernel_size),
                               in_channels + self.features, name='gates')()
    out = {'kernel': kernel, 'bias': bias}
    if self.peephole:
      shape = tuple(spatial) + (self.features,)  # (H, W, F)
      for name in ('w_ci', 'w_cf', 'w_co'):
        out[name] = self.param(name, nn.initializers.zeros, shape)
    return out

  def __call__(self, carry: Carry, x):  # carry (c, h): (B, H, W, F); x: (B, H, W, C)
    # Eq. 1's W_x* * x_t + W_h* * h_{t-1} + b_*: the slices of one kernel over
    # concat[x_t, h_{t-1}] (a convolution over a concatenation is the sum of
    # the convolutions of its parts), the input part as `ConvLSTM` hoists it.
    weights = self.weights(x.shape[-1], carry[0].shape[1:3])
    return _recurrent_step(weights, self.forget_bias, self.dtype, carry,
                           _input_gates(weights, x, self.dtype))

  @staticmethod
  def zero_carry(batch_size: int, spatial: Sequence[int], features: int) -> Carry:
    """The zero initial state (c_0, h_0), float32 (B, H, W, F) each."""
    zeros = jnp.zeros((batch_size,) + tuple(spatial) + (features,), jnp.float32)
    return zeros, zeros


class ConvLSTM(ConvLSTMOptions):
  """A ConvLSTM cell scanned over time, parameters shared across steps.

  ``(B, T, H, W, C) -> (B, T, H, W, F)`` hidden states h_1..h_T (and the last
  carry with ``return_carry``). Any T, including T = 1.
  """

  @nn.compact
  def __call__(self, xs, return_carry: bool = False):  # (B, T, H, W, C)
    batch, steps, height, width, channels = xs.shape
    cell = ConvLSTMCell(self.features, tuple(self.kernel_size), self.peephole, self.forget_bias,
                        self.dtype, name='cell')
    weights = cell.weights(channels, (height, width))  # one set for every step
    # Hoisted out of the scan: W_x* * x_t + b_* for all B * T frames at once.
    x_gates = _input_gates(weights, folding.fold_time(xs), self.dtype)  # (B*T, H, W, 4F)
    x_gates = jnp.moveaxis(folding.unfold_time(x_gates, steps), 1, 0)  # (T, B, H, W, 4F)
    step = lambda carry, xg: _recurrent_step(weights, self.forget_bias, self.dtype, carry, xg)
    carry = ConvLSTMCell.zero_carry(batch, (height, width), self.features)
    carry, hs = jax.lax.scan(step, carry, x_gates)  # only W_h* * h_{t-1} inside the loop
    hs = jnp.moveaxis(hs, 0, 1)  # (B, T, H, W, F)
    return (carry, hs) if return_carry else hs
