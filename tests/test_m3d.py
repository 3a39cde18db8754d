"""M3D / I3D / P3D blocks, RAL and the two-stream model (Li, Zhang, Huang, AAAI 2019; issue 5).

Tiny widths and inputs only; full-size shapes via jax.eval_shape.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import sampling
from jaxreid import losses
from jaxreid.backbones import pretrained, resnet
from jaxreid.layers import attention, temporal_conv
from jaxreid.models import get_model, m3d

TINY = functools.partial(resnet.ResNet, stage_sizes=(2, 1, 1, 1), block_cls=resnet.Bottleneck,
                         width=4, last_stride=1)


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


@pytest.mark.parametrize('dilation', [1, 2, 3, 6])
@pytest.mark.parametrize('folded', [False, True])
def test_dilated_temporal_conv_matches_eq5(dilation, folded):
  rng = np.random.default_rng(dilation)
  x = rng.normal(size=(2, 7, 3, 2, 4)).astype(np.float32)
  kernel = rng.normal(size=(3, 4, 5)).astype(np.float32)
  layer = temporal_conv.TemporalConv(5, dilation=dilation, time_steps=7 if folded else None)
  variables = {'params': {'kernel': jnp.asarray(kernel[:, None, None])}}
  inputs = x.reshape((14,) + x.shape[2:]) if folded else x
  y = np.asarray(layer.apply(variables, inputs)).reshape(2, 7, 3, 2, 5)
  np.testing.assert_allclose(y, _eq5_reference(x, kernel, dilation), rtol=1e-5, atol=1e-5)


def test_temporal_conv_kernel_layout_is_torch_conv3d():
  layer = temporal_conv.TemporalConv(6)
  variables = layer.init(jax.random.key(0), jnp.zeros((1, 4, 2, 2, 3)))
  assert variables['params']['kernel'].shape == (3, 1, 1, 3, 6)  # Conv3d (6,3,3,1,1) in DHWIO
  assert not np.any(variables['params']['kernel'])  # zero-initialised


@pytest.mark.parametrize('t,n', [(1, 0), (2, 0), (3, 1), (4, 1), (8, 3), (16, 7)])
def test_number_of_temporal_kernels_is_eq6(t, n):
  assert temporal_conv.default_num_kernels(t) == n


def test_block_presets_follow_table1():
  sizes = (3, 4, 6, 3)
  m = resnet.resolve_temporal_blocks('m3d', sizes)
  assert [stage.count('m3d') for stage in m] == [1, 1, 1, 1]
  assert all(stage[0] == 'm3d' for stage in m)
  assert all(set(stage) == {'i3d'} for stage in resnet.resolve_temporal_blocks('i3d', sizes))
  assert resnet.resolve_temporal_blocks(None, sizes) == resnet.resolve_temporal_blocks('2d', sizes)
  with pytest.raises(ValueError, match='valid choices'):
    resnet.resolve_temporal_blocks('c3d', sizes)
  with pytest.raises(ValueError, match='blocks per stage'):
    resnet.resolve_temporal_blocks([['m3d']], sizes)


def _random_2d_variables(model, x, seed=0):
  """Random 2D weights and BatchNorm statistics (so BN is not the identity)."""
  variables = model.init(jax.random.key(seed), x)
  rng = np.random.default_rng(seed)
  def perturb(path, v):
    name = jax.tree_util.keystr(path)
    if 'var' in name:
      return jnp.asarray(rng.uniform(0.5, 1.5, v.shape), v.dtype)
    return jnp.asarray(rng.normal(0, 0.3, v.shape), v.dtype)
  stats = jax.tree_util.tree_map_with_path(perturb, variables['batch_stats'])
  params = dict(variables['params'])
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: v + 0.1 * jnp.asarray(rng.normal(size=v.shape), v.dtype)
      if 'bn' in jax.tree_util.keystr(p) else v, params)
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


@pytest.mark.parametrize('kind,ral,p3d_norm', [
    ('m3d', (), 'per_path'), ('i3d', (), 'per_path'), ('p3d_b', (), 'per_path'),
    ('p3d_c', (), 'per_path'), ('p3d_a', (), 'after_block'), ('p3d_b', (), 'after_block'),
    ('p3d_c', (), 'after_block'), ('2d', (1, 2, 3), 'per_path'), ('m3d', (1, 2, 3), 'per_path')])
def test_temporal_blocks_and_ral_leave_the_2d_network_unchanged_at_init(kind, ral, p3d_norm):
  """Per path, P3D-B/C's temporal path is relu(temporal_bn(0)) = 0 at init;
  after the block (AP3D), P3D-A's identity T makes bn2(T(S x)) = bn2(S x)."""
  x = jax.random.normal(jax.random.key(1), (2, 4, 32, 16, 3))
  base = TINY()
  base_vars = _random_2d_variables(base, x.reshape((8, 32, 16, 3)))
  model = TINY(temporal_blocks=kind, clip_len=8, ral_stages=ral, p3d_norm=p3d_norm)
  variables = _transplant(base_vars, model.init(jax.random.key(7), x))
  new = [k for k, v in jax.tree_util.tree_flatten_with_path(variables['params'])[0]
         if 'temporal' in jax.tree_util.keystr(k) or 'ral' in jax.tree_util.keystr(k)
         or v.ndim == 5]
  assert new  # the model does have temporal / attention / inflated variables
  for train in (False, True):
    mutable = ['batch_stats'] if train else False
    ref = jax.jit(functools.partial(base.apply, train=train, mutable=mutable))(
        base_vars, x.reshape((8, 32, 16, 3)))
    out = jax.jit(functools.partial(model.apply, train=train, mutable=mutable))(variables, x)
    ref, out = (ref[0], out[0]) if train else (ref, out)
    # AP3D's P3D-A in training: the identity T is exact (0 difference in eval), but
    # XLA fuses the batch-statistics reductions differently, and four stages of
    # batch BN (16 values per channel at C5) grow that rounding to ~1.5e-6.
    tolerance = 5e-6 if (train and kind == 'p3d_a') else 1e-6
    for level in ('C2', 'C3', 'C4', 'C5'):
      expected = np.asarray(ref[level]).reshape(out[level].shape)
      assert _max_rel_diff(out[level], expected) <= tolerance, (kind, level, train)


