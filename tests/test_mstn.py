"""MSTN (Wang, He, Gao, Huang; [MSTN] in docs/references.md): the multi-scale
extractor and the temporal head against a NumPy transcription of sections
3.1-3.2 (on the model's own backbone stages and CLSTM outputs); full-size
shapes and the parameter count by hand (jax.eval_shape only); the paper's
objective with finite gradients; Table 1's variants; any T at eval; the
configs."""

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreid import losses
from jaxreid.models import get_model
from jaxreid.models import mstn

TINY = dict(backbone='resnet_tiny', backbone_width=8, scale_features=4, cut_features=6,
            lstm_features=6)


def _frames(b=2, t=2, h=32, w=16, seed=1):
  return jax.random.randint(jax.random.key(seed), (b, t, h, w, 3), 0, 256).astype(jnp.uint8)


def _count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# --- NumPy transcriptions ----------------------------------------------------------


def _np_block_mean(x, fh, fw):
  """Average pooling with window = stride = (fh, fw): x (N, H, W, C)."""
  n, h, w, c = x.shape
  return x.reshape(n, h // fh, fh, w // fw, fw, c).mean(axis=(2, 4))


def _np_conv1x1(x, p):
  return np.einsum('...c,cf->...f', x, np.asarray(p['kernel'], np.float64)[0, 0]) + np.asarray(
      p['bias'], np.float64)


def _np_temporal_conv_same(s, p):
  """1D convolution over T with zero 'SAME' padding: s (B, T, F), kernel (k, F, F')."""
  kernel, bias = np.asarray(p['kernel'], np.float64), np.asarray(p['bias'], np.float64)
  k, t = kernel.shape[0], s.shape[1]
  sp = np.pad(s, ((0, 0), (k // 2, k // 2), (0, 0)))
  return np.stack([sum(sp[:, j + a] @ kernel[a] for a in range(k)) for j in range(t)], 1) + bias


# --- pieces -------------------------------------------------------------------------


def test_to_grid_pools_repeats_and_falls_back():
  x = np.random.default_rng(0).normal(size=(2, 8, 4, 3)).astype(np.float32)
  np.testing.assert_allclose(mstn.to_grid(jnp.asarray(x), (2, 1)), _np_block_mean(x, 4, 4),
                             rtol=1e-5, atol=1e-6)  # float32 means of 16: XLA sums in its own order
  up = np.asarray(mstn.to_grid(jnp.asarray(x), (16, 8)))
  np.testing.assert_array_equal(up, x.repeat(2, axis=1).repeat(2, axis=2))
  assert mstn.to_grid(jnp.asarray(x), (16, 8), 'bilinear').shape == (2, 16, 8, 3)
  assert mstn.to_grid(jnp.asarray(x), (3, 3)).shape == (2, 3, 3, 3)  # no integer ratio
  assert mstn.to_grid(jnp.asarray(x), (8, 4)) is not None


def test_multi_scale_and_temporal_head_match_sections_3_1_and_3_2():
  """f1, Loss_c's logits, the temporal feature and the final feature from the
  model's own C2..C5 and CLSTM outputs, by the paper's recipe in NumPy."""
  model = get_model('mstn', num_classes=5, **TINY)
  frames = _frames()  # 32 x 16: C2..C5 are 8x4, 4x2, 2x1, 1x1
  variables = model.init(jax.random.key(0), frames)
  p = variables['params']
  names = ('backbone', 'clstm1', 'clstm2', 'cut')
  out, state = model.apply(variables, frames, mutable=['intermediates'],
                           capture_intermediates=lambda m, _: m.name in names)
  inter = state['intermediates']
  stages = {k: np.asarray(v, np.float64) for k, v in inter['backbone']['__call__'][0].items()}
  b, t = 2, 2
  # Section 3.1: 1x1 convs, C2 / C3 average-pooled and C5 upsampled to C4's grid (2 x 1).
  assert stages['C4'].shape[1:3] == (2, 1) and stages['C5'].shape[1:3] == (1, 1)
  c2 = _np_block_mean(_np_conv1x1(stages['C2'], p['reduce_c2']), 4, 4)
  c3 = _np_block_mean(_np_conv1x1(stages['C3'], p['reduce_c3']), 2, 2)
  c4 = _np_conv1x1(stages['C4'], p['reduce_c4'])
  c5 = _np_conv1x1(stages['C5'], p['reduce_c5']).repeat(2, axis=1)  # nearest, x2 in height
  f1 = np.concatenate([c2, c3, c4, c5], -1)  # (B*T, 2, 1, 16)
  f1_pooled = f1.mean(axis=(1, 2)).reshape(b, t, -1).mean(axis=1)  # (B, 16)
  np.testing.assert_allclose(out['f1_features'], f1_pooled, rtol=1e-4, atol=1e-5)
  w = p['f1_classifier']
  np.testing.assert_allclose(out['aux_logits'][0], f1_pooled @ np.asarray(w['kernel']) + w['bias'],
                             rtol=1e-4, atol=1e-5)
  # Section 3.2: cut, two CLSTM blocks fed in sequence, residual add, channel max, 1D conv.
  cut = _np_conv1x1(f1, p['cut'])
  np.testing.assert_allclose(inter['cut']['__call__'][0], cut, rtol=1e-4, atol=1e-5)
  h1 = np.asarray(inter['clstm1']['__call__'][0], np.float64)  # (B, T, 2, 1, 6)
  h2 = np.asarray(inter['clstm2']['__call__'][0], np.float64)
  block1 = mstn.convlstm.ConvLSTM(6)
  np.testing.assert_allclose(block1.apply({'params': p['clstm1']}, jnp.asarray(
      cut.reshape(b, t, 2, 1, 6), jnp.float32)), h1, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(block1.apply({'params': p['clstm2']}, jnp.asarray(h1, jnp.float32)),
                             h2, rtol=1e-4, atol=1e-5)
  s = (h1 + h2).max(axis=(2, 3))  # (B, T, 6)
  temporal = _np_temporal_conv_same(s, p['temporal_conv']).mean(axis=1)  # (B, 6)
  np.testing.assert_allclose(out['temporal_features'], temporal, rtol=1e-4, atol=1e-5)
  final = np.concatenate([temporal, f1_pooled], -1)
  np.testing.assert_allclose(out['embedding'], final, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(out['triplet_features'], out['embedding'])
  w = p['classifier']
  np.testing.assert_allclose(out['logits'], final @ np.asarray(w['kernel']) + w['bias'],
                             rtol=1e-4, atol=1e-5)


# --- full size ------------------------------------------------------------------------


def _resnet50_params_by_hand():
  """torchvision ResNet-50 without fc: convs + BN scale/shift, from layer sizes."""
  total = 7 * 7 * 3 * 64 + 2 * 64  # stem
  in_ch = 64
  for planes, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
    for j in range(blocks):
      total += in_ch * planes + 2 * planes  # 1x1 reduce
      total += 9 * planes * planes + 2 * planes  # 3x3
      total += planes * 4 * planes + 2 * 4 * planes  # 1x1 expand
      if j == 0:
        total += in_ch * 4 * planes + 2 * 4 * planes  # projection shortcut
      in_ch = 4 * planes
  return total


def test_full_size_shapes_and_parameter_count():
  """ResNet-50 on 8 x 256 x 128 clips: C4's 16 x 8 grid, f1 of 4 x 256, cut and
  CLSTM at 512, final 512 + 1024; parameters counted by hand."""
  n = 625
  model = get_model('mstn', num_classes=n)
  frames = jnp.zeros((2, 8, 256, 128, 3), jnp.uint8)
  out, variables = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), frames))
  shapes = jax.tree.map(lambda x: x.shape, out)
  assert shapes == {'f1_features': (2, 1024), 'aux_logits': [(2, n)],
                    'temporal_features': (2, 512), 'triplet_features': (2, 1536),
                    'embedding': (2, 1536), 'logits': (2, n)}
  p = variables['params']
  assert p['clstm1']['cell']['gates']['kernel'].shape == (3, 3, 1024, 2048)  # [x, h] -> i,f,o,g
  assert p['temporal_conv']['kernel'].shape == (3, 512, 512)
  backbone = _resnet50_params_by_hand()
  assert backbone == 23_508_032 == _count(p['backbone'])  # torchvision's 25,557,032 minus fc
  reduce = sum((c + 1) * 256 for c in (256, 512, 1024, 2048))
  cut = (1024 + 1) * 512
  clstm = 3 * 3 * (512 + 512) * 4 * 512 + 4 * 512
  temporal = 3 * 512 * 512 + 512
  heads = (1024 + 1) * n + (1536 + 1) * n
  expected = backbone + reduce + cut + 2 * clstm + temporal + heads
  print(f'MSTN-ResNet-50 parameters: {_count(p):,} (by hand {expected:,}; CLSTM blocks '
        f'{2 * clstm:,})')
  assert _count(p) == expected == 65_157_922


def test_shapes_at_299_by_299():
  """A 299 x 299 clip (the RRU paper's input): C4 is 19 x 19, C2 / C3 / C5 are
  resized onto it; the named outputs keep their widths."""
  model = get_model('mstn', num_classes=10)
  frames = jnp.zeros((1, 8, 299, 299, 3), jnp.uint8)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), frames))[0]
  assert jax.tree.map(lambda x: x.shape, out) == {
      'f1_features': (1, 1024), 'aux_logits': [(1, 10)], 'temporal_features': (1, 512),
      'triplet_features': (1, 1536), 'embedding': (1, 1536), 'logits': (1, 10)}


