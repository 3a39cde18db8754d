"""Pretrained weights: torchvision-layout files into the Flax backbones, through
``model.load`` and ``pretrained.load_into_train_state`` as training runs them.

File formats, names and layouts, the errors, the optimizer's multiplier and
the training hook need only numpy; the comparisons with PyTorch forward passes
are tests/test_pretrained_torch.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import tiny
from jaxreid import sharding
from jaxreid.backbones import pretrained, resnet
from jaxreid.models import get_model
from jaxreid.training import optim, setup, state as state_lib


def _abstract(model, shape, dtype=jnp.float32):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, dtype)))


def random_state_dict(variables, prefix='', seed=0):
  """A torchvision-layout state dict of random values for the Flax `variables`
  under `prefix` (BN variances in [0.5, 1.5], everything else N(0, 0.1))."""
  rng = np.random.default_rng(seed)
  zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), variables)
  names = pretrained.export_torchvision(zeros, prefix)
  draw = lambda k, v: (rng.uniform(0.5, 1.5, v.shape) if k.endswith('running_var')
                       else rng.normal(0, 0.1, v.shape))
  return {k: v if k.endswith('num_batches_tracked') else draw(k, v).astype(np.float32)
          for k, v in names.items()}


@pytest.fixture(scope='module')
def resnet18_file(tmp_path_factory):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  sd = random_state_dict(_abstract(resnet.ResNet18(), (1, 64, 64, 3)))
  sd['fc.weight'] = np.zeros((1000, 512), np.float32)
  sd['fc.bias'] = np.zeros((1000,), np.float32)
  path = str(tmp_path_factory.mktemp('weights') / 'resnet18.safetensors')
  save_file(sd, path)
  return path, sd


def test_round_trip_names_and_layouts(resnet18_file, tmp_path):
  path, sd = resnet18_file
  model = resnet.ResNet18()
  variables, report = pretrained.merge_pretrained(_abstract(model, (1, 64, 64, 3)), path,
                                                  prefix='')
  assert report.ok and not report.unexpected
  k = variables['params']['layer2_0']['downsample_conv']['kernel']
  np.testing.assert_array_equal(k, sd['layer2.0.downsample.0.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['layer4_1']['bn2']['var'],
                                sd['layer4.1.bn2.running_var'])
  np.testing.assert_array_equal(variables['params']['bn1']['scale'], sd['bn1.weight'])
  assert pretrained.torch_to_flax_name('layer3.5.downsample.1.running_mean', True) == (
      'batch_stats', ('layer3_5', 'downsample_bn', 'mean'))
  assert pretrained.torch_to_flax_name('Mixed_6e.branch7x7_2.conv.weight', False) == (
      'params', ('Mixed_6e', 'branch7x7_2', 'conv', 'kernel'))
  assert pretrained.torch_to_flax_name('bn1.num_batches_tracked', True) is None
  back = pretrained.export_torchvision(variables, prefix='')
  assert set(back) == set(sd) - {'fc.weight', 'fc.bias'}
  for name, value in back.items():
    np.testing.assert_array_equal(value, sd[name], err_msg=name)
  # .npz works the same.
  npz = tmp_path / 'resnet18.npz'
  np.savez(npz, **sd)
  again, _ = pretrained.merge_pretrained(_abstract(model, (1, 64, 64, 3)), str(npz), prefix='')
  jax.tree.map(np.testing.assert_array_equal, again, variables)


def test_pickle_files_are_refused_with_conversion_hint(tmp_path):
  pth = tmp_path / 'resnet50-11ad3fa6.pth'
  pth.write_bytes(b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.')  # torch's legacy magic
  with pytest.raises(pretrained.PretrainedWeightsError,
                     match=r'resnet50-11ad3fa6.pth is a PyTorch pickle.*never unpickles.*'
                           r'python -m experiments.convert_weights --input=.*resnet50-11ad3fa6'
                           r'.pth --output=.*resnet50-11ad3fa6.safetensors'):
    pretrained.load_state_dict(str(pth))
  # torch.save's zip format under another name is recognized by its content.
  import zipfile  # pylint: disable=g-import-not-at-top
  disguised = tmp_path / 'weights.safetensors'
  with zipfile.ZipFile(disguised, 'w') as z:
    z.writestr('archive/data.pkl', b'\x80\x02}q\x00.')
  with pytest.raises(pretrained.PretrainedWeightsError, match='is a PyTorch pickle'):
    pretrained.load_state_dict(str(disguised))
  with pytest.raises(FileNotFoundError, match='nowhere.safetensors does not exist'):
    pretrained.load_state_dict(str(tmp_path / 'nowhere.safetensors'))
  other = tmp_path / 'weights.h5'
  other.write_bytes(b'\x89HDF\r\n')
  with pytest.raises(pretrained.PretrainedWeightsError, match='unknown weights format'):
    pretrained.load_state_dict(str(other))


def test_wrong_architecture_names_both_and_what_to_do(resnet18_file):
  path, _ = resnet18_file
  weights = pretrained.load_state_dict(path)
  model = get_model('temporal_pooling', num_classes=3, backbone='resnet50')
  with pytest.raises(pretrained.PretrainedWeightsError) as e:
    model.load(_abstract(model, (1, 1, 64, 64, 3), jnp.uint8), weights)
  msg = str(e.value)
  assert 'resnet18.safetensors' in msg
  assert "holds resnet18 weights but the model's backbone under 'backbone' is resnet50" in msg
  assert 'model variables not in the file: params:layer1_0/bn3/bias' in msg
  assert 'of the wrong shape' in msg and 'convert_weights' in msg
  # The synthetic config's quarter-width ResNet-18 cannot take ImageNet weights either.
  narrow = get_model('temporal_pooling', num_classes=3, backbone='resnet18', backbone_width=16)
  with pytest.raises(pretrained.PretrainedWeightsError,
                     match=r"resnet18 weights but .* is resnet18 \(width 16\)(.|\n)*"
                           r"published widths: set config.model.backbone_width=0"):
    narrow.load(_abstract(narrow, (1, 1, 64, 64, 3), jnp.uint8), weights)
  # Not strict: what fits is loaded (the rest keeps its initialization), the rest reported.
  abstract = _abstract(resnet.ResNet50(), (1, 64, 64, 3))
  merged, report = pretrained.merge_pretrained(abstract, path, prefix='', strict=False)
  assert not report.ok and len(report.misshaped) == 23 and len(report.missing) == 165
  np.testing.assert_array_equal(merged['params']['conv1']['kernel'],
                                weights['conv1.weight'].transpose(2, 3, 1, 0))
  assert merged['params']['layer1_0']['conv3']['kernel'] is \
      abstract['params']['layer1_0']['conv3']['kernel']
  # A model without a backbone (CRF) says where its modules are.
  crf = get_model('crf', num_classes=3, use_flow=False)
  with pytest.raises(pretrained.PretrainedWeightsError,
                     match=r"resnet18.safetensors: the model has no variables under 'backbone' "
                           r"\(its top-level modules: classifier, cnn, rnn\)"):
    crf.load(_abstract(crf, (1, 2, 32, 16, 3), jnp.uint8), weights)


def test_truncated_files_say_so(resnet18_file, tmp_path):
  path, sd = resnet18_file
  data = open(path, 'rb').read()
  cut = tmp_path / 'cut.safetensors'
  cut.write_bytes(data[:len(data) // 2])
  with pytest.raises(pretrained.PretrainedWeightsError,
                     match=r'cut.safetensors is damaged or truncated \(its header describes '
                           rf'{len(data)} bytes, the file has {len(data) // 2}\).*again'):
    pretrained.load_state_dict(str(cut))
  cut.write_bytes(data[:100])
  with pytest.raises(pretrained.PretrainedWeightsError, match='truncated'):
    pretrained.load_state_dict(str(cut))
  npz = tmp_path / 'w.npz'
  np.savez(npz, **sd)
  data = npz.read_bytes()
  npz.write_bytes(data[:len(data) // 2])
  with pytest.raises(pretrained.PretrainedWeightsError, match=r'w.npz is damaged or truncated'):
    pretrained.load_state_dict(str(npz))


def test_inflation_hook_and_keep_init_for_3d_backbones():
  """What an I3D/M3D backbone uses: 2D kernels inflated to 3D, new variables kept."""
  k2 = np.random.default_rng(0).normal(size=(3, 3, 4, 8)).astype(np.float32)
  k3 = pretrained.inflate_kernels('layer1_0/conv2/kernel', k2, (3, 3, 3, 4, 8))
  np.testing.assert_array_equal(k3[1], k2)
  assert not k3[0].any() and not k3[2].any()
  mean = pretrained.inflate_kernels('x', k2, (3, 3, 3, 4, 8), mode='mean')
  np.testing.assert_allclose(mean.sum(0), k2, rtol=1e-6)
  assert pretrained.inflate_kernels('x', k2, (3, 3, 5, 8)) is None
  # Model: a 3D conv and a new temporal conv the file does not have.
  variables = {'params': {'backbone': {'conv': {'kernel': np.zeros((3, 3, 3, 4, 8), np.float32)},
                                       'temporal': {'kernel': np.ones((3, 1, 1, 8, 8))}}}}
  sd = {'conv.weight': k2.transpose(3, 2, 0, 1)}
  with pytest.raises(pretrained.PretrainedWeightsError, match='params:temporal/kernel'):
    pretrained.merge_pretrained(variables, sd, adapt=pretrained.inflate_kernels)
  merged, report = pretrained.merge_pretrained(variables, sd, adapt=pretrained.inflate_kernels,
                                               keep_init=('temporal*',))
  assert report.kept_init == ['params:temporal/kernel']
  np.testing.assert_array_equal(merged['params']['backbone']['conv']['kernel'][1], k2)
  assert (merged['params']['backbone']['temporal']['kernel']
          is variables['params']['backbone']['temporal']['kernel'])


def test_every_registered_model_loads_its_backbone():
  """The interface every model has: ``load`` fills exactly its backbone(s) with
  the file's tensors (checked at one kernel) and keeps the rest."""
  frames = (1, 2, 32, 16, 3)
  for name, kwargs, backbones in [
      ('temporal_pooling', {}, ['backbone']), ('trsa', {}, ['backbone']),
      ('mstn', dict(scale_features=4, cut_features=4, lstm_features=4), ['backbone']),
      ('rru', dict(transition_features=4, stim_features=4), ['backbone']),
      ('video_resnet', dict(clip_len=2), ['backbone']),
      ('two_stream_m3d', dict(clip_len=2), ['spatial/backbone', 'temporal/backbone'])]:
    model = get_model(name, num_classes=3, backbone='resnet_tiny', **kwargs)
    variables = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype),
                             _abstract(model, frames, jnp.uint8))  # values do not matter
    sd = random_state_dict(_abstract(resnet.ResNetTiny(), (1, 32, 16, 3)), seed=1)
    loaded = model.load(variables, sd)
    for prefix in backbones:
      tree = loaded['params']
      for key in prefix.split('/'):
        tree = tree[key]
      np.testing.assert_array_equal(tree['layer2_0']['conv1']['kernel'],
                                    sd['layer2.0.conv1.weight'].transpose(2, 3, 1, 0), name)
    before = dict(jax.tree_util.tree_flatten_with_path(variables)[0])
    after = dict(jax.tree_util.tree_flatten_with_path(loaded)[0])
    heads = [k for k in after if "['backbone']" not in jax.tree_util.keystr(k)]
    assert heads and all(after[k] is before[k] for k in heads), name


