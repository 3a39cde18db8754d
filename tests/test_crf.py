"""CRF ([CRF] in docs/references.md): eq. 7's siamese loss on hand-computed pairs, the recurrent
layer against a NumPy loop over eq. 3-4, the CNN's shapes (McLaughlin's
32 x 10 x 8 maps at 56 x 40), the pooling and fusion of eq. 2, 5, 6 against
NumPy, input colour spaces and normalizations, body-part regions, Table 3's
branches; and a tiny end-to-end run (flow + pairs, full/upper/lower models)
followed by the eq. 10 fusion script."""

import json
import os
import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxreid import losses
from jaxreid.models import MODELS, crf

_RNGS = {'params': jax.random.key(0), 'dropout': jax.random.key(1)}


# --- eq. 7 --------------------------------------------------------------------

def test_contrastive_loss_matches_eq7_by_hand():
  x = np.array([[0, 0], [3, 4],  # positive, d = 5: 25 / 2
                [0, 0], [1, 0],  # negative, d = 1: (2 - 1)^2 / 2
                [0, 0], [0, 3],  # negative, d = 3 >= alpha: 0
                [1, 1], [1, 1]], np.float32)  # positive, d = 0: 0
  labels = np.array([4, 4, 1, 2, 1, 3, 7, 7])
  loss = losses.contrastive_loss(jnp.asarray(x), jnp.asarray(labels), margin=2.0)
  assert float(loss) == pytest.approx((12.5 + 0.5 + 0 + 0) / 4)
  hinge = losses.contrastive_loss(jnp.asarray(x), jnp.asarray(labels), 2.0, form='hinge')
  assert float(hinge) == pytest.approx((5 + 1 + 0 + 0) / 4)


def test_contrastive_loss_matches_numpy_and_has_finite_gradients():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(10, 6)).astype(np.float32)
  x[3] = x[2]  # a negative pair at distance 0
  labels = np.array([0, 0, 1, 2, 3, 3, 4, 5, 6, 6])
  expected = []
  for i in range(0, 10, 2):
    d = np.linalg.norm(x[i] - x[i + 1])
    expected.append(0.5 * d**2 if labels[i] == labels[i + 1] else 0.5 * max(1.5 - d, 0)**2)
  loss = losses.contrastive_loss(jnp.asarray(x), jnp.asarray(labels), margin=1.5)
  assert float(loss) == pytest.approx(np.mean(expected), rel=1e-5)
  grad = jax.grad(lambda f: losses.contrastive_loss(f, jnp.asarray(labels), 1.5))(jnp.asarray(x))
  assert np.isfinite(np.asarray(grad)).all()
  with pytest.raises(ValueError, match='pairs of rows'):
    losses.contrastive_loss(jnp.zeros((3, 2)), jnp.zeros(3, jnp.int32))
  with pytest.raises(ValueError, match="Unknown contrastive_form 'cube'"):
    losses.contrastive_loss(jnp.zeros((2, 2)), jnp.zeros(2, jnp.int32), form='cube')


def test_eq9_objective_from_config():
  """contrastive + 2 x mean CE = L_sia + L_sof(x_i) + L_sof(x_j) per pair."""
  rng = np.random.default_rng(1)
  feats = rng.normal(size=(4, 3)).astype(np.float32)
  logits = rng.normal(size=(4, 5)).astype(np.float32)
  labels = np.array([2, 2, 0, 4])
  outputs = {'pair_features': jnp.asarray(feats), 'embedding': jnp.zeros((4, 3)),
             'logits': jnp.asarray(logits)}
  total, terms = losses.total_loss(outputs, jnp.asarray(labels), {'contrastive': 1.0, 'ce': 2.0},
                                   {'contrastive': {'margin': 2.0}})
  log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
  sof = -log_softmax[np.arange(4), labels]  # per sequence
  sia = [0.5 * np.sum((feats[0] - feats[1])**2),
         0.5 * max(2.0 - np.linalg.norm(feats[2] - feats[3]), 0)**2]
  per_pair = [sia[k] + sof[2 * k] + sof[2 * k + 1] for k in range(2)]  # eq. 9
  assert float(total) == pytest.approx(np.mean(per_pair), rel=1e-5)
  assert set(terms) == {'contrastive', 'ce'}


# --- eq. 3-4 --------------------------------------------------------------------

def _numpy_rnn(f, w_i, w_s, act):
  """Eq. 3-4 as a Python loop from r_0 = 0: o_t = W_i f_t + W_s r_{t-1}, r_t = act(o_t)."""
  r = np.zeros((f.shape[0], w_s.shape[1]))
  outs = []
  for t in range(f.shape[1]):
    o = (f[:, t] @ w_i if w_i is not None else f[:, t]) + r @ w_s
    r = act(o)
    outs.append(o)
  return np.stack(outs, axis=1)