# --- objective, variants, any T --------------------------------------------------------


def test_paper_objective_has_finite_gradients_and_loss_c_trains_only_the_extractor():
  from experiments.configs import mstn_synthetic  # pylint: disable=g-import-not-at-top
  c = mstn_synthetic.get_config('full')
  assert losses.term_weights(c.losses) == {'aux_ce': 1.0, 'triplet': 1.0, 'ce': 1.0}
  model = get_model('mstn', num_classes=4, **TINY)
  frames = _frames(b=4, t=2)
  labels = jnp.array([0, 0, 1, 1])
  variables = model.init(jax.random.key(0), frames)

  def loss(params, weights):
    out, _ = model.apply({**variables, 'params': params}, frames, train=True,
                         mutable=['batch_stats'])
    return losses.total_loss(out, labels, weights, losses.term_options(c.losses))

  @jax.jit
  def both(params):  # one compile: the paper's objective, and Loss_c alone
    paper = jax.value_and_grad(lambda q: loss(q, losses.term_weights(c.losses)),
                               has_aux=True)(params)
    return paper, jax.grad(lambda q: loss(q, {'aux_ce': 1.0})[0])(params)

  ((total, terms), grads), aux = both(variables['params'])
  assert set(terms) == {'aux_ce', 'triplet', 'ce'}
  np.testing.assert_allclose(total, sum(terms.values()), rtol=1e-6)
  chex.assert_tree_all_finite((total, grads))
  for name in ('backbone', 'clstm1', 'clstm2', 'temporal_conv', 'f1_classifier', 'classifier'):
    assert float(optax_norm(grads[name])) > 0, name
  # Loss_c (eq. 2) reaches the extractor through f1 only, not the temporal part.
  assert float(optax_norm(aux['backbone'])) > 0 and float(optax_norm(aux['reduce_c2'])) > 0
  for name in ('cut', 'clstm1', 'clstm2', 'temporal_conv', 'classifier'):
    assert float(optax_norm(aux[name])) == 0.0, name