# ----------------------------------------------------------------------------
# Optimizer multiplier and training: load_into_train_state.


def test_pretrained_lr_mult_scales_backbone_updates():
  config = tiny.get_config()
  config.optimizer, config.weight_decay, config.schedule.warmup_steps = 'sgd', 5e-4, 0
  params = {'backbone': {'w': jnp.ones(3)}, 'classifier': {'w': jnp.ones(3)}}
  grads = jax.tree.map(jnp.ones_like, params)
  plain, _ = optim.make_optimizer(config)  # 1.0: the plain optimizer, state unchanged
  assert not isinstance(plain.init(params), optax.MultiTransformState)
  plain_state = plain.init(params)
  config.pretrained_lr_mult = 0.1
  tx, _ = optim.make_optimizer(config)
  state = tx.init(params)
  for _ in range(2):  # Nesterov momentum and weight decay included
    expected, plain_state = plain.update(grads, plain_state, params)
    updates, state = tx.update(grads, state, params)
    np.testing.assert_allclose(updates['classifier']['w'], expected['classifier']['w'], rtol=1e-6)
    np.testing.assert_allclose(updates['backbone']['w'], 0.1 * expected['backbone']['w'],
                               rtol=1e-6)
  with pytest.raises(ValueError, match="no module named 'backbone'"):
    tx.init({'classifier': params['classifier']})
  # A layer the model names new (here by fnmatch below the backbone) keeps the base rate.
  params = {'backbone': {'w': jnp.ones(3), 'block': {'temporal_conv': {'kernel': jnp.ones(3)}}}}
  tx, _ = optim.make_optimizer(config, new_layers=('*/temporal_conv*',))
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  # SGD's first step with weight decay 5e-4 on ones: -lr * (1 + 5e-4), Nesterov: x (1 + momentum)
  lr, m = config.learning_rate, config.momentum
  step = -lr * (1 + 5e-4) * (1 + m if config.nesterov else 1)
  np.testing.assert_allclose(updates['backbone']['block']['temporal_conv']['kernel'], step,
                             rtol=1e-6)
  np.testing.assert_allclose(updates['backbone']['w'], 0.1 * step, rtol=1e-6)


