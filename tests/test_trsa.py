"""TRSA (Wang & Zhao; [TRSA] in docs/references.md): the parameter-free spatial
attention (eq. 1-3), Reg (eq. 4) and the focal loss (eq. 8) against NumPy
transcriptions written from the paper; the model's outputs (full size by
jax.eval_shape only); its configs."""

import importlib
import types

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from jaxreid import losses
from jaxreid.layers import spatial_attention
from jaxreid.models import get_model

# --- NumPy transcriptions of the paper's equations (float64, loops) ----------


def _np_attention(f):
  """Eq. 1-2 for one map f (H, W, C): R = channel sum, softmax over H x W."""
  h, w, _ = f.shape
  r = np.zeros((h, w))
  for i in range(h):
    for j in range(w):
      r[i, j] = np.sum(f[i, j, :])
  e = np.exp(r - r.max())  # the max cancels in the ratio
  return e / e.sum()


def _np_reg(alpha):
  """Eq. 4 for one clip alpha (N, H, W): sum_ij (1 - sum_n alpha_n(i,j))^2."""
  n_frames, h, w = alpha.shape
  reg = 0.0
  for i in range(h):
    for j in range(w):
      s = 0.0
      for n in range(n_frames):
        s += alpha[n, i, j]
      reg += (1.0 - s) ** 2
  return reg


def _np_focal_eq8(logits, labels, gamma):
  """Eq. 7-8: p_i = sigmoid of the target logit, -1/PK sum (1 - p_i)^g log p_i."""
  total = 0.0
  for z, c in zip(logits.astype(np.float64), labels):
    p = 1.0 / (1.0 + np.exp(-z[c]))
    total += -((1.0 - p) ** gamma) * np.log(p)
  return total / len(labels)


def _np_focal_all_classes(logits, labels, gamma, alpha):
  """RetinaNet's focal loss on one-hot targets, summed over classes, batch mean."""
  total = 0.0
  for z, c in zip(logits.astype(np.float64), labels):
    for k, zk in enumerate(z):
      p = 1.0 / (1.0 + np.exp(-zk))
      pt = p if k == c else 1.0 - p
      at = 1.0 if alpha is None else (alpha if k == c else 1.0 - alpha)
      total += -at * (1.0 - pt) ** gamma * np.log(pt)
  return total / len(labels)


# --- attention ----------------------------------------------------------------


