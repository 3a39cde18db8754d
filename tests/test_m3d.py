"""M3D / I3D / P3D blocks, RAL and the two-stream model (Li, Zhang, Huang, AAAI 2019; issue 5).

Tiny widths and inputs only; full-size shapes via jax.eval_shape. Loading 2D
weights goes through ``model.load``, what training runs
(``pretrained.load_into_train_state``; tests/test_pretrained.py).
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from data_pipelines import sampling
from jaxreid import losses
from jaxreid.backbones import pretrained
from jaxreid.layers import attention, temporal_conv
from jaxreid.models import get_model, m3d
from test_pretrained import random_state_dict  # a torchvision-layout state dict

# Streams with a 1-block-per-stage ResNet (cheap to compile) or a narrow
# ResNet-18 (2 blocks per stage, so the M3D preset leaves 2D blocks too).
TINY = functools.partial(m3d.VideoResNet, num_classes=0, backbone='resnet_tiny')
NARROW = functools.partial(m3d.VideoResNet, num_classes=0, backbone='resnet18', backbone_width=4)


def _eq5_reference(x, kernel, dilation):
  """Paper eq. 5 written out: y_t = sum_{a=-1..1} x_{t + a*i} W_a, zero outside the clip."""
  b, t, h, w, _ = x.shape
  y = np.zeros((b, t, h, w, kernel.shape[-1]))
  for tt in range(t):
    for a in (-1, 0, 1):
      src = tt + a * dilation
      if 0 <= src < t:
        for ci in range(kernel.shape[1]):
          for co in range(kernel.shape[2]):
            y[:, tt, :, :, co] += x[:, src, :, :, ci] * kernel[a + 1, ci, co]
  return y


class LayersTest(chex.TestCase):
  """The temporal convolution and the RAL, jitted and not."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(dilation=(1, 2, 3, 6), folded=(False, True))
  def test_dilated_temporal_conv_matches_eq5(self, dilation, folded):
    rng = np.random.default_rng(dilation)
    x = rng.normal(size=(2, 7, 3, 2, 4)).astype(np.float32)
    kernel = rng.normal(size=(3, 4, 5)).astype(np.float32)
    layer = temporal_conv.TemporalConv(5, dilation=dilation, time_steps=7 if folded else None)
    variables = {'params': {'kernel': jnp.asarray(kernel[:, None, None])}}
    inputs = x.reshape((14,) + x.shape[2:]) if folded else x
    y = self.variant(layer.apply)(variables, inputs)
    chex.assert_trees_all_close(np.asarray(y).reshape(2, 7, 3, 2, 5),
                                _eq5_reference(x, kernel, dilation), rtol=1e-5, atol=1e-5)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters('s', 'c', 't', 'sc', 'sct')
  def test_ral_is_identity_at_init_and_factorised(self, branches):
    x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3, 128))
    x = x + jax.random.normal(jax.random.key(2), (2, 1, 1, 1, 128))  # channel means vary
    layer = attention.RAL(branches)
    variables = layer.init(jax.random.key(1), x)
    apply = self.variant(layer.apply)
    chex.assert_trees_all_equal(apply(variables, x), x)
    # With random second convolutions the gain y / x = 1/2 + M varies only along
    # the axes of the branches present.
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.asarray(rng.normal(size=v.shape), v.dtype)
        if 'conv2' in jax.tree_util.keystr(p) else v, variables['params'])
    gain = np.asarray(apply({**variables, 'params': params}, x)) / np.asarray(x)
    assert np.all((gain > 0.5 - 1e-5) & (gain < 1.5 + 1e-5))
    axes = {'s': (2, 3), 'c': (4,), 't': (1,)}
    for branch, along in axes.items():
      spread = np.ptp(gain, axis=along).max()
      assert (spread > 1e-4) == (branch in branches), (branch, spread)