def test_setup_state_loads_pretrained_backbone_only_when_starting(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.height, config.width, config.clip_len = 32, 16, 2
  model = setup.build_model(config, 4)
  sd = random_state_dict(_abstract(model, (1, 2, 32, 16, 3), jnp.uint8), 'backbone', seed=3)
  path = str(tmp_path / 'tiny.safetensors')
  save_file(sd, path)
  mesh = sharding.make_mesh(jax.devices()[:1])  # compiles faster; the hook is the same
  workdir = str(tmp_path / 'run')
  config.pretrained = path
  config.pretrained_lr_mult = 0.1
  run = setup.setup_state(config, workdir, 4, mesh)
  params, stats = jax.device_get((run.state.params, run.state.batch_stats))
  np.testing.assert_array_equal(params['backbone']['conv1']['kernel'],
                                sd['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(stats['backbone']['layer4_0']['downsample_bn']['mean'],
                                sd['layer4.0.downsample.1.running_mean'])
  # The heads keep their initialization: BNNeck's statistics start at 0 / 1.
  np.testing.assert_array_equal(stats['bnneck']['var'], np.ones_like(stats['bnneck']['var']))
  assert run.state.params['backbone']['conv1']['kernel'].sharding == sharding.replicated(mesh)
  assert isinstance(run.state.opt_state, optax.MultiTransformState)
  run.checkpointer.save(1, run.state, run.meta)
  run.checkpointer.close()
  # Resuming restores the checkpoint; the file is not read again.
  config.pretrained = str(tmp_path / 'gone.safetensors')
  resumed = setup.setup_state(config, workdir, 4, mesh)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.state.params), params)
  resumed.checkpointer.close()