class AttentionTest(chex.TestCase):
  """The spatial attention module against eq. 1-3, jitted and not."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters((3, 4, 2, 5), (2, 16, 8, 7))
  def test_attention_matches_numpy_and_sums_to_one(self, *shape):
    f = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    weighted, alpha = self.variant(spatial_attention.parameter_free_spatial_attention)(
        jnp.asarray(f))
    expected = np.stack([_np_attention(x.astype(np.float64)) for x in f])
    chex.assert_trees_all_close(alpha, expected.astype(np.float32), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.sum(alpha, axis=(1, 2)), 1.0, rtol=1e-6)
    chex.assert_trees_all_close(weighted, (f * expected[..., None]).astype(np.float32),
                                rtol=1e-5, atol=1e-7)  # eq. 3


def test_attention_is_stable_for_large_channel_sums():
  """2048 ReLU channels give channel sums in the thousands: no inf/nan."""
  f = 5.0 * np.abs(np.random.default_rng(1).normal(size=(2, 16, 8, 2048))).astype(np.float32)
  alpha = spatial_attention.spatial_attention_map(jnp.asarray(f))
  chex.assert_tree_all_finite(alpha)
  np.testing.assert_allclose(np.sum(alpha, axis=(1, 2)), 1.0, rtol=1e-6)
  mean_alpha = spatial_attention.spatial_attention_map(jnp.asarray(f), reduce='mean')
  np.testing.assert_allclose(mean_alpha[0], _np_attention(f[0] / 2048.0), rtol=1e-4)
  with pytest.raises(ValueError, match='valid choices: sum, mean'):
    spatial_attention.spatial_attention_map(jnp.asarray(f), reduce='max')


def test_every_frame_attention_of_the_model_sums_to_one():
  model = get_model('trsa', num_classes=5, backbone='resnet_tiny', backbone_width=8)
  frames = jax.random.randint(jax.random.key(1), (2, 3, 64, 32, 3), 0, 256).astype(jnp.uint8)
  variables = model.init(jax.random.key(0), frames)
  out, _ = model.apply(variables, frames, train=True, mutable=['batch_stats'])
  att = np.asarray(out['attention'])
  assert att.shape[:2] == (2, 3) and att.ndim == 4
  np.testing.assert_allclose(att.sum(axis=(2, 3)), 1.0, rtol=1e-5)
  assert (att >= 0).all()


# --- Reg and focal loss against the paper ----------------------------------------


@pytest.mark.parametrize('shape', [(2, 4, 8, 4), (3, 15, 16, 8)])
def test_temporal_reg_matches_eq4(shape):
  rng = np.random.default_rng(2)
  b, t, h, w = shape
  scores = rng.normal(size=(b, t, h * w)) * 3
  alpha = np.exp(scores) / np.exp(scores).sum(-1, keepdims=True)
  alpha = alpha.reshape(shape)
  expected = np.mean([_np_reg(a) for a in alpha])  # averaged over the batch's clips
  got = losses.temporal_attention_regularizer(jnp.asarray(alpha, jnp.float32))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_temporal_reg_minimum_is_not_zero():
  """Uniform attention gives h*w (1 - T/(h*w))^2 (docs/design.md, "Per-model decisions")."""
  t, h, w = 15, 16, 8
  uniform = jnp.full((2, t, h, w), 1.0 / (h * w))
  expected = h * w * (1 - t / (h * w)) ** 2
  np.testing.assert_allclose(losses.temporal_attention_regularizer(uniform), expected, rtol=1e-5)
  # Any other set of per-frame distributions scores higher.
  peaked = np.random.default_rng(3).dirichlet(np.ones(h * w), size=(2, t)).reshape(2, t, h, w)
  assert float(losses.temporal_attention_regularizer(jnp.asarray(peaked))) > expected


@pytest.mark.parametrize('gamma', [2.0, 0.0, 1.5])
def test_focal_loss_matches_eq8(gamma):
  rng = np.random.default_rng(4)
  logits = (rng.normal(size=(12, 7)) * 3).astype(np.float32)
  labels = rng.integers(0, 7, 12).astype(np.int32)
  got = losses.focal_loss(jnp.asarray(logits), jnp.asarray(labels), gamma=gamma)
  np.testing.assert_allclose(got, _np_focal_eq8(logits, labels, gamma), rtol=1e-5)
  if gamma == 0.0:  # gamma = 0: the binary CE of the target's sigmoid
    np.testing.assert_allclose(
        got, np.mean(np.log1p(np.exp(-logits[np.arange(12), labels]))), rtol=1e-5)


def test_focal_loss_eq8_ignores_other_classes():
  logits = jnp.zeros((2, 4))
  grads = jax.grad(lambda z: losses.focal_loss(z, jnp.array([1, 3])))(logits)
  mask = np.zeros((2, 4), bool)
  mask[0, 1] = mask[1, 3] = True
  assert np.all(np.asarray(grads)[~mask] == 0) and np.all(np.asarray(grads)[mask] < 0)


@pytest.mark.parametrize('alpha', [None, 0.25])
def test_full_class_focal_loss_matches_numpy(alpha):
  rng = np.random.default_rng(5)
  logits = (rng.normal(size=(6, 5)) * 2).astype(np.float32)
  labels = rng.integers(0, 5, 6).astype(np.int32)
  got = losses.focal_loss(jnp.asarray(logits), jnp.asarray(labels), gamma=2.0,
                          mode='all_classes', alpha=alpha)
  np.testing.assert_allclose(got, _np_focal_all_classes(logits, labels, 2.0, alpha), rtol=1e-5)


def test_loss_terms_from_config():
  rng = np.random.default_rng(6)
  att = rng.dirichlet(np.ones(6), size=(4, 3)).reshape(4, 3, 3, 2).astype(np.float32)
  outputs = {'logits': jnp.asarray(rng.normal(size=(4, 5)).astype(np.float32)),
             'embedding': jnp.asarray(rng.normal(size=(4, 8)).astype(np.float32)),
             'attention': jnp.asarray(att)}
  labels = jnp.array([0, 0, 1, 1])
  cfg = {'focal': {'gamma': 2.0, 'mode': 'target'}}
  total, terms = losses.total_loss(outputs, labels, {'focal': 1.0, 'temporal_reg': 0.5}, cfg)
  np.testing.assert_allclose(terms['temporal_reg'], np.mean([_np_reg(a) for a in att]), rtol=1e-5)
  np.testing.assert_allclose(
      terms['focal'], _np_focal_eq8(np.asarray(outputs['logits']), np.asarray(labels), 2.0),
      rtol=1e-5)
  np.testing.assert_allclose(total, terms['focal'] + 0.5 * terms['temporal_reg'], rtol=1e-6)
  cfg_all = dict(cfg['focal'], mode='all_classes', alpha=0.25)
  np.testing.assert_allclose(
      losses.LOSS_TERMS['focal'](outputs['logits'], labels, **cfg_all),
      _np_focal_all_classes(np.asarray(outputs['logits']), np.asarray(labels), 2.0, 0.25),
      rtol=1e-5)
  del outputs['attention']
  with pytest.raises(ValueError, match="needs model output 'attention'"):
    losses.total_loss(outputs, labels, {'temporal_reg': 1.0}, cfg)
  with pytest.raises(ValueError, match='valid choices: target, all_classes'):
    losses.focal_loss(outputs['logits'], labels, mode='softmax')


# --- the model ------------------------------------------------------------------


def test_full_size_output_shapes():
  """ResNet-50, last stride 1, N = 15 at 256 x 128: 16 x 8 attention maps."""
  model = get_model('trsa', num_classes=150)
  frames = jnp.zeros((2, 15, 256, 128, 3), jnp.uint8)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), frames)[0])
  assert out['attention'].shape == (2, 15, 16, 8)
  assert out['embedding'].shape == (2, 2048)
  assert out['triplet_features'].shape == (2, 2048)
  assert out['logits'].shape == (2, 150)


def test_parameter_free_attention_adds_no_parameters():
  frames = jnp.zeros((1, 2, 64, 32, 3), jnp.uint8)
  counts = []
  for attention in (True, False):
    model = get_model('trsa', num_classes=5, backbone='resnet_tiny', attention=attention)
    params = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), frames))['params']
    counts.append(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params)))
  assert counts[0] == counts[1]


def test_tiny_forward_pooling_and_options():
  frames = jax.random.randint(jax.random.key(2), (2, 3, 64, 32, 3), 0, 256).astype(jnp.uint8)
  model = get_model('trsa', num_classes=0, backbone='resnet_tiny', spatial_pool='sum')
  variables = model.init(jax.random.key(0), frames)
  out = model.apply(variables, frames)
  assert 'logits' not in out
  # Eval features are per frame, so a clip's feature is the mean over time of
  # its single-frame clips' features (temporal average pooling).
  per_frame = [model.apply(variables, frames[:, t:t + 1])['embedding'] for t in range(3)]
  np.testing.assert_allclose(out['embedding'], np.mean(per_frame, axis=0), rtol=1e-4, atol=1e-6)
  # spatial_pool='sum' is the attention-weighted sum, 'mean' that over h * w.
  mean_model = get_model('trsa', num_classes=0, backbone='resnet_tiny', spatial_pool='mean')
  h, w = out['attention'].shape[2:]
  np.testing.assert_allclose(mean_model.apply(variables, frames)['embedding'] * h * w,
                             out['embedding'], rtol=1e-4, atol=1e-6)
  for t in (1, 5):  # any clip length at eval
    chex.assert_shape(model.apply(variables, frames[:, :1].repeat(t, axis=1))['attention'][:, :, 0, 0],
                      (2, t))
  no_sam = get_model('trsa', num_classes=4, backbone='resnet_tiny', attention=False, bnneck=True)
  v = no_sam.init(jax.random.key(0), frames)
  out = no_sam.apply(v, frames)
  assert 'attention' not in out and 'bnneck' in v['params'] and out['logits'].shape == (2, 4)


def test_train_step_with_trsa_objective_reduces_the_loss():
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from jaxreid import sharding  # pylint: disable=g-import-not-at-top
  from jaxreid.training import optim, setup, state as state_lib, step as step_lib  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.model_name = 'trsa'
  c.model.update(attention=True, spatial_pool='sum')
  c.losses = {'focal': {'weight': 1.0}, 'triplet': {'weight': 1.0},
              'temporal_reg': {'weight': 1.0}}  # focal: gamma 2, mode 'target' (defaults)
  c.num_identities, c.num_instances, c.clip_len, c.height, c.width = 4, 2, 2, 32, 16
  c.learning_rate, c.schedule.warmup_steps, c.schedule.decay_steps = 3e-3, 0, (1000,)
  mesh = sharding.make_mesh(jax.devices()[:1])
  model = setup.build_model(c, 4)
  tx, schedule = optim.make_optimizer(c)
  state = state_lib.create_train_state(
      model, tx, jax.random.key(0), sample=state_lib.sample_input(c.clip_len, c.height,
                                                                         c.width))
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), state)
  train_step = step_lib.make_train_step(c, schedule, state_sh, mesh)
  rng = np.random.default_rng(0)
  batch = {'frames': rng.integers(0, 256, (8, 2, 32, 16, 3), dtype=np.uint8),
           'pid': np.repeat(np.arange(4), 2).astype(np.int32)}
  first = None
  for _ in range(15):
    state, metrics = train_step(state, sharding.to_global(batch, mesh))
    chex.assert_tree_all_finite(metrics)
    first = first if first is not None else float(metrics['loss'])
  assert {'loss_focal', 'loss_triplet', 'loss_temporal_reg'} <= set(metrics)
  assert float(metrics['loss']) < first


# --- configs ----------------------------------------------------------------------

_CONFIGS = ['trsa_ilids_vid', 'trsa_prid2011', 'trsa_synthetic', 'trsa_ablation_baseline',
            'trsa_ablation_lv', 'trsa_ablation_sam', 'trsa_ablation_reg']


@pytest.mark.parametrize('name', _CONFIGS)
def test_configs_name_registered_parts(name):
  from jaxreid.models import MODELS  # pylint: disable=g-import-not-at-top
  c = importlib.import_module(f'experiments.configs.{name}').get_config()
  assert c.model_name in MODELS
  losses.check_loss_weights(dict(c.losses))
  get_model(c.model_name, num_classes=3, **c.model)  # every model option exists
  if name != 'trsa_synthetic':
    assert (c.clip_len, c.height, c.width) == (15, 256, 128)
    assert c.optimizer == 'adam' and c.learning_rate == 3e-4 and c.weight_decay == 5e-4
    assert c.augment.flip and not c.augment.random_erasing and not c.augment.pad
    assert c.model.backbone == 'resnet50' and c.model.last_stride == 1


def test_paper_schedule_in_steps():
  from experiments.configs import trsa_ablation, trsa_ilids_vid, trsa_prid2011  # pylint: disable=g-import-not-at-top
  from experiments import durations  # pylint: disable=g-import-not-at-top
  ilids, prid = trsa_ilids_vid.get_config(), trsa_prid2011.get_config()
  for c, train_ids in ((ilids, 150), (prid, 89)):  # the datasets' training identities
    durations.resolve(c, durations.steps_per_epoch(c, types.SimpleNamespace(
        num_train_ids=train_ids)))
  assert ilids.num_train_steps == 600 * 18 and tuple(ilids.schedule.decay_steps) == (3600, 7200)
  assert prid.num_train_steps == 600 * 11 and tuple(prid.schedule.decay_steps) == (2200, 4400)
  assert ilids.dataset == 'ilids_vid' and prid.dataset == 'prid2011'
  assert losses.term_weights(ilids.losses) == {'focal': 1.0, 'triplet': 1.0, 'temporal_reg': 1.0}
  sam = importlib.import_module('experiments.configs.trsa_ablation_sam').get_config('prid2011')
  assert sam.dataset == 'prid2011' and sam.model.attention and losses.term_weights(sam.losses) == {
      'ce': 1.0, 'triplet': 1.0}
  base = importlib.import_module('experiments.configs.trsa_ablation_baseline').get_config()
  assert base.dataset == 'ilids_vid' and not base.model.attention
  with pytest.raises(ValueError, match='valid choices: ilids_vid, prid2011'):
    trsa_ablation.base_config('mars')