def test_temporal_conv_kernel_layout_is_torch_conv3d():
  layer = temporal_conv.TemporalConv(6)
  variables = layer.init(jax.random.key(0), jnp.zeros((1, 4, 2, 2, 3)))
  assert variables['params']['kernel'].shape == (3, 1, 1, 3, 6)  # Conv3d (6,3,3,1,1) in DHWIO
  assert not np.any(variables['params']['kernel'])  # zero-initialised


@pytest.mark.parametrize('t,n', [(1, 0), (2, 0), (3, 1), (4, 1), (8, 3), (16, 7)])
def test_number_of_temporal_kernels_is_eq6(t, n):
  assert temporal_conv.default_num_kernels(t) == n


def test_block_presets_and_kernels_per_stage_follow_table1():
  sizes = (3, 4, 6, 3)
  m = m3d.resolve_temporal_blocks('m3d', sizes)
  assert [stage.count('m3d') for stage in m] == [1, 1, 1, 1]
  assert all(stage[0] == 'm3d' for stage in m)
  assert all(set(stage) == {'i3d'} for stage in m3d.resolve_temporal_blocks('i3d', sizes))
  assert m3d.resolve_temporal_blocks(None, sizes) == m3d.resolve_temporal_blocks('2d', sizes)
  with pytest.raises(ValueError, match='valid choices'):
    m3d.resolve_temporal_blocks('c3d', sizes)
  with pytest.raises(ValueError, match='blocks per stage'):
    m3d.resolve_temporal_blocks([['m3d']], sizes)
  assert m3d.kernels_per_stage(None, 8, 4) == (3, 3, 3, 3)  # eq. 6 at T = 8
  assert m3d.kernels_per_stage(1, 8, 4) == (1, 1, 1, 1)
  assert m3d.kernels_per_stage([3, 3, 2, 1], 8, 4) == (3, 3, 2, 1)  # a config's list


def _random_2d_variables(model, frames, seed=0):
  """Random 2D weights and BatchNorm statistics (so BN is not the identity)."""
  variables = model.init(jax.random.key(seed), frames)
  rng = np.random.default_rng(seed)
  def perturb(path, v):
    name = jax.tree_util.keystr(path)
    if 'var' in name:
      return jnp.asarray(rng.uniform(0.5, 1.5, v.shape), v.dtype)
    return jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype)
  stats = jax.tree_util.tree_map_with_path(perturb, variables['batch_stats'])
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: v + 0.1 * jnp.asarray(rng.normal(size=v.shape), v.dtype)
      if 'bn' in jax.tree_util.keystr(p) else v, variables['params'])
  return {'params': params, 'batch_stats': stats}