def test_p3d_a_is_not_the_identity_but_runs():
  x = jax.random.normal(jax.random.key(1), (1, 4, 32, 16, 3))
  model = TINY(temporal_blocks='p3d_a')
  variables = model.init(jax.random.key(0), x)
  kernel = variables['params']['layer1_0']['temporal_conv']['kernel']
  np.testing.assert_array_equal(kernel[1, 0, 0], np.eye(4))  # identity centre init
  assert model.apply(variables, x)['C5'].shape == (1, 4, 2, 1, 128)


def test_m3d_has_n_kernels_with_dilations_at_first_blocks_only():
  x = jnp.zeros((1, 8, 32, 16, 3))
  params = TINY(temporal_blocks='m3d', clip_len=8).init(jax.random.key(0), x)['params']
  assert sorted(k for k in params['layer1_0'] if k.startswith('temporal')) == [
      'temporal_conv1', 'temporal_conv2', 'temporal_conv3']
  assert not any(k.startswith('temporal') for k in params['layer1_1'])
  # n is fixed by clip_len, so any T runs at eval with the same parameters.
  short = TINY(temporal_blocks='m3d', clip_len=8).apply({'params': params, 'batch_stats': (
      TINY(temporal_blocks='m3d').init(jax.random.key(0), x)['batch_stats'])}, x[:, :3])
  assert short['C5'].shape[:2] == (1, 3)