def optax_norm(tree):
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


@pytest.mark.parametrize('recurrence,dim', [('none', 16), ('lstm', 22), ('clstm', 22)])
def test_table1_variants_build_and_take_any_t(recurrence, dim):
  model = get_model('mstn', num_classes=3, recurrence=recurrence, **TINY)
  out, variables = model.init_with_output(jax.random.key(0), _frames())
  for t in (1, 3):  # any T at eval with parameters made at T = 2
    out = model.apply(variables, _frames(t=t, seed=t))
    chex.assert_shape(out['embedding'], (2, dim))
    chex.assert_tree_all_finite(out)
  assert ('temporal_features' in out) == (recurrence != 'none')
  params = variables['params']
  assert ('clstm1' in params) == (recurrence == 'clstm') and ('lstm1' in params) == (
      recurrence == 'lstm')
  if recurrence == 'lstm':  # nn.OptimizedLSTMCell on the pooled 6-d cut features
    assert params['lstm1']['cell']['ii']['kernel'].shape == (6, 6)


def test_options_change_what_they_say():
  frames = _frames(t=2)
  base = get_model('mstn', num_classes=3, **TINY)
  variables = base.init(jax.random.key(0), frames)
  ref = base.apply(variables, frames)['embedding']
  no_res = get_model('mstn', num_classes=3, residual=False, **TINY).apply(variables, frames)
  assert not np.allclose(no_res['embedding'], ref)
  np.testing.assert_allclose(no_res['f1_features'], ref[:, 6:], rtol=1e-6)  # f1 untouched
  peep = get_model('mstn', num_classes=3, peephole=True, **TINY)
  pv = peep.init(jax.random.key(0), frames)
  assert pv['params']['clstm1']['cell']['w_co'].shape == (2, 1, 6)  # C4's grid at 32 x 16
  np.testing.assert_allclose(peep.apply(pv, frames)['embedding'], ref, rtol=1e-5, atol=1e-6)
  bn = get_model('mstn', num_classes=3, bnneck=True, last_stride=1, upsampling='bilinear',
                 **TINY)
  out, bv = jax.eval_shape(lambda: bn.init_with_output(jax.random.key(0), frames))
  assert 'bnneck' in bv['params'] and out['embedding'].shape == (2, 22)
  no_head = get_model('mstn', num_classes=0, **TINY)
  assert 'logits' not in jax.eval_shape(lambda: no_head.apply(variables, frames))
  for bad, match in [(dict(recurrence='gru'), 'valid choices: none, lstm, clstm'),
                     (dict(upsampling='cubic'), 'valid choices: nearest, bilinear')]:
    with pytest.raises(ValueError, match=match):
      get_model('mstn', num_classes=3, **TINY, **bad).init(jax.random.key(0), frames)