def _transplant(source, target):
  """The 2D variables into the 3D model's tree: same paths copied, 2D kernels
  put at the centre tap of inflated ones, new (temporal, RAL) variables kept."""
  flat_src = {jax.tree_util.keystr(p): v for p, v in
              jax.tree_util.tree_flatten_with_path(source)[0]}
  def put(path, v):
    s = flat_src.get(jax.tree_util.keystr(path))
    if s is None:
      return v
    if s.shape != v.shape:
      assert v.ndim == 5 and s.shape == v.shape[1:]
      return jnp.zeros(v.shape, v.dtype).at[v.shape[0] // 2].set(s)
    return s
  return jax.tree_util.tree_map_with_path(put, target)


def _max_rel_diff(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _backbone_stages(model, variables, frames, train):
  """C2..C5 of the stream's backbone, (B*T, h, w, C) each."""
  mutable = ['intermediates', 'batch_stats'] if train else ['intermediates']
  _, state = jax.jit(functools.partial(
      model.apply, train=train, mutable=mutable,
      capture_intermediates=lambda m, _: m.name == 'backbone'))(variables, frames)
  return state['intermediates']['backbone']['__call__'][0]


@pytest.mark.parametrize('kind,ral,p3d_norm', [
    ('m3d', '', 'per_path'), ('i3d', '', 'per_path'), ('p3d_a', '', 'after_block'),
    ('p3d_b', '', 'after_block'), ('p3d_c', '', 'after_block'), ('2d', 'sct', 'per_path'),
    ('m3d', 'sct', 'per_path')])
def test_temporal_blocks_and_ral_leave_the_2d_network_unchanged_at_init(kind, ral, p3d_norm):
  """After the block (AP3D), P3D-B/C's T = 0 and P3D-A's identity T make
  bn2(T(S x)) = bn2(S x). (Per path, P3D-B/C start He-initialised, so they are
  not the 2D network at init; `test_every_temporal_parameter_gets_gradient`.)"""
  frames = jax.random.randint(jax.random.key(1), (2, 4, 32, 16, 3), 0, 256).astype(jnp.uint8)
  base = TINY(temporal='2d')
  base_vars = _random_2d_variables(base, frames)
  model = TINY(temporal=kind, clip_len=8, ral=ral, p3d_norm=p3d_norm)
  variables = _transplant(base_vars, model.init(jax.random.key(7), frames))
  new = [k for k, v in jax.tree_util.tree_flatten_with_path(variables['params'])[0]
         if 'temporal' in jax.tree_util.keystr(k) or 'ral' in jax.tree_util.keystr(k)
         or v.ndim == 5]
  assert new  # the model does have temporal / attention / inflated variables
  for train in (False, True):
    ref = _backbone_stages(base, base_vars, frames, train)
    out = _backbone_stages(model, variables, frames, train)
    # AP3D's P3D-A in training: the identity T is exact (0 difference in eval), but
    # XLA fuses the batch-statistics reductions differently, and four stages of
    # batch BN grow that rounding to ~1.5e-6.
    tolerance = 5e-6 if (train and kind == 'p3d_a') else 1e-6
    for level in ('C2', 'C3', 'C4', 'C5'):
      assert _max_rel_diff(out[level], ref[level]) <= tolerance, (kind, level, train)


def test_p3d_a_is_not_the_identity_but_runs():
  frames = jnp.zeros((1, 4, 32, 16, 3), jnp.uint8)
  model = TINY(temporal='p3d_a')
  variables = jax.jit(model.init)(jax.random.key(0), frames)
  kernel = variables['params']['backbone']['layer1_0']['temporal_conv']['kernel']
  np.testing.assert_array_equal(kernel[1, 0, 0], np.eye(8))  # identity centre init
  assert jax.jit(model.apply)(variables, frames)['embedding'].shape == (1, 64)


def test_m3d_has_n_kernels_with_dilations_at_first_blocks_only():
  frames = jnp.zeros((1, 8, 32, 16, 3), jnp.uint8)
  variables = jax.eval_shape(NARROW(temporal='m3d', clip_len=8).init, jax.random.key(0), frames)
  backbone = variables['params']['backbone']
  assert sorted(k for k in backbone['layer1_0'] if k.startswith('temporal')) == [
      'temporal_conv1', 'temporal_conv2', 'temporal_conv3']
  assert not any(k.startswith('temporal') for k in backbone['layer1_1'])
  # n is fixed by clip_len, so any T runs at eval with the same parameters.
  short = jax.eval_shape(NARROW(temporal='m3d', clip_len=8).apply, variables, frames[:, :3])
  assert short['embedding'].shape == (1, 32)


def test_ral_rejects_unknown_branches():
  with pytest.raises(ValueError, match='subset'):
    attention.RAL('x').init(jax.random.key(0), jnp.zeros((1, 2, 2, 2, 16)))


def test_two_stream_full_size_shapes():
  model = get_model('two_stream_m3d', num_classes=625, backbone='resnet50')
  frames = jnp.zeros((2, 8, 256, 128, 3), jnp.uint8)
  variables, out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), frames)[::-1])
  assert out['embedding'].shape == (2, 4096)
  assert [l.shape for l in out['stream_logits']] == [(2, 625), (2, 625)]
  assert out['logits'].shape == (2, 625)
  assert set(variables['params']) == {'spatial', 'temporal'}
  assert set(k for k in variables['params']['temporal']['backbone'] if k.startswith('ral')) == {
      'ral1', 'ral2', 'ral3'}