def test_load_into_train_state_places_leaves_on_the_mesh(tmp_path):
  mesh = sharding.make_mesh()  # 8 CPU devices
  rep = sharding.replicated(mesh)
  model = get_model('temporal_pooling', num_classes=2, backbone='resnet_tiny')
  tx = optax.sgd(0.1, momentum=0.9)
  frames = jnp.zeros((1, 1, 32, 16, 3), jnp.uint8)
  state = jax.jit(lambda rng: state_lib.create_train_state(model, tx, rng, frames),
                  out_shardings=rep)(jax.random.key(0))
  state_sharding = jax.tree.map(lambda _: rep, state)
  sd = random_state_dict(jax.device_get(
      {'params': state.params, 'batch_stats': state.batch_stats}), 'backbone')
  np.savez(tmp_path / 'tiny.npz', **sd)
  new = pretrained.load_into_train_state(state, model, tmp_path / 'tiny.npz', state_sharding)
  kernel = new.params['backbone']['conv1']['kernel']
  assert kernel.sharding == rep and len(kernel.addressable_shards) == 8
  np.testing.assert_array_equal(kernel, sd['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(new.batch_stats['backbone']['bn1']['var'], sd['bn1.running_var'])
  assert new.params['classifier']['kernel'] is state.params['classifier']['kernel']
  assert new.opt_state[0].trace['backbone']['conv1']['kernel'].sharding == rep
  # The file is read (and refused) before anything else happens.
  with pytest.raises(FileNotFoundError, match='gone.npz does not exist'):
    pretrained.load_into_train_state(state, model, tmp_path / 'gone.npz', state_sharding)