# --- configs ---------------------------------------------------------------------------

_CONFIGS = [('mstn_mars', None), ('mstn_ilids_vid', None), ('mstn_prid2011', None),
            ('mstn_synthetic', 'cnn'), ('mstn_synthetic', 'cnn_lstm'),
            ('mstn_synthetic', 'cnn_clstm'), ('mstn_synthetic', 'full'),
            ('mstn_synthetic', 'two_stage')]


@pytest.mark.parametrize('name,variant', _CONFIGS)
def test_configs_load_and_build(name, variant):
  from jaxreid.models import MODELS  # pylint: disable=g-import-not-at-top
  module = importlib.import_module(f'experiments.configs.{name}')
  c = module.get_config(variant) if variant else module.get_config()
  assert c.model_name == 'mstn' and 'mstn' in MODELS and 'pretrained' in c
  losses.check_loss_weights(dict(c.losses))
  model = get_model(c.model_name, num_classes=3, **c.model)
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((1, 2, 64, 32, 3), jnp.uint8))[0])
  assert out['logits'].shape == (1, 3)
  if name == 'mstn_synthetic':
    assert (c.model.backbone, c.model.backbone_width, c.height, c.width, c.clip_len,
            c.train_sampler) == ('resnet18', 16, 128, 64, 8, 'consecutive')
    assert (c.num_identities, c.num_instances, c.num_train_steps, c.optimizer,
            c.learning_rate) == (8, 4, 500, 'adam', 1e-3)
    assert ('triplet' in c.losses) == (variant in ('full', 'two_stage'))
    assert c.first_stage.steps == (250 if variant == 'two_stage' else 0)
  else:
    assert (c.clip_len, c.num_instances, c.height, c.width) == (8, 4, 256, 128)
    assert losses.term_weights(c.losses) == {'aux_ce': 1.0, 'triplet': 1.0, 'ce': 1.0}
    assert c.model.backbone == 'resnet50' and c.model.cut_features == 512
    assert c.all_splits == (name != 'mstn_mars')
  with pytest.raises(ValueError, match='valid choices: cnn, cnn_lstm, cnn_clstm, full, two_stage'):
    importlib.import_module('experiments.configs.mstn_synthetic').get_config('lstm')
