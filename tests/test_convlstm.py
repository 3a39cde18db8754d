"""The ConvLSTM cell and its scanned layer (jaxreid/layers/convlstm.py) against a
NumPy transcription of MSTN's eq. 1 (with Shi et al.'s peepholes as an option):
eight separate 'SAME' convolutions, W_x* on x_t and W_h* on h_{t-1}, written
here with their own NumPy conv2d."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxreid.layers import convlstm

# --- NumPy reference ---------------------------------------------------------


def _np_conv2d_same(x, kernel):
  """Stride-1 'SAME' cross-correlation: x (N, H, W, C), kernel (kh, kw, C, F), odd kh, kw."""
  n, h, w, _ = x.shape
  kh, kw, _, f = kernel.shape
  xp = np.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
  out = np.zeros((n, h, w, f))
  for a in range(kh):
    for b in range(kw):
      out += np.einsum('nhwc,cf->nhwf', xp[:, a:a + h, b:b + w, :], kernel[a, b])
  return out


def _sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def _np_convlstm_step(x, h, c, p, forget_bias=0.0):
  """Eq. 1 of MSTN, one step, float64. `p` holds W_x*, W_h*, b_* for * in
  i, f, c, o and optionally the peepholes w_ci, w_cf, w_co (Shi et al. 2015)."""
  conv = lambda g: _np_conv2d_same(x, p[f'W_x{g}']) + _np_conv2d_same(h, p[f'W_h{g}']) + p[f'b_{g}']
  i_pre, f_pre, o_pre = conv('i'), conv('f'), conv('o')
  if 'w_ci' in p:
    i_pre = i_pre + p['w_ci'] * c
    f_pre = f_pre + p['w_cf'] * c
  i = _sigmoid(i_pre)
  f = _sigmoid(f_pre + forget_bias)
  c_new = c * f + i * np.tanh(conv('c'))
  if 'w_co' in p:
    o_pre = o_pre + p['w_co'] * c_new
  o = _sigmoid(o_pre)
  return o * np.tanh(c_new), c_new


def _eq1_weights(cell_params, in_channels):
  """Splits our fused gate convolution (kh, kw, C + F, 4F) into eq. 1's named
  weights: input channels [0, C) are W_x*, the rest W_h*; gates i, f, g(=c), o."""
  kernel = np.asarray(cell_params['gates']['kernel'], np.float64)
  bias = np.asarray(cell_params['gates']['bias'], np.float64)
  features = kernel.shape[-1] // 4
  p = {}
  for k, gate in enumerate('ifoc'):  # the fused layout's order: i, f, o, g
    sl = slice(k * features, (k + 1) * features)
    p[f'W_x{gate}'] = kernel[:, :, :in_channels, sl]
    p[f'W_h{gate}'] = kernel[:, :, in_channels:, sl]
    p[f'b_{gate}'] = bias[sl]
  for name in ('w_ci', 'w_cf', 'w_co'):
    if name in cell_params:
      p[name] = np.asarray(cell_params[name], np.float64)
  return p


def _randomize(params, seed):
  """Every parameter random (the peepholes and biases start at zero)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.key(seed), len(leaves))
  return jax.tree.unflatten(
      treedef, [0.3 * jax.random.normal(k, x.shape, x.dtype) for k, x in zip(keys, leaves)])


# --- the cell -----------------------------------------------------------------


