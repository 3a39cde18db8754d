"""Convolutional LSTM (Shi et al., NIPS 2015), as MSTN's CLSTM block (papers/000, eq. 1).

The paper's eq. 1 has eight convolutions (W_x* on the input, W_h* on the hidden
state). We compute them as ONE convolution over concat[x_t, h_{t-1}] with
4F output channels split into the i, f, o, g gates (DESIGN.md section 7;
ndrplz/ConvLSTM_pytorch's layout, shared/notes/seedcode.md section 1): a
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

``ConvLSTM`` scans the cell over time with ``nn.scan`` (``lax.scan``): one set
of parameters for every step, any T, one traced step whatever T. There is no
BatchNorm in the cell (DESIGN.md section 4: per-step statistics would tie
evaluation to the training T).
"""

from typing import Any, Sequence, Tuple

import flax.linen as nn
import jax.numpy as jnp

Carry = Tuple[Any, Any]  # (c, h), each (B, H, W, F)


class ConvLSTMCell(nn.Module):
  """One ConvLSTM step: ``(carry, x_t) -> (carry', h_t)``.

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

  @nn.compact
  def __call__(self, carry: Carry, x):  # carry (c, h): (B, H, W, F); x: (B, H, W, C)
    c, h = carry
    # Eq. 1's W_x* * x_t + W_h* * h_{t-1} + b_*: one convolution, input channels first.
    gates = nn.Conv(4 * self.features, tuple(self.kernel_size), padding='SAME',
                    dtype=self.dtype, name='gates')(
                        jnp.concatenate([x.astype(self.dtype), h.astype(self.dtype)], -1))
    gates = gates.astype(jnp.float32)  # (B, H, W, 4F)
    i, f, o, g = jnp.split(gates, 4, axis=-1)  # ndrplz's order
    if self.peephole:
      shape = c.shape[1:]  # (H, W, F)
      zeros = nn.initializers.zeros
      i = i + self.param('w_ci', zeros, shape) * c
      f = f + self.param('w_cf', zeros, shape) * c
    i = nn.sigmoid(i)
    f = nn.sigmoid(f + self.forget_bias)
    new_c = f * c + i * jnp.tanh(g)  # c_t
    if self.peephole:
      o = o + self.param('w_co', nn.initializers.zeros, c.shape[1:]) * new_c  # Shi: c_t, not c_{t-1}
    new_h = nn.sigmoid(o) * jnp.tanh(new_c)  # h_t
    return (new_c, new_h), new_h

  @staticmethod
  def zero_carry(batch_size: int, spatial: Sequence[int], features: int) -> Carry:
    """The zero initial state (c_0, h_0), float32 (B, H, W, F) each."""
    zeros = jnp.zeros((batch_size,) + tuple(spatial) + (features,), jnp.float32)
    return zeros, zeros


class ConvLSTM(nn.Module):
  """A ConvLSTM cell scanned over time, parameters shared across steps.

  ``(B, T, H, W, C) -> (B, T, H, W, F)`` hidden states h_1..h_T (and the last
  carry with ``return_carry``). Any T, including T = 1.

  Attributes: as ``ConvLSTMCell``.
  """
  features: int
  kernel_size: Sequence[int] = (3, 3)
  peephole: bool = False
  forget_bias: float = 0.0
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, xs, return_carry: bool = False):  # (B, T, H, W, C)
    scan = nn.scan(ConvLSTMCell, variable_broadcast='params', split_rngs={'params': False},
                   in_axes=1, out_axes=1)  # lax.scan over T; params broadcast, not per step
    cell = scan(self.features, kernel_size=tuple(self.kernel_size), peephole=self.peephole,
                forget_bias=self.forget_bias, dtype=self.dtype, name='cell')
    carry = ConvLSTMCell.zero_carry(xs.shape[0], xs.shape[2:4], self.features)
    carry, hs = cell(carry, xs)  # hs: (B, T, H, W, F)
    return (carry, hs) if return_carry else hs