def test_two_stream_tiny_forward_and_loss():
  model = get_model('two_stream_m3d', num_classes=5, backbone='resnet_tiny', clip_len=4)
  frames = jax.random.randint(jax.random.key(1), (2, 4, 32, 16, 3), 0, 256).astype(jnp.uint8)
  variables = model.init(jax.random.key(0), frames)
  out = jax.jit(model.apply)(variables, frames)
  assert out['embedding'].shape == (2, 128)
  np.testing.assert_allclose(out['embedding'][:, :64], out['stream_embeddings']['spatial'])
  labels = jnp.array([0, 3])
  total, terms = losses.total_loss(out, labels, {'ce_streams': 1.0}, {})
  expected = sum(losses.cross_entropy(l, labels) for l in out['stream_logits'])
  np.testing.assert_allclose(total, expected, rtol=1e-6)
  with pytest.raises(ValueError, match='stream_logits'):
    losses.total_loss({'logits': out['logits']}, labels, {'ce_streams': 1.0})


def test_torchvision_file_into_m3d_i3d_p3d_c_gives_the_2d_outputs(tmp_path):
  """A torchvision ResNet-50 state dict (.npz) loaded by ``model.load`` into
  M3D(+RAL, both streams), I3D and AP3D's P3D-A/B/C gives the 2D
  ResNet-50's clip features (narrow width for CPU); the file's tensors land
  where torchvision's names say, the temporal variables keep their init."""
  frames = jax.random.randint(jax.random.key(1), (1, 4, 32, 16, 3), 0, 256).astype(jnp.uint8)
  kwargs = dict(num_classes=0, backbone='resnet50', backbone_width=8, clip_len=4)
  base = m3d.VideoResNet(temporal='2d', **kwargs)
  base_vars = jax.device_get(base.init(jax.random.key(0), frames))
  sd = random_state_dict(base_vars, 'backbone')
  np.savez(tmp_path / 'resnet50.npz', **sd)
  weights = pretrained.load_state_dict(tmp_path / 'resnet50.npz')
  base_vars = base.load(base_vars, weights)
  np.testing.assert_array_equal(base_vars['params']['backbone']['layer3_0']['conv2']['kernel'],
                                sd['layer3.0.conv2.weight'].transpose(2, 3, 1, 0))
  expected = np.asarray(jax.jit(base.apply)(base_vars, frames)['triplet_features'])
  models = {'m3d_two_stream': m3d.TwoStreamM3D(**kwargs),
            'i3d': m3d.VideoResNet(temporal='i3d', **kwargs),
            'p3d_c': m3d.VideoResNet(temporal='p3d_c', p3d_norm='after_block', **kwargs),
            'p3d_b': m3d.VideoResNet(temporal='p3d_b', p3d_norm='after_block', **kwargs),
            'p3d_a_after_block': m3d.VideoResNet(temporal='p3d_a', p3d_norm='after_block',
                                                 **kwargs)}
  for name, model in models.items():
    initial = jax.device_get(model.init(jax.random.key(3), frames))
    variables = model.load(initial, weights)
    streams = variables['params'] if name.startswith('m3d') else {'': variables['params']}
    for tree in streams.values():
      np.testing.assert_array_equal(tree['backbone']['conv1']['kernel'],
                                    sd['conv1.weight'].transpose(2, 3, 1, 0))
    # In the backbones, exactly the temporal and RAL variables keep their init.
    flat = lambda t: dict(jax.tree_util.tree_flatten_with_path(t)[0])
    before, after = flat(initial), flat(variables)
    in_backbone = [jax.tree_util.keystr(k) for k in after
                   if "['backbone']" in jax.tree_util.keystr(k)]
    kept = {jax.tree_util.keystr(k) for k in after if after[k] is before[k]}
    new = {k for k in in_backbone if 'temporal_' in k or "['ral" in k}
    assert kept.intersection(in_backbone) == new and bool(new) == (name != 'i3d'), name
    out = np.asarray(jax.jit(model.apply)(variables, frames)['triplet_features'])
    for stream in np.split(out, out.shape[-1] // expected.shape[-1], axis=-1):
      assert _max_rel_diff(stream, expected) <= 1e-6, name


def test_full_chunks_eval_sampler():
  np.testing.assert_array_equal(sampling.eval_chunks(17, 4, 'full_chunks'),
                                np.arange(16).reshape(4, 4))
  np.testing.assert_array_equal(sampling.eval_chunks(8, 4, 'full_chunks'),
                                np.arange(8).reshape(2, 4))
  np.testing.assert_array_equal(sampling.eval_chunks(3, 4, 'full_chunks'), [[0, 1, 2, 0]])
  np.testing.assert_array_equal(sampling.eval_chunks(17, 4, 'full_chunks', max_chunks=2),
                                np.arange(8).reshape(2, 4))
  # 'all' is the same plus its padded last chunk.
  np.testing.assert_array_equal(sampling.eval_chunks(17, 4, 'all')[:-1],
                                sampling.eval_chunks(17, 4, 'full_chunks'))


def test_m3d_kernels_per_stage_and_parameter_overheads_full_size():
  """n per stage (the official code's 3, 3, 2, 1), and the full-size overheads the
  parameter table reports: I3D +2 x the 3x3 kernels, P3D +3 C^2 per block, M3D
  +3 n C^2 per stage (eval_shape only)."""
  clip = jnp.zeros((1, 8, 256, 128, 3), jnp.uint8)
  def params(**kwargs):
    model = m3d.VideoResNet(num_classes=0, backbone='resnet50', **kwargs)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), clip))['params']['backbone']
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  base = count(params(temporal='2d'))
  official = params(temporal='m3d', m3d_kernels=(3, 3, 2, 1))
  assert [sum(k.startswith('temporal_conv') for k in official[f'layer{i}_0'])
          for i in (1, 2, 3, 4)] == [3, 3, 2, 1]
  widths = np.array([64, 128, 256, 512])
  blocks = np.array([3, 4, 6, 3])
  assert count(params(temporal='i3d')) - base == 2 * 9 * int(np.sum(blocks * widths**2))
  # Per path (default) each P3D block also has a temporal BN (scale and bias, 2 C).
  p3d_kernels = 3 * int(np.sum(blocks * widths**2))
  for kind in ('p3d_a', 'p3d_b', 'p3d_c'):
    assert count(params(temporal=kind)) - base == p3d_kernels + 2 * int(
        np.sum(blocks * widths)), kind
    assert count(params(temporal=kind, p3d_norm='after_block')) - base == p3d_kernels
  assert count(params(temporal='m3d', clip_len=8)) - base == 3 * 3 * int(np.sum(widths**2))