class CellTest(chex.TestCase):
  """The cell against eq. 1, jitted and not."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((False, 0.0, (3, 3)), (True, 0.0, (3, 3)), (False, 1.0, (3, 3)),
                            (True, 1.0, (5, 3)))
  def test_cell_matches_eq1(self, peephole, forget_bias, kernel):
    rng = np.random.default_rng(0)
    b, hgt, wid, c_in, feat = 2, 5, 4, 3, 6
    x = rng.normal(size=(b, hgt, wid, c_in)).astype(np.float32)
    h = rng.normal(size=(b, hgt, wid, feat)).astype(np.float32) * 0.5
    c = rng.normal(size=(b, hgt, wid, feat)).astype(np.float32)
    cell = convlstm.ConvLSTMCell(feat, kernel_size=kernel, peephole=peephole,
                                 forget_bias=forget_bias)
    params = cell.init(jax.random.key(0), (jnp.asarray(c), jnp.asarray(h)),
                       jnp.asarray(x))['params']
    params = _randomize(params, 1)
    assert params['gates']['kernel'].shape == kernel + (c_in + feat, 4 * feat)
    assert ('w_ci' in params) == peephole
    if peephole:
      assert params['w_ci'].shape == (hgt, wid, feat)
    (c_out, h_out), y = self.variant(cell.apply)({'params': params},
                                                 (jnp.asarray(c), jnp.asarray(h)), jnp.asarray(x))
    h_ref, c_ref = _np_convlstm_step(x.astype(np.float64), h.astype(np.float64),
                                     c.astype(np.float64), _eq1_weights(params, c_in), forget_bias)
    expected = jax.tree.map(lambda a: a.astype(np.float32), (h_ref, c_ref))
    chex.assert_trees_all_close((h_out, c_out), expected, atol=1e-5, rtol=0)
    chex.assert_trees_all_equal(y, h_out)


def test_peepholes_start_at_zero_and_forget_bias_changes_the_state():
  x = jnp.ones((1, 3, 3, 2))
  carry = convlstm.ConvLSTMCell.zero_carry(1, (3, 3), 4)
  carry = (carry[0] + 1.0, carry[1])  # a non-zero cell state for the peepholes to see
  plain = convlstm.ConvLSTMCell(4)
  peep = convlstm.ConvLSTMCell(4, peephole=True)
  p_plain = plain.init(jax.random.key(0), carry, x)
  p_peep = peep.init(jax.random.key(0), carry, x)
  chex.assert_trees_all_equal(p_plain['params']['gates'], p_peep['params']['gates'])
  np.testing.assert_array_equal(p_peep['params']['w_co'], 0.0)
  chex.assert_trees_all_close(plain.apply(p_plain, carry, x), peep.apply(p_peep, carry, x))
  biased = convlstm.ConvLSTMCell(4, forget_bias=1.0).apply(p_plain, carry, x)
  # f = sigma(z + 1) > sigma(z): more of c_{t-1} = 1 survives.
  assert np.all(np.asarray(biased[0][0]) > np.asarray(plain.apply(p_plain, carry, x)[0][0]))


# --- the scanned layer ------------------------------------------------------------


@pytest.mark.parametrize('peephole', [False, True])
def test_scan_equals_a_python_loop_over_the_cell_and_eq1(peephole):
  rng = np.random.default_rng(2)
  b, t, hgt, wid, c_in, feat = 2, 4, 4, 3, 3, 5
  xs = rng.normal(size=(b, t, hgt, wid, c_in)).astype(np.float32)
  layer = convlstm.ConvLSTM(feat, peephole=peephole, forget_bias=0.5)
  params = _randomize(layer.init(jax.random.key(0), jnp.asarray(xs))['params'], 3)
  (c_last, h_last), hs = layer.apply({'params': params}, jnp.asarray(xs), return_carry=True)
  assert hs.shape == (b, t, hgt, wid, feat)
  # The module cell stepped by hand, zero initial state.
  cell = convlstm.ConvLSTMCell(feat, peephole=peephole, forget_bias=0.5)
  carry = (jnp.zeros((b, hgt, wid, feat)), jnp.zeros((b, hgt, wid, feat)))
  # And eq. 1 in NumPy.
  p = _eq1_weights(params['cell'], c_in)
  h_np, c_np = np.zeros((b, hgt, wid, feat)), np.zeros((b, hgt, wid, feat))
  for step in range(t):
    carry, y = cell.apply({'params': params['cell']}, carry, jnp.asarray(xs[:, step]))
    np.testing.assert_allclose(hs[:, step], y, rtol=1e-6, atol=1e-6)
    h_np, c_np = _np_convlstm_step(xs[:, step].astype(np.float64), h_np, c_np, p, 0.5)
    assert np.max(np.abs(np.asarray(hs[:, step]) - h_np)) < 1e-5
  np.testing.assert_allclose(h_last, hs[:, -1], rtol=1e-6, atol=1e-7)
  assert np.max(np.abs(np.asarray(c_last) - c_np)) < 1e-5


def _jnp_unhoisted_convlstm(params, xs, forget_bias):
  """The original formulation, stepped in a plain Python loop: at every t ONE
  'SAME' convolution of concat[x_t, h_{t-1}] with the whole kernel, then eq. 1."""
  kernel, bias = params['gates']['kernel'], params['gates']['bias']
  b, t, hgt, wid, _ = xs.shape
  feat = kernel.shape[-1] // 4
  c = h = jnp.zeros((b, hgt, wid, feat))
  hs = []
  for step in range(t):
    z = jnp.concatenate([xs[:, step], h], axis=-1)
    gates = jax.lax.conv_general_dilated(z, kernel, (1, 1), 'SAME',
                                         dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias
    i, f, o, g = jnp.split(gates, 4, axis=-1)
    if 'w_ci' in params:
      i, f = i + params['w_ci'] * c, f + params['w_cf'] * c
    c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    if 'w_co' in params:
      o = o + params['w_co'] * c
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    hs.append(h)
  return jnp.stack(hs, axis=1)


@pytest.mark.parametrize('peephole,kernel,t', [(False, (3, 3), 5), (True, (5, 3), 3),
                                               (False, (3, 3), 1)])
def test_hoisted_input_convolution_equals_the_unhoisted_loop(peephole, kernel, t):
  """The layer convolves W_x* * x_t for all B * T frames before the scan and
  only W_h* * h_{t-1} inside it; outputs AND gradients (to the kernel, bias,
  peepholes and the input) equal a per-step loop over the one convolution of
  concat[x_t, h_{t-1}], to 1e-5. C != F, so a wrong kernel slice would show."""
  rng = np.random.default_rng(5)
  b, hgt, wid, c_in, feat = 2, 4, 3, 3, 5
  xs = jnp.asarray(rng.normal(size=(b, t, hgt, wid, c_in)).astype(np.float32))
  layer = convlstm.ConvLSTM(feat, kernel_size=kernel, peephole=peephole, forget_bias=0.5)
  params = _randomize(layer.init(jax.random.key(0), xs)['params'], 4)
  assert params['cell']['gates']['kernel'].shape == kernel + (c_in + feat, 4 * feat)
  hs = layer.apply({'params': params}, xs)
  np.testing.assert_allclose(hs, _jnp_unhoisted_convlstm(params['cell'], xs, 0.5),
                             rtol=0, atol=1e-5)
  weights = jnp.asarray(rng.normal(size=hs.shape).astype(np.float32))
  loss = lambda p, x: jnp.sum(weights * layer.apply({'params': p}, x))
  loss_ref = lambda p, x: jnp.sum(weights * _jnp_unhoisted_convlstm(p['cell'], x, 0.5))
  grads = jax.grad(loss, argnums=(0, 1))(params, xs)
  grads_ref = jax.grad(loss_ref, argnums=(0, 1))(params, xs)
  chex.assert_trees_all_close(grads, grads_ref, rtol=0, atol=1e-5)


def test_parameters_are_shared_over_time_and_any_t_runs():
  layer = convlstm.ConvLSTM(6)
  shapes = {}
  for t in (1, 2, 7):
    params = jax.eval_shape(lambda t=t: layer.init(jax.random.key(0), jnp.zeros((1, t, 4, 2, 3))))
    shapes[t] = jax.tree.map(lambda x: x.shape, params)
  assert shapes[1] == shapes[2] == shapes[7]  # no T axis anywhere
  assert shapes[2]['params']['cell']['gates']['kernel'] == (3, 3, 3 + 6, 24)
  count = sum(int(np.prod(s)) for s in jax.tree.leaves(shapes[7], is_leaf=lambda x: isinstance(x, tuple)))
  assert count == 3 * 3 * 9 * 24 + 24
  # Parameters made at T = 2 run at any T; the first step only sees x_1.
  x = jax.random.normal(jax.random.key(1), (2, 5, 4, 2, 3))
  variables = layer.init(jax.random.key(0), x[:, :2])
  out5 = layer.apply(variables, x)
  out1 = layer.apply(variables, x[:, :1])
  np.testing.assert_allclose(out5[:, :1], out1, rtol=1e-6, atol=1e-7)
  # Gradients flow through the scan to the input of the first step.
  grad = jax.grad(lambda v: jnp.sum(layer.apply(variables, v)[:, -1]))(x)
  chex.assert_tree_all_finite(grad)
  assert float(jnp.abs(grad[:, 0]).sum()) > 0
