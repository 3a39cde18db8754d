"""RRU + STIM (Liu et al., AAAI 2019): the RRU step and its scan against NumPy transcriptions of
eq. 1-5, the time-shared BatchNorm statistics, the part-level triplet (eq. 10)
against NumPy, full-size output shapes and head parameter counts
(jax.eval_shape only), a tiny training forward with finite gradients, every
Table 1 variant, and the configs."""

import importlib

import chex
import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl.testing import parameterized

from jaxreid import losses
from jaxreid.layers import rru as rru_lib
from jaxreid.models import get_model
from jaxreid.models import rru as rru_model
from jaxreid.training import setup

B, H, W, C, F, HIDDEN = 2, 3, 2, 5, 8, 6
EPS = 1e-3
VARIANTS = {'full': ('sc', 'full'), 's': ('s', 'full'), 'c': ('c', 'full'),
            'ad': ('sc', 'ad'), 'od': ('sc', 'od')}


# --- NumPy transcription of the paper (eq. 1-5) ---------------------------------------------

def np_gate_input(x_t, x_prev, s_prev, gate_input):
  """Eq. 1's Z_i (and the RRU(ad) / RRU(od) inputs of Table 1)."""
  if gate_input == 'full':
    return np.concatenate([x_t - s_prev, x_t - x_prev], axis=-1)
  if gate_input == 'ad':
    return x_t - s_prev
  return np.concatenate([x_t, s_prev], axis=-1)


def np_rru_step(x_t, x_prev, s_prev, w, bn, branches='sc', gate_input='full', stats=None):
  """One RRU step in float64. `w`: transition (C_in, F), fc1 (HW, hidden),
  fc2 (hidden, HW), fc_c (F, C). `bn`: scale, bias, mean, var; with `stats`
  = 'batch' the BN uses the batch statistics of this step instead.
  Returns S_t and the transition layer's pre-BN output."""
  b, h, wd, c = x_t.shape
  z_i = np_gate_input(x_t, x_prev, s_prev, gate_input)
  u = np.einsum('bhwi,if->bhwf', z_i, w['transition'])  # 1x1 conv
  if stats == 'batch':
    mean, var = u.mean(axis=(0, 1, 2)), u.var(axis=(0, 1, 2))
  else:
    mean, var = bn['mean'], bn['var']
  z_t = np.maximum((u - mean) / np.sqrt(var + EPS) * bn['scale'] + bn['bias'], 0.0)
  logit = np.ones((b, h, wd, c))
  if 's' in branches:  # eq. 2
    z_hw = z_t.mean(axis=-1).reshape(b, h * wd)
    z_s = np.maximum(z_hw @ w['fc1'], 0.0) @ w['fc2']
    logit = logit * z_s.reshape(b, h, wd, 1)
  if 'c' in branches:  # eq. 3
    z_c = z_t.mean(axis=(1, 2)) @ w['fc_c']
    logit = logit * z_c.reshape(b, 1, 1, c)
  z = 1.0 / (1.0 + np.exp(-logit))  # eq. 4
  return (1.0 - z) * s_prev + z * x_t, u  # eq. 5


def np_rru(x, w, bn, branches='sc', gate_input='full', stats=None):
  """The recurrence over a clip (B, T, H, W, C) with S_0 = X_0."""
  s, us = [x[:, 0]], []
  for t in range(1, x.shape[1]):
    s_t, u = np_rru_step(x[:, t], x[:, t - 1], s[-1], w, bn, branches, gate_input, stats)
    s.append(s_t)
    us.append(u)
  return np.stack(s, axis=1), us


def _weights(params):
  names = {'transition': 'transition_conv', 'fc1': 'spatial_fc1', 'fc2': 'spatial_fc2',
           'fc_c': 'channel_fc'}
  w = {k: np.asarray(params['cell'][n]['kernel'], np.float64) for k, n in names.items()
       if n in params['cell']}
  return {**w, 'transition': w['transition'][0, 0]}


def _layer_and_variables(variant='full', t=4, seed=0):
  branches, gate_input = VARIANTS[variant]
  layer = rru_lib.RRU(transition_features=F, spatial_hidden=HIDDEN, gate_branches=branches,
                      gate_input=gate_input)
  x = jax.random.normal(jax.random.key(seed), (B, t, H, W, C))
  variables = flax.core.unfreeze(jax.jit(layer.init)(jax.random.key(seed + 1), x))
  rng = np.random.default_rng(seed)
  variables['params']['transition_bn'], variables['batch_stats']['transition_bn'] = random_bn(
      rng, F)
  return layer, variables, x