@pytest.mark.parametrize('zero_init', ['one', 'all'])
def test_ral_init_is_identity_and_trainable_only_with_one_zero_branch(zero_init):
  """All three second convolutions at 0 (the paper's literal init) is a saddle: every
  RAL parameter gets a zero gradient. Zeroing one branch keeps the identity and trains."""
  x = jax.random.normal(jax.random.key(0), (4, 4, 6, 3, 64)) + 0.5
  layer = attention.RAL('sct', zero_init=zero_init, train=True)
  variables = layer.init(jax.random.key(1), x)
  y, _ = layer.apply(variables, x, mutable=['batch_stats'])
  np.testing.assert_array_equal(np.asarray(y), np.asarray(x))
  target = jax.random.normal(jax.random.key(3), x.shape)
  def loss(params):
    out, _ = layer.apply({**variables, 'params': params}, x, mutable=['batch_stats'])
    return jnp.sum(out * target)
  grads = jax.grad(loss)(variables['params'])
  norms = {k: float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(v))) for k, v in grads.items()}
  if zero_init == 'all':
    assert all(n == 0 for n in norms.values()), norms
  else:
    assert norms['channel_conv2'] > 0, norms


def test_pretrained_file_into_both_streams_of_a_train_state(tmp_path):
  """``config.pretrained`` in training (``load_into_train_state``): one 2D file
  into both streams' backbones, the temporal kernels and RALs keep their init,
  both backbones at the lr mult; the network starts as the pretrained 2D CNN."""
  import optax  # pylint: disable=g-import-not-at-top
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from jaxreid.training import optim, state as state_lib  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.pretrained_lr_mult = 0.1
  model = get_model('two_stream_m3d', num_classes=4, backbone='resnet18', backbone_width=4,
                    last_stride=1, clip_len=4, temporal='m3d', ral='sct')
  frames = jax.random.randint(jax.random.key(1), (1, 4, 32, 16, 3), 0, 256).astype(jnp.uint8)
  tx, _ = optim.make_optimizer(config)
  state = jax.jit(lambda rng: state_lib.create_train_state(model, tx, rng, frames))(
      jax.random.key(0))
  base = m3d.VideoResNet(num_classes=0, temporal='2d', backbone='resnet18', backbone_width=4)
  base_vars = jax.device_get(base.init(jax.random.key(2), frames))
  sd = random_state_dict(base_vars, 'backbone')
  path = str(tmp_path / 'resnet18.npz')
  np.savez(path, **sd)
  loaded = pretrained.load_into_train_state(state, model, path)
  params, stats = jax.device_get((loaded.params, loaded.batch_stats))
  for stream in ('spatial', 'temporal'):
    np.testing.assert_array_equal(params[stream]['backbone']['conv1']['kernel'],
                                  sd['conv1.weight'].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(stats[stream]['backbone']['layer2_0']['bn1']['mean'],
                                  sd['layer2.0.bn1.running_mean'])
  # The temporal stream's M3D kernels keep their zero init (RALs: their own).
  names = lambda k: jax.tree_util.keystr(k)
  temporal = [np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(
      params['temporal']['backbone']) if 'temporal_conv' in names(k) and "['ral" not in names(k)]
  assert temporal and all(not v.any() for v in temporal)
  assert loaded.params['spatial']['bnneck']['scale'] is state.params['spatial']['bnneck']['scale']
  labels = optim.backbone_labels(params)
  assert labels['spatial']['backbone']['conv1']['kernel'] == 'pretrained'
  assert labels['temporal']['backbone']['conv1']['kernel'] == 'pretrained'
  assert all(v == 'new' for v in jax.tree.leaves(labels['spatial']['bnneck']))
  # With the model's new_layers (what setup passes), its temporal kernels and
  # RALs learn at the base rate; the 2D layers around them stay 'pretrained'.
  labels = optim.backbone_labels(params, model.new_layers)
  flat = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(labels)}
  temporal_labels = {v for k, v in flat.items() if "['temporal_conv" in k}
  ral_labels = {v for k, v in flat.items() if "['ral" in k}
  assert temporal_labels == {'new'} and ral_labels == {'new'}, (temporal_labels, ral_labels)
  assert labels['temporal']['backbone']['conv1']['kernel'] == 'pretrained'
  assert labels['temporal']['backbone']['layer2_0']['conv2']['kernel'] == 'pretrained'
  assert isinstance(loaded.opt_state, optax.MultiTransformState)
  # Each stream gives the 2D network's features.
  expected = base.apply(base.load(jax.tree.map(np.zeros_like, base_vars), sd),
                        frames)['triplet_features']
  out = model.apply({'params': params, 'batch_stats': stats}, frames)['triplet_features']
  for stream in np.split(np.asarray(out), 2, axis=-1):
    assert _max_rel_diff(stream, expected) <= 1e-5