@pytest.mark.parametrize('branches', ['s', 'c', 't', 'sc', 'sct'])
def test_ral_is_identity_at_init_and_factorised(branches):
  x = jax.random.normal(jax.random.key(0), (2, 4, 6, 3, 128))
  x = x + jax.random.normal(jax.random.key(2), (2, 1, 1, 1, 128))  # channel means vary
  layer = attention.RAL(branches)
  variables = layer.init(jax.random.key(1), x)
  np.testing.assert_array_equal(np.asarray(layer.apply(variables, x)), np.asarray(x))
  # With random second convolutions the gain y / x = 1/2 + M varies only along
  # the axes of the branches present.
  rng = np.random.default_rng(0)
  params = jax.tree_util.tree_map_with_path(
      lambda p, v: jnp.asarray(rng.normal(size=v.shape), v.dtype)
      if 'conv2' in jax.tree_util.keystr(p) else v, variables['params'])
  gain = np.asarray(layer.apply({**variables, 'params': params}, x)) / np.asarray(x)
  assert np.all((gain > 0.5 - 1e-5) & (gain < 1.5 + 1e-5))
  axes = {'s': (2, 3), 'c': (4,), 't': (1,)}
  for branch, along in axes.items():
    spread = np.ptp(gain, axis=along).max()
    assert (spread > 1e-4) == (branch in branches), (branch, spread)


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
    losses.LOSS_TERMS['ce_streams']({'logits': out['logits']}, labels, {})


def _random_state_dict(variables, prefix, seed=0):
  """A torchvision-layout state dict of random values shaped like the 2D backbone."""
  rng = np.random.default_rng(seed)
  zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), variables)
  sd = pretrained.export_torchvision(zeros, prefix)
  return {k: (v if k.endswith('num_batches_tracked')
              else rng.uniform(0.5, 1.5, v.shape).astype(np.float32) if k.endswith('running_var')
              else rng.normal(0, 0.1, v.shape).astype(np.float32)) for k, v in sd.items()}


def test_torchvision_file_into_m3d_i3d_p3d_c_gives_the_2d_outputs(tmp_path):
  """A torchvision ResNet-50 state dict (.npz) loaded into M3D(+RAL, both streams),
  I3D, P3D-B/C and AP3D's P3D-A gives the 2D ResNet-50's clip features (narrow
  width for CPU)."""
  frames = jax.random.randint(jax.random.key(1), (1, 4, 32, 16, 3), 0, 256).astype(jnp.uint8)
  kwargs = dict(num_classes=0, backbone='resnet50', backbone_width=8, clip_len=4)
  base = m3d.VideoResNet(temporal='2d', **kwargs)
  base_vars = base.init(jax.random.key(0), frames)
  path = tmp_path / 'resnet50.npz'
  np.savez(path, **_random_state_dict(base_vars, 'backbone'))
  base_vars, _ = m3d.load_pretrained(base_vars, path)
  expected = np.asarray(jax.jit(base.apply)(base_vars, frames)['triplet_features'])
  models = {'m3d_two_stream': m3d.TwoStreamM3D(**kwargs),
            'i3d': m3d.VideoResNet(temporal='i3d', **kwargs),
            'p3d_c': m3d.VideoResNet(temporal='p3d_c', **kwargs),
            'p3d_b': m3d.VideoResNet(temporal='p3d_b', **kwargs),  # temporal_bn kept at init
            'p3d_a_after_block': m3d.VideoResNet(temporal='p3d_a', p3d_norm='after_block',
                                                 **kwargs)}
  for name, model in models.items():
    variables = model.init(jax.random.key(3), frames)
    variables, reports = m3d.load_pretrained(variables, path)
    assert all(r.ok for r in reports) and all(r.file_arch == r.model_arch for r in reports)
    assert len(reports) == (2 if name.startswith('m3d') else 1)
    if name != 'i3d':  # I3D's kernels are all inflated from the file; the others add variables
      assert reports[-1].kept_init, name
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
  clip = jnp.zeros((1, 8, 256, 128, 3))
  def params(**kwargs):
    model = resnet.ResNet50(**kwargs)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), clip))['params']
  count = lambda tree: sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))
  base = count(params())
  official = params(temporal_blocks='m3d', m3d_kernels=(3, 3, 2, 1))
  assert [sum(k.startswith('temporal_conv') for k in official[f'layer{i}_0'])
          for i in (1, 2, 3, 4)] == [3, 3, 2, 1]
  widths = np.array([64, 128, 256, 512])
  blocks = np.array([3, 4, 6, 3])
  assert count(params(temporal_blocks='i3d')) - base == 2 * 9 * int(np.sum(blocks * widths**2))
  # Per path (default) each P3D block also has a temporal BN (scale and bias, 2 C).
  p3d_kernels = 3 * int(np.sum(blocks * widths**2))
  for kind in ('p3d_a', 'p3d_b', 'p3d_c'):
    assert count(params(temporal_blocks=kind)) - base == p3d_kernels + 2 * int(
        np.sum(blocks * widths)), kind
    assert count(params(temporal_blocks=kind, p3d_norm='after_block')) - base == p3d_kernels
  assert count(params(temporal_blocks='m3d', clip_len=8)) - base == 3 * 3 * int(np.sum(widths**2))


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