@pytest.mark.parametrize('activation, projection', [('relu', True), ('tanh', True),
                                                    ('tanh', False)])
def test_recurrent_layer_matches_a_numpy_loop(activation, projection):
  rng = np.random.default_rng(2)
  f = rng.normal(size=(3, 6, 4)).astype(np.float32)
  layer = crf.RecurrentLayer(feature_dim=4, activation=activation, input_projection=projection,
                             recurrent_dropout=0.5)
  params = layer.init(_RNGS, jnp.asarray(f))['params']['cell']
  o = layer.apply({'params': {'cell': params}}, jnp.asarray(f))  # eval: no dropout
  act = {'relu': lambda v: np.maximum(v, 0), 'tanh': np.tanh}[activation]
  w_i = np.asarray(params['W_i']['kernel']) if projection else None
  expected = _numpy_rnn(f, w_i, np.asarray(params['W_s']['kernel']), act)
  np.testing.assert_allclose(np.asarray(o), expected, rtol=1e-5, atol=1e-5)
  assert set(params) == ({'W_i', 'W_s'} if projection else {'W_s'})  # shared over time


# --- CNN and the whole model ---------------------------------------------------

@pytest.mark.parametrize('height, width, padding, flat', [
    (56, 40, 4, 32 * 10 * 8),  # McLaughlin: 5x56x40 -> ... -> 32x10x8 = 2560
    (64, 48, 4, 32 * 11 * 9),  # 68x52 -> 34x26 -> 38x30 -> 19x15 -> 23x19 -> 11x9
    (64, 32, 2, 32 * 8 * 4)])  # 'same' padding: halved three times
def test_cnn_shapes(height, width, padding, flat):
  cnn = crf.FrameCNN(conv_padding=padding)
  x = jax.ShapeDtypeStruct((6, height, width, 5), jnp.float32)
  variables = jax.eval_shape(lambda: cnn.init(_RNGS, jnp.zeros(x.shape)))
  assert variables['params']['fc']['kernel'].shape == (flat, 128)
  assert [variables['params'][f'conv{i}']['kernel'].shape for i in (1, 2, 3)] == [
      (5, 5, 5, 16), (5, 5, 16, 32), (5, 5, 32, 32)]
  out = jax.eval_shape(lambda v: cnn.apply(v, jnp.zeros(x.shape)), variables)
  assert out.shape == (6, 128)


def test_full_size_model_shapes():
  model = MODELS['crf'](num_classes=150)
  frames = jnp.zeros((2, 16, 64, 48, 3), jnp.uint8)
  flow = jnp.zeros((2, 16, 64, 48, 2), jnp.float32)
  variables = jax.eval_shape(lambda: model.init(_RNGS, frames, flow))
  out = jax.eval_shape(lambda v: model.apply(v, frames, flow, train=True,
                                             rngs={'dropout': jax.random.key(0)}), variables)
  assert out['embedding'].shape == out['pair_features'].shape == (2, 128)
  assert out['logits'].shape == (2, 150)


def _tiny(**kw):
  args = dict(num_classes=5, filters=(3, 4, 4), feature_dim=6, conv_padding=2)
  args.update(kw)
  return crf.CRF(**args)


def _clip(b=2, t=3, h=16, w=8, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.integers(0, 256, (b, t, h, w, 3)).astype(np.uint8),
          rng.normal(size=(b, t, h, w, 2)).astype(np.float32))


def _numpy_inputs(frames, flow):
  """YUV (BT.601) of [0, 1] RGB + flow, each frame's channels standardized."""
  rgb = frames.astype(np.float64) / 255.0
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  yuv = np.stack([0.299 * r + 0.587 * g + 0.114 * b,
                  -0.14713 * r - 0.28886 * g + 0.436 * b,
                  0.615 * r - 0.51499 * g - 0.10001 * b], axis=-1)
  x = np.concatenate([yuv, flow], axis=-1)
  x = x.reshape((-1,) + x.shape[2:])  # (B*T, H, W, 5)
  mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
  return ((x - mean) / np.sqrt(var + 1e-6)).astype(np.float32)