def random_bn(rng, features):
  """Non-trivial BN variables, ({'scale', 'bias'}, {'mean', 'var'}), so that eval
  mode tests the affine part and the statistics."""
  draw = lambda f, *args: jnp.asarray(f(*args, features), jnp.float32)
  return ({'scale': draw(rng.uniform, 0.5, 1.5), 'bias': draw(rng.normal, 0, 0.3)},
          {'mean': draw(rng.normal, 0, 0.3), 'var': draw(rng.uniform, 0.5, 2.0)})


def _np_bn(variables):
  return {k: np.asarray(v, np.float64) for k, v in {
      **variables['params']['transition_bn'], **variables['batch_stats']['transition_bn']}.items()}


class CellsTest(chex.TestCase):
  """The RRU step, jitted and not."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*VARIANTS)
  def test_rru_step_matches_numpy_eval_mode(self, variant):
    """One RRUCell step (eval-mode BN) equals the NumPy transcription of eq. 1-5, for the
    full gate and every Table 1 gate variant."""
    branches, gate_input = VARIANTS[variant]
    _, variables, x = _layer_and_variables(variant)
    cell = rru_lib.RRUCell(transition_features=F, spatial_hidden=HIDDEN,
                           gate_branches=branches, gate_input=gate_input)
    s_prev = jax.random.normal(jax.random.key(7), (B, H, W, C))
    inputs = {'x': x[:, 2]}
    if gate_input == 'full':
      inputs['motion'] = x[:, 2] - x[:, 1]
    bn = _np_bn(variables)
    norm = {k: jnp.asarray(v, jnp.float32) for k, v in bn.items()}
    s_t, (out, moments) = self.variant(cell.apply)({'params': variables['params']['cell']},
                                                   s_prev, inputs, norm)
    assert moments is None
    expected, _ = np_rru_step(np.asarray(x[:, 2], np.float64), np.asarray(x[:, 1], np.float64),
                              np.asarray(s_prev, np.float64), _weights(variables['params']), bn,
                              branches, gate_input)
    chex.assert_trees_all_close(s_t, expected.astype(np.float32), atol=1e-5, rtol=0)
    chex.assert_trees_all_equal(out, s_t)


@pytest.mark.parametrize('train', [False, True])
@pytest.mark.parametrize('variant', list(VARIANTS))
def test_hoisted_scan_equals_the_numpy_loop_of_eq_1_to_5(variant, train):
  """The layer computes the S-independent block of the transition conv
  (W_m (X_t - X_{t-1}) for 'full', W_x X_t for 'od') for all steps before the
  scan; the result equals NumPy's per-step loop over the unsplit 1x1 conv of
  the whole Z_i, for every gate variant, in eval and train mode, to 1e-5."""
  branches, gate_input = VARIANTS[variant]
  layer, variables, x = _layer_and_variables(variant, t=5, seed=4)
  if train:
    s, _ = jax.jit(lambda v, x: layer.apply(v, x, train=True, mutable=['batch_stats']))(
        variables, x)
  else:
    s = jax.jit(layer.apply)(variables, x)
  np.testing.assert_array_equal(np.asarray(s[:, 0]), np.asarray(x[:, 0]))  # S_0 = X_0, exactly
  expected, _ = np_rru(np.asarray(x, np.float64), _weights(variables['params']),
                       _np_bn(variables), branches, gate_input,
                       stats='batch' if train else None)
  np.testing.assert_allclose(np.asarray(s), expected, atol=1e-5, rtol=0)


def test_bn_statistics_are_shared_across_time():
  """One set of transition-BN statistics (no time axis); a train step updates it once
  with the mean and (biased) variance over ALL time steps' gate inputs (NumPy), and an
  eval forward at another T uses the same statistics."""
  layer, variables, x = _layer_and_variables('full', t=4, seed=3)
  assert jax.tree.map(jnp.shape, variables['batch_stats']) == {
      'transition_bn': {'mean': (F,), 'var': (F,)}}
  assert 'batch_stats' not in jax.tree.map(jnp.shape, variables['params']['cell'])
  _, updates = jax.jit(lambda v, x: layer.apply(v, x, train=True, mutable=['batch_stats']))(
      variables, x)
  bn = _np_bn(variables)
  _, us = np_rru(np.asarray(x, np.float64), _weights(variables['params']), bn, stats='batch')
  u_all = np.stack(us, axis=1)  # (B, T - 1, H, W, F): every step's gate input to the BN
  expected_mean = 0.9 * bn['mean'] + 0.1 * u_all.mean(axis=(0, 1, 2, 3))
  expected_var = 0.9 * bn['var'] + 0.1 * u_all.var(axis=(0, 1, 2, 3))
  new = updates['batch_stats']['transition_bn']
  np.testing.assert_allclose(np.asarray(new['mean']), expected_mean, atol=1e-5, rtol=0)
  np.testing.assert_allclose(np.asarray(new['var']), expected_var, atol=1e-5, rtol=1e-5)
  # Not the statistics of any single step.
  for u in us:
    assert not np.allclose(np.asarray(new['mean']), 0.9 * bn['mean'] + 0.1 * u.mean((0, 1, 2)),
                           atol=1e-5)
  # Evaluation at another clip length uses the one set of statistics.
  longer = jax.random.normal(jax.random.key(9), (B, 6, H, W, C))
  expected, _ = np_rru(np.asarray(longer, np.float64), _weights(variables['params']), bn)
  got = jax.jit(layer.apply)(variables, longer)
  np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


def test_single_frame_clip_is_identity_and_builds_parameters():
  layer = rru_lib.RRU(transition_features=F, spatial_hidden=HIDDEN)
  x = jax.random.normal(jax.random.key(0), (B, 1, H, W, C))
  variables = jax.jit(layer.init)(jax.random.key(1), x)
  assert set(variables['params']['cell']) == {'transition_conv', 'spatial_fc1', 'spatial_fc2',
                                              'channel_fc'}
  np.testing.assert_array_equal(np.asarray(jax.jit(layer.apply)(variables, x)), np.asarray(x))


def test_bad_rru_options_are_refused_clearly():
  with pytest.raises(ValueError, match="gate_branches 'x'.*sc, s, c"):
    rru_lib.RRU(gate_branches='x').init(jax.random.key(0), jnp.zeros((1, 2, 2, 2, 3)))
  with pytest.raises(ValueError, match="gate_input 'raw'.*full, ad, od"):
    rru_lib.RRU(gate_input='raw').init(jax.random.key(0), jnp.zeros((1, 2, 2, 2, 3)))
  frames = jnp.zeros((1, 2, 64, 32, 3), jnp.uint8)
  with pytest.raises(ValueError, match="rru variant 'xx'.*full, s, c, ad, od, none"):
    rru_model.RRUNet(num_classes=3, backbone='resnet_tiny', rru='xx').init(
        jax.random.key(0), frames)
  with pytest.raises(ValueError, match="temporal head 'gru'.*stim, lstm, mean"):
    rru_model.RRUNet(num_classes=3, backbone='resnet_tiny', temporal='gru').init(
        jax.random.key(0), frames)
  with pytest.raises(ValueError, match="backbone 'vgg'.*inception_v3, resnet"):
    rru_model.RRUNet(num_classes=3, backbone='vgg').init(jax.random.key(0), frames)


# --- part-level triplet (eq. 10) -------------------------------------------------------------

def np_batch_hard(features, labels, margin):
  """Eq. 8 for one set of features: mean over anchors of
  [m + max_p D(a, p) - min_n D(a, n)]_+ with Euclidean D."""
  n = len(labels)
  losses_ = []
  for a in range(n):
    d = [np.sqrt(np.sum((features[a] - features[j]) ** 2)) for j in range(n)]
    pos = max(d[j] for j in range(n) if labels[j] == labels[a])
    neg = min(d[j] for j in range(n) if labels[j] != labels[a])
    losses_.append(max(0.0, margin + pos - neg))
  return np.mean(losses_)


def test_part_triplet_matches_numpy():
  """Eq. 10: (1 / NKH) sum over anchors and strips = batch-hard per strip, averaged."""
  rng = np.random.default_rng(0)
  parts = rng.normal(size=(8, 3, 4)).astype(np.float32)  # (B, strips, D)
  labels = np.array([0, 0, 1, 1, 2, 2, 3, 3], np.int32)
  expected = np.mean([np_batch_hard(parts[:, r].astype(np.float64), labels, 0.4)
                      for r in range(3)])
  got = losses.part_batch_hard_triplet(jnp.asarray(parts), jnp.asarray(labels), margin=0.4)
  np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-6)
  # The registered term takes the margin as an option (default 0.4: the paper's m).
  term = losses.LOSS_TERMS['part_triplet']
  np.testing.assert_allclose(float(term(parts, labels)), expected, rtol=1e-5, atol=1e-6)
  expected_1 = np.mean([np_batch_hard(parts[:, r].astype(np.float64), labels, 1.0)
                        for r in range(3)])
  np.testing.assert_allclose(float(term(parts, labels, margin=1.0)), expected_1, rtol=1e-5)
  with pytest.raises(ValueError, match="'part_triplet' needs model output 'part_features'"):
    losses.total_loss({'embedding': parts[:, 0]}, labels, {'part_triplet': 1.0})


# --- full-size shapes and parameter counts (eval_shape only) -----------------------------------

def _shapes(tree):
  return jax.tree.map(lambda a: a.shape, tree)


def _count(tree):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))


def _eval_shapes(model, frames_shape, train):
  frames = jax.ShapeDtypeStruct(frames_shape, jnp.uint8)
  variables = jax.eval_shape(lambda f: model.init(jax.random.key(0), f), frames)
  if train:
    out, _ = jax.eval_shape(lambda v, f: model.apply(
        v, f, train=True, mutable=['batch_stats'], rngs={'dropout': jax.random.key(1)}),
                            variables, frames)
  else:
    out = jax.eval_shape(lambda v, f: model.apply(v, f), variables, frames)
  return variables, out


def test_output_shapes_and_head_parameters_paper_setting():
  """Inception-v3 on 8 x 299 x 299 clips (the paper): Mixed_7c is 8 x 8 x 2048, so
  8 strips of 2048; the auxiliary classifier runs in train mode. Head sizes by hand."""
  n = 625
  model = rru_model.RRUNet(num_classes=n)
  variables, out = _eval_shapes(model, (2, 8, 299, 299, 3), train=True)
  assert _shapes(out) == {'embedding': (2, 256), 'triplet_features': (2, 256), 'logits': (2, n),
                          'part_features': (2, 8, 2048), 'aux_logits': [(2, n)]}
  out = jax.eval_shape(lambda v, f: model.apply(v, f), variables,
                       jax.ShapeDtypeStruct((2, 8, 299, 299, 3), jnp.uint8))
  assert 'aux_logits' not in out  # eval mode
  params = variables['params']
  c, f, hw = 2048, 256, 8 * 8
  rru = (2 * c * f + 2 * f  # transition 1x1 conv (no bias) + BN scale/bias
         + hw * 128 + 128 * hw  # spatial FCs (no bias)
         + f * c)  # channel FC
  assert _count(params['rru']) == rru == 1_589_760  # the official code's count
  stim = c * f + 2 * f + 27 * f * f + 2 * f  # 1x1x1 conv + BN, 3x3x3 conv + BN
  assert _count(params['stim']) == stim == 2_294_784
  classifier = f * 512 + 512 + 2 * 512 + 512 * n + n  # FC 512, BN, FC N
  assert _count(params['classifier']) == classifier
  assert _count(variables['batch_stats']['rru']) == 2 * f  # one mean and var, no time axis
  # Inception-v3 without its ImageNet fc, with an N-way auxiliary fc.
  assert _count(params['backbone']) == 27_161_264 - 2048 * 1000 - 1000 - 768 * 1000 - 1000 \
      + 768 * n + n


@pytest.mark.parametrize('backbone,strips', [('inception_v3', 6), ('resnet50', 16)])
def test_output_shapes_256x128(backbone, strips):
  """8 x 256 x 128 clips: Inception-v3 gives 6 x 2 maps (no auxiliary classifier:
  Mixed_6e is 14 x 6); ResNet-50 with last stride 1 gives 16 x 8."""
  model = rru_model.RRUNet(num_classes=10, backbone=backbone)
  variables, out = _eval_shapes(model, (2, 8, 256, 128, 3), train=True)
  assert _shapes(out) == {'embedding': (2, 256), 'triplet_features': (2, 256),
                          'logits': (2, 10), 'part_features': (2, strips, 2048)}
  if backbone == 'inception_v3':
    assert not model.uses_aux_classifier(256, 128) and model.uses_aux_classifier(299, 299)
  hw = {6: 6 * 2, 16: 16 * 8}[strips]
  assert _count(variables['params']['rru']) == 2 * 2048 * 256 + 2 * 256 + 2 * 128 * hw \
      + 256 * 2048


# --- tiny training forward, variants, configs --------------------------------------------------

def _tiny(**kwargs):
  args = dict(num_classes=4, backbone='resnet_tiny', transition_features=8, spatial_hidden=8,
              stim_features=8, lstm_features=8, classifier_hidden=8)
  args.update(kwargs)
  return rru_model.RRUNet(**args)


def test_tiny_forward_loss_and_finite_gradients():
  model = _tiny()
  frames = jax.random.randint(jax.random.key(0), (4, 3, 64, 32, 3), 0, 256).astype(jnp.uint8)
  labels = jnp.array([0, 0, 1, 1])
  variables = jax.jit(model.init)(jax.random.key(1), frames[:1])  # eager init is slow on CPU
  weights = {'ce': 1.0, 'triplet': 1.0, 'part_triplet': 1.0}
  options = {'triplet': {'margin': 0.4}, 'part_triplet': {'margin': 0.4}}

  def loss_fn(params):
    out, updates = model.apply({'params': params, 'batch_stats': variables['batch_stats']},
                               frames, train=True, mutable=['batch_stats'],
                               rngs={'dropout': jax.random.key(2)})
    total, terms = losses.total_loss(out, labels, weights, options)
    return total, (terms, out, updates)

  (total, (terms, out, updates)), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      variables['params'])
  assert out['part_features'].shape == (4, 4, 64)  # resnet_tiny: 4 x 2 maps of 64 channels
  assert np.isfinite(float(total)) and all(np.isfinite(float(v)) for v in terms.values())
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
  for name in ('transition_conv', 'spatial_fc1', 'spatial_fc2', 'channel_fc'):
    assert np.abs(np.asarray(grads['rru']['cell'][name]['kernel'])).max() > 0, name
  assert set(updates['batch_stats']) == {'backbone', 'rru', 'stim', 'classifier'}


# Table 1: every RRU variant with STIM, and the full RRU with each other temporal head.
TABLE1 = ([(rru, 'stim') for rru in rru_model.RRU_VARIANTS]
          + [('full', head) for head in rru_model.TEMPORAL_HEADS if head != 'stim']
          + [('none', 'lstm'), ('none', 'mean')])  # Baseline + LSTM, Baseline


@pytest.mark.parametrize('rru,temporal', TABLE1)
def test_every_table1_variant_builds(rru, temporal):
  model = _tiny(rru=rru, temporal=temporal)
  _, out = _eval_shapes(model, (2, 3, 64, 32, 3), train=True)
  width = {'stim': 8, 'lstm': 8, 'mean': 64}[temporal]
  assert out['embedding'].shape == (2, width) and out['logits'].shape == (2, 4)
  assert out['part_features'].shape == (2, 4, 64)


CONFIGS = ['rru_mars', 'rru_ilids_vid', 'rru_prid2011', 'rru_synthetic']


@pytest.mark.parametrize('name', CONFIGS)
def test_configs_load_and_build(name):
  module = importlib.import_module(f'experiments.configs.{name}')
  # Every synthetic variant loads; three of them (one per head) are also built.
  variants = ('full', 'rru_lstm', 'baseline') if name == 'rru_synthetic' else (None,)
  if name == 'rru_synthetic':
    for variant in module.VARIANTS:
      losses.check_loss_weights(module.get_config(variant).losses)
  for variant in variants:
    c = module.get_config(variant) if variant else module.get_config()
    losses.check_loss_weights(c.losses)
    model = setup.build_model(c, num_classes=7)
    frames = (2, c.clip_len, c.height, c.width, 3)
    _, out = _eval_shapes(model, frames, train=True)
    assert out['logits'].shape == (2, 7)
    if name != 'rru_synthetic':  # the paper's settings
      assert (c.height, c.width, c.clip_len) == (299, 299, 8)
      assert (c.num_identities, c.num_instances) == (10, 2)
      assert (losses.resolved_options(c.losses, 'triplet')['margin']
              == losses.resolved_options(c.losses, 'part_triplet')['margin'] == 0.4)
      assert c.optimizer == 'sgd' and c.nesterov and c.learning_rate == 0.01
      assert c.pretrained_lr_mult == 0.1 and c.weight_decay == 5e-4 and c.pretrained == ''
      assert losses.term_weights(c.losses) == {'ce': 1.0, 'aux_ce': 1.0, 'triplet': 1.0,
                                               'part_triplet': 1.0}
      assert len(out['aux_logits']) == 1 and out['aux_logits'][0].shape == (2, 7)
    else:
      assert (c.height, c.width, c.clip_len, c.train_sampler, c.num_train_steps) == (
          128, 64, 8, 'consecutive', 500)
  assert get_model('rru', num_classes=3).__class__ is rru_model.RRUNet


def test_unknown_synthetic_variant_is_refused():
  from experiments.configs import rru_synthetic
  with pytest.raises(ValueError, match="variant 'x'.*full, no_lp, stim_only"):
    rru_synthetic.get_config('x')
  assert isinstance(rru_synthetic.get_config(), ml_collections.ConfigDict)