def test_config_pretrained_loads_both_streams_of_two_stream_m3d(tmp_path):
  """`config.pretrained` in training: one 2D file into both streams' backbones,
  the temporal kernels and RALs keep their init, both backbones at the lr mult."""
  import ml_collections  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from jaxreid.training import loop, optim, sharding  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.height, config.width, config.clip_len = 32, 16, 4
  config.model_name = 'two_stream_m3d'
  config.model = ml_collections.ConfigDict(dict(
      backbone='resnet18', backbone_width=4, last_stride=1, clip_len=4, temporal='m3d',
      ral='sct', normalize_streams=False))
  config.losses = ml_collections.ConfigDict({'ce_streams': 1.0, 'triplet': 1.0})
  base = m3d.VideoResNet(num_classes=0, temporal='2d', backbone='resnet18', backbone_width=4,
                         clip_len=4)
  base_vars = jax.eval_shape(base.init, jax.random.key(0), jnp.zeros((1, 4, 32, 16, 3), jnp.uint8))
  sd = _random_state_dict(base_vars, 'backbone')
  path = str(tmp_path / 'resnet18.npz')
  np.savez(path, **sd)
  config.pretrained = path
  config.pretrained_lr_mult = 0.1
  mesh = sharding.make_mesh(jax.devices()[:1])
  model, state, _, _, ckpt, _ = loop.setup_state(config, str(tmp_path / 'run'), 4, mesh)
  ckpt.close()
  params, stats = jax.device_get((state.params, state.batch_stats))
  for stream in ('spatial', 'temporal'):
    np.testing.assert_array_equal(params[stream]['backbone']['conv1']['kernel'],
                                  sd['conv1.weight'].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(stats[stream]['backbone']['layer2_0']['bn1']['mean'],
                                  sd['layer2.0.bn1.running_mean'])
  # The temporal stream's M3D kernels keep their zero init (RALs: their own).
  temporal = [np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(
      params['temporal']['backbone'])
              if 'temporal_conv' in jax.tree_util.keystr(k) and "['ral" not in jax.tree_util.keystr(k)]
  assert temporal and all(not v.any() for v in temporal)
  labels = optim.backbone_labels(params)
  assert labels['spatial']['backbone']['conv1']['kernel'] == 'pretrained'
  assert labels['temporal']['backbone']['conv1']['kernel'] == 'pretrained'
  assert all(v == 'new' for v in jax.tree.leaves(labels['spatial']['bnneck']))
  assert isinstance(state.opt_state, optax.MultiTransformState)
  # The network starts as the pretrained 2D CNN: each stream gives its features.
  frames = jax.random.randint(jax.random.key(1), (1, 4, 32, 16, 3), 0, 256).astype(jnp.uint8)
  base_vars, _ = m3d.load_pretrained(jax.tree.map(np.zeros_like, jax.device_get(
      base.init(jax.random.key(0), frames))), path)
  expected = np.asarray(base.apply(base_vars, frames)['triplet_features'])
  out = model.apply({'params': params, 'batch_stats': stats}, frames)['triplet_features']
  for stream in np.split(np.asarray(out), 2, axis=-1):
    assert _max_rel_diff(stream, expected) <= 1e-5