def test_pooling_and_fusion_match_eq_2_5_6():
  frames, flow = _clip()
  model = _tiny()
  variables = model.init(_RNGS, frames, flow)
  params = variables['params']
  out, state = model.apply(variables, frames, flow,
                           capture_intermediates=lambda mdl, _: mdl.name in ('cnn', 'rnn'),
                           mutable=['intermediates'])
  captured = state['intermediates']
  # f_t: the CNN on the NumPy-prepared inputs (YUV + flow, standardized).
  cnn = crf.FrameCNN(filters=(3, 4, 4), feature_dim=6, conv_padding=2)
  f = np.asarray(cnn.apply({'params': params['cnn']}, _numpy_inputs(frames, flow))).reshape(
      2, 3, 6)
  np.testing.assert_allclose(np.asarray(captured['cnn']['__call__'][0]).reshape(2, 3, 6), f,
                             rtol=1e-4, atol=1e-5)
  x_c = f.mean(axis=1)  # eq. 2
  # o_t from the NumPy loop of eq. 3-4 on f; x_R = mean_t o_t (eq. 5).
  cell = params['rnn']['cell']
  o = _numpy_rnn(f, np.asarray(cell['W_i']['kernel']), np.asarray(cell['W_s']['kernel']),
                 lambda v: np.maximum(v, 0))
  np.testing.assert_allclose(np.asarray(captured['rnn']['__call__'][0]), o, rtol=1e-4,
                             atol=1e-5)
  x_r = o.mean(axis=1)
  x_f = x_c + x_r  # eq. 6
  np.testing.assert_allclose(np.asarray(out['embedding']), x_f, rtol=1e-4, atol=1e-5)
  # The siamese loss (eq. 7) and the softmax (eq. 8) see x_F.
  np.testing.assert_array_equal(np.asarray(out['pair_features']), np.asarray(out['embedding']))
  k = params['classifier']
  np.testing.assert_allclose(np.asarray(out['logits']),
                             x_f @ np.asarray(k['kernel']) + np.asarray(k['bias']),
                             rtol=1e-4, atol=1e-5)
  # Reading x_C out of the same trained network (Table 3's CNN row).
  x_c_model = _tiny(feature='cnn').apply(variables, frames, flow)['embedding']
  np.testing.assert_allclose(np.asarray(x_c_model), x_c, rtol=1e-4, atol=1e-5)


def test_yuv_and_normalizations():
  rgb = jnp.array([[1.0, 0, 0], [1.0, 1.0, 1.0], [0, 0, 0]])
  np.testing.assert_allclose(np.asarray(crf.rgb_to_yuv(rgb)),
                             [[0.299, -0.14713, 0.615], [1.0, 0.0, 0.0], [0, 0, 0]], atol=1e-4)
  x = np.random.default_rng(3).normal(2.0, 3.0, size=(4, 6, 5, 5)).astype(np.float32)
  out = np.asarray(crf.normalize_per_frame(jnp.asarray(x), 'frame'))
  np.testing.assert_allclose(out.mean(axis=(1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(out.std(axis=(1, 2)), 1, atol=1e-4)
  # McLaughlin: (x - m) / sqrt(sqrt(var)) per channel, then minus the frame's mean.
  m = x.mean(axis=(1, 2), keepdims=True)
  y = (x - m) / np.sqrt(np.sqrt(x.var(axis=(1, 2), keepdims=True)))
  y = y - y.mean(axis=(1, 2, 3), keepdims=True)
  np.testing.assert_allclose(np.asarray(crf.normalize_per_frame(jnp.asarray(x), 'mclaughlin')),
                             y, rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(crf.normalize_per_frame(jnp.asarray(x), 'none')), x)


@pytest.mark.parametrize('region, changed_rows', [('upper', slice(8, 16)),
                                                  ('lower', slice(0, 8))])
def test_body_part_models_see_only_their_half(region, changed_rows):
  frames, flow = _clip()
  model = _tiny(region=region)
  variables = model.init(_RNGS, frames, flow)
  other = frames.copy()
  other[:, :, changed_rows] = 255 - other[:, :, changed_rows]
  a = model.apply(variables, frames, flow)['embedding']
  b = model.apply(variables, other, flow)['embedding']
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  full = _tiny().init(_RNGS, frames, flow)['params']['cnn']['fc']['kernel'].shape[0]
  assert variables['params']['cnn']['fc']['kernel'].shape[0] * 2 == full  # half the rows


def test_table3_branches_and_options():
  frames, flow = _clip()
  cnn_only = _tiny(branches='cnn').init(_RNGS, frames, flow)['params']
  assert 'rnn' not in cnn_only
  rnn_only = _tiny(branches='rnn')
  out = rnn_only.apply(rnn_only.init(_RNGS, frames, flow), frames, flow)
  assert out['embedding'].shape == (2, 6)
  with_aux = _tiny(branch_classifiers=True)
  out = with_aux.apply(with_aux.init(_RNGS, frames, flow), frames, flow)
  assert [a.shape for a in out['aux_logits']] == [(2, 5), (2, 5)]
  no_flow = _tiny(use_flow=False, color='rgb')
  assert no_flow.init(_RNGS, frames)['params']['cnn']['conv1']['kernel'].shape[2] == 3
  for kwargs, message in [(dict(), 'needs the optical flow input'),
                          (dict(color='lab'), "Unknown CRF color 'lab'"),
                          (dict(region='middle'), "Unknown CRF region 'middle'"),
                          (dict(branches='lstm'), "Unknown CRF branches 'lstm'"),
                          (dict(activation='gelu'), "Unknown CRF activation 'gelu'"),
                          (dict(branches='cnn', feature='rnn'), 'needs branches=cnn_rnn')]:
    with pytest.raises(ValueError, match=message):
      _tiny(**kwargs).init(_RNGS, frames)


# --- configs -------------------------------------------------------------------

def test_configs():
  from experiments import durations
  from experiments.configs import crf_ilids_vid, crf_prid2011, crf_synthetic
  ilids, prid = crf_ilids_vid.get_config(), crf_prid2011.get_config()
  for c in (ilids, prid):
    assert c.model_name == 'crf' and c.use_flow and c.model.use_flow
    assert c.batch_sampler == 'pairs' and 2 * c.num_pairs == c.num_identities * c.num_instances
    assert c.clip_len == c.eval.clip_len == 16 and (c.height, c.width) == (64, 48)
    assert c.all_splits and set(c.losses) <= set(losses.LOSS_TERMS)
    assert losses.resolved_options(c.losses, 'contrastive')['margin'] == 2.0
  # McLaughlin's 500 epochs of 2 x N_train pairs, 2 pairs per step.
  for c, train_ids in ((ilids, 150), (prid, 89)):  # the datasets' training identities
    durations.resolve(c, durations.steps_per_epoch(c, types.SimpleNamespace(
        num_train_ids=train_ids)))
  assert ilids.num_train_steps == 500 * 150 and prid.num_train_steps == 500 * 89
  for variant in crf_synthetic.VARIANTS:
    c = crf_synthetic.get_config(variant)
    assert c.model.branches == variant and c.dataset == 'synthetic_video_reid'
    MODELS[c.model_name](num_classes=3, **c.model)  # every key is a CRF attribute
  with pytest.raises(ValueError, match="Unknown crf_synthetic variant 'lstm'"):
    crf_synthetic.get_config('lstm')


# --- end to end ----------------------------------------------------------------

@pytest.mark.slow
def test_tiny_train_eval_and_fusion(tmp_path, tiny_config):
  """Trains tiny full / upper / lower CRF models on flow + pair batches (the
  first also evaluated from its checkpoint with flip TTA), then fuses them."""
  from experiments import crf_fusion, evaluate, train
  c = tiny_config
  c.use_flow = True
  c.batch_sampler, c.num_pairs = 'pairs', 4
  c.num_identities, c.num_instances = 4, 2
  c.train_sampler = 'consecutive'
  c.model_name = 'crf'
  c.model = ml_collections.ConfigDict(dict(filters=(4, 4, 4), feature_dim=8, conv_padding=2,
                                           region='full'))
  c.losses = ml_collections.ConfigDict({'contrastive': {'weight': 1.0, 'margin': 2.0},
                                        'ce': {'weight': 2.0}})
  workdirs = {r: str(tmp_path / r) for r in ('full', 'upper', 'lower')}
  trained = {}
  for region, workdir in workdirs.items():
    c.model.region = region
    trained[region] = results = train.train_and_evaluate(c, workdir)
    assert 0.0 <= results['rank1'] <= 1.0 and results['step'] == 6
  c.model.region = 'full'
  c.eval.flip = True  # mirrors flow too (inference.mirror_inputs)
  assert 0.0 <= evaluate.evaluate(c, workdirs['full'])['rank1'] <= 1.0
  c.eval.flip = False
  out = str(tmp_path / 'fusion')
  fused = crf_fusion.fusion_experiment(c, out, workdirs, steps=20)
  with open(os.path.join(out, 'fusion_results.json')) as f:
    saved = json.load(f)
  assert set(saved['single']) == {'full', 'upper', 'lower'}
  for fusion in ('sum', 'concat'):
    assert set(saved[fusion]['weights']) == {'W_u', 'W_l', 'W_g'}
    assert 0.0 <= saved[fusion]['rank1'] <= 1.0
    assert saved[fusion]['fit_loss'][1] <= saved[fusion]['fit_loss'][0] + 1e-6
  # The fusion's single-model figure is the trained model's own evaluation
  # (without flip; the flip evaluation above rewrote eval_results.json).
  assert fused['single']['full']['rank1'] == pytest.approx(trained['full']['rank1'])
