"""P3D-A/B/C bottlenecks against NumPy transcriptions of the two reference codes.

The references (issue 15, item 7):

* ``per_path`` -- the M3D authors' baselines (Li, Zhang, Huang, *Multi-Scale 3D
  Convolution Network for Video Based Person Re-Identification*, AAAI 2019;
  ljn114514/M3D, ResNet50-P3D/model/P3D_A.py, P3D_B.py, P3D_C.py,
  ``Bottleneck.forward``), the code behind that paper's Table 1.
* ``after_block`` -- AP3D (Gu et al., ECCV 2020; guxinqian/AP3D,
  models/AP3D.py ``P3DA/P3DB/P3DC`` inside models/ResNet.py ``Bottleneck3D``).

Each transcription below is the reference's whole bottleneck forward pass,
written from its code in PyTorch's layout (N, C, T, H, W) with PyTorch's
weight shapes (O, I, kt, kh, kw): convolutions as sums of np.einsum over the
zero-padded, strided windows, BatchNorm in inference mode with given running
statistics (eps 1e-5), ReLU. The jaxreid block (``resnet.Bottleneck`` with
``temporal_conv.spatiotemporal_conv`` injected as its spatial unit, as
``jaxreid/models/m3d.py`` builds it; folded (B*T, H, W, C) frames, Flax kernel
layouts) gets the same weights, transposed.

One deliberate difference: jaxreid never downsamples time, so every temporal
stride of the M3D authors' code (their conv2_t / downsample stride ``stride``
in T as well, P3D-C's ``avgpool_s``) is 1 here. AP3D's blocks have temporal
stride 1 already, so they are transcribed as they are.
"""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreid.backbones import resnet
from jaxreid.layers import temporal_conv
from jaxreid.models import m3d

EPS = 1e-5  # torch.nn.BatchNorm3d's default, as jaxreid's backbone


# ---------------------------------------------------------------------------
# NumPy transcription, PyTorch layout.

def conv3d(x, w, stride=(1, 1, 1), padding=(0, 0, 0)):
  """torch.nn.functional.conv3d without bias: x (N, I, T, H, W), w (O, I, kt, kh, kw)."""
  x = np.pad(x, [(0, 0), (0, 0)] + [(p, p) for p in padding])
  kt, kh, kw = w.shape[2:]
  st, sh, sw = stride
  t_out = (x.shape[2] - kt) // st + 1
  h_out = (x.shape[3] - kh) // sh + 1
  w_out = (x.shape[4] - kw) // sw + 1
  y = np.zeros((x.shape[0], w.shape[0], t_out, h_out, w_out))
  for dt in range(kt):
    for dh in range(kh):
      for dw in range(kw):
        window = x[:, :, dt:dt + st * t_out:st, dh:dh + sh * h_out:sh, dw:dw + sw * w_out:sw]
        y += np.einsum('ncthw,oc->nothw', window, w[:, :, dt, dh, dw])
  return y


def bn(x, p):
  """BatchNorm3d in eval mode: (x - running_mean) / sqrt(running_var + eps) * weight + bias."""
  shape = (1, -1, 1, 1, 1)
  return ((x - p['mean'].reshape(shape)) / np.sqrt(p['var'].reshape(shape) + EPS)
          * p['weight'].reshape(shape) + p['bias'].reshape(shape))


def relu(x):
  return np.maximum(x, 0.0)


def m3d_authors_bottleneck(x, w, kind, stride):
  """ljn114514/M3D ResNet50-P3D/model/P3D_{A,B,C}.py, Bottleneck.forward (time stride 1)."""
  residual = x
  out = relu(bn(conv3d(x, w['conv1']), w['bn1']))
  if kind == 'p3d_a':
    out = relu(bn(conv3d(out, w['conv2'], (1, stride, stride), (0, 1, 1)), w['bn2']))
    out = relu(bn(conv3d(out, w['conv2_t'], (1, 1, 1), (1, 0, 0)), w['bn2_t']))
  elif kind == 'p3d_b':
    out_s = relu(bn(conv3d(out, w['conv2'], (1, stride, stride), (0, 1, 1)), w['bn2']))
    out_t = relu(bn(conv3d(out, w['conv2_t'], (1, stride, stride), (1, 0, 0)), w['bn2_t']))
    out = out_s + out_t
  else:  # p3d_c; avgpool_s is the identity at time stride 1
    out = relu(bn(conv3d(out, w['conv2'], (1, stride, stride), (0, 1, 1)), w['bn2']))
    out_t = relu(bn(conv3d(out, w['conv2_t'], (1, 1, 1), (1, 0, 0)), w['bn2_t']))
    out = out + out_t
  out = bn(conv3d(out, w['conv3']), w['bn3'])
  if 'downsample_conv' in w:
    residual = bn(conv3d(x, w['downsample_conv'], (1, stride, stride)), w['downsample_bn'])
  return relu(out + residual)


def ap3d_bottleneck(x, w, kind, stride):
  """guxinqian/AP3D models/ResNet.py Bottleneck3D.forward with conv2 = AP3D.P3D{A,B,C}."""
  residual = x
  out = relu(bn(conv3d(x, w['conv1']), w['bn1']))
  spatial = conv3d(out, w['conv2'], (1, stride, stride), (0, 1, 1))  # spatial_conv3d
  if kind == 'p3d_a':  # temporal_conv3d(spatial_conv3d(x))
    out = conv3d(spatial, w['conv2_t'], (1, 1, 1), (1, 0, 0))
  elif kind == 'p3d_b':  # spatial_conv3d(x) + temporal_conv3d(x), stride (1, s, s)
    out = spatial + conv3d(out, w['conv2_t'], (1, stride, stride), (1, 0, 0))
  else:  # p3d_c: out + temporal_conv3d(out)
    out = spatial + conv3d(spatial, w['conv2_t'], (1, 1, 1), (1, 0, 0))
  out = relu(bn(out, w['bn2']))  # Bottleneck3D: conv2 -> bn2 -> relu
  out = bn(conv3d(out, w['conv3']), w['bn3'])
  if 'downsample_conv' in w:
    residual = bn(conv3d(x, w['downsample_conv'], (1, stride, stride)), w['downsample_bn'])
  return relu(out + residual)


REFERENCES = {'per_path': m3d_authors_bottleneck, 'after_block': ap3d_bottleneck}


def torch_weights(rng, inplanes, planes, per_path, downsample):
  """Random weights and BN statistics with the reference's names and shapes."""
  def conv(o, i, k):
    return rng.normal(0, 0.4, (o, i) + k)
  def norm(c):
    return dict(weight=rng.uniform(0.5, 1.5, c), bias=rng.normal(0, 0.3, c),
                mean=rng.normal(0, 0.3, c), var=rng.uniform(0.5, 1.5, c))
  w = dict(conv1=conv(planes, inplanes, (1, 1, 1)), bn1=norm(planes),
           conv2=conv(planes, planes, (1, 3, 3)), bn2=norm(planes),
           conv2_t=conv(planes, planes, (3, 1, 1)),  # random, so the temporal path matters
           conv3=conv(4 * planes, planes, (1, 1, 1)), bn3=norm(4 * planes))
  if per_path:
    w['bn2_t'] = norm(planes)
  if downsample:
    w['downsample_conv'] = conv(4 * planes, inplanes, (1, 1, 1))
    w['downsample_bn'] = norm(4 * planes)
  return w


def flax_variables(w):
  """The same weights in jaxreid's names and Flax layouts."""
  names = {'conv1': 'conv1', 'conv2': 'conv2', 'conv3': 'conv3', 'conv2_t': 'temporal_conv',
           'downsample_conv': 'downsample_conv', 'bn1': 'bn1', 'bn2': 'bn2', 'bn3': 'bn3',
           'bn2_t': 'temporal_bn', 'downsample_bn': 'downsample_bn'}
  params, stats = {}, {}
  for name, value in w.items():
    if isinstance(value, dict):  # BatchNorm
      params[names[name]] = dict(scale=value['weight'], bias=value['bias'])
      stats[names[name]] = dict(mean=value['mean'], var=value['var'])
    elif name == 'conv2_t':  # (O, I, 3, 1, 1) -> (3, 1, 1, I, O), DHWIO
      params[names[name]] = dict(kernel=value.transpose(2, 3, 4, 1, 0))
    else:  # (O, I, 1, kh, kw) -> (kh, kw, I, O), HWIO
      params[names[name]] = dict(kernel=value[:, :, 0].transpose(2, 3, 1, 0))
  to_jax = lambda tree: jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), tree)
  return {'params': to_jax(params), 'batch_stats': to_jax(stats)}


def jaxreid_block(kind, planes, stride, time_steps, **options):
  conv = functools.partial(nn.Conv, use_bias=False)
  norm = functools.partial(nn.BatchNorm, use_running_average=True, momentum=0.9, epsilon=EPS)
  unit = functools.partial(temporal_conv.spatiotemporal_conv, kind=kind, time_steps=time_steps,
                           **options)
  return resnet.Bottleneck(planes, conv=conv, norm=norm, strides=stride, spatial=unit)


def run_both(kind, p3d_norm, inplanes, stride, seed=0):
  batch, time_steps, height, width, planes = 2, 4, 6, 4, 4
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(batch, inplanes, time_steps, height, width))  # (B, C, T, H, W)
  w = torch_weights(rng, inplanes, planes, per_path=p3d_norm == 'per_path',
                    downsample=stride != 1 or inplanes != 4 * planes)
  expected = REFERENCES[p3d_norm](x, w, kind, stride)  # (B, 4 planes, T, H/s, W/s)
  block = jaxreid_block(kind, planes, stride, time_steps, p3d_norm=p3d_norm)
  folded = x.transpose(0, 2, 3, 4, 1).reshape(batch * time_steps, height, width, inplanes)
  folded = jnp.asarray(folded, jnp.float32)  # (B*T, H, W, C), time inner
  variables = flax_variables(w)
  initial = block.init(jax.random.key(0), folded)
  # Every variable of the block is given, with the shape jaxreid expects.
  assert (jax.tree.map(jnp.shape, initial) == jax.tree.map(jnp.shape, variables))
  y = np.asarray(block.apply(variables, folded), np.float64)  # (B*T, H/s, W/s, 4 planes)
  y = y.reshape((batch, time_steps) + y.shape[1:]).transpose(0, 4, 1, 2, 3)
  return y, expected, (x, w)


@pytest.mark.parametrize('p3d_norm', ['per_path', 'after_block'])
@pytest.mark.parametrize('kind', ['p3d_a', 'p3d_b', 'p3d_c'])
@pytest.mark.parametrize('inplanes,stride', [(16, 1), (8, 2)])
def test_p3d_bottleneck_matches_reference(kind, p3d_norm, inplanes, stride):
  y, expected, _ = run_both(kind, p3d_norm, inplanes, stride)
  assert y.shape == expected.shape
  np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)


class M3DBlockTest(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_m3d_with_one_branch_norm_kernel_is_the_m3d_authors_p3d_c(self):
    """The paper: "If we set n = 1, the M3D layer equals to P3D-C". With the
    official code's per-branch BN + ReLU (``m3d_branch_norm``) that holds for the
    M3D authors' P3D-C, transcribed above."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 8, 4, 6, 4))  # (B, C, T, H, W)
    w = torch_weights(rng, 8, 4, per_path=True, downsample=True)
    expected = m3d_authors_bottleneck(x, w, 'p3d_c', 2)
    block = jaxreid_block('m3d', 4, 2, 4, num_kernels=1, branch_norm=True)
    variables = flax_variables(w)
    for tree in variables.values():  # M3D names its kernel and BN by dilation
      for old, new in (('temporal_conv', 'temporal_conv1'), ('temporal_bn', 'temporal_bn1')):
        if old in tree:
          tree[new] = tree.pop(old)
    folded = jnp.asarray(x.transpose(0, 2, 3, 4, 1).reshape(8, 6, 4, 8))  # (B*T, H, W, C)
    y = np.asarray(self.variant(block.apply)(variables, folded), np.float64)
    y = y.reshape((2, 4) + y.shape[1:]).transpose(0, 4, 1, 2, 3)
    chex.assert_trees_all_close(y, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('kind', ['p3d_a', 'p3d_b', 'p3d_c'])
def test_the_two_constructions_compute_different_functions(kind):
  """The comparison above can tell the two apart: the other reference's forward
  pass on the same weights is far from jaxreid's output."""
  y, _, (x, w) = run_both(kind, 'per_path', 8, 2)
  other = ap3d_bottleneck(x, w, kind, 2)
  assert np.abs(y - other).max() > 1e-2


def test_unknown_p3d_norm_is_one_clear_error():
  block = jaxreid_block('p3d_b', 4, 1, 4, p3d_norm='before')
  with pytest.raises(ValueError, match="p3d_norm 'before'; valid choices: per_path, after_block"):
    block.init(jax.random.key(0), jnp.zeros((4, 6, 4, 16)))
  # The video ResNet checks it even where no block is P3D.
  with pytest.raises(ValueError, match="p3d_norm 'before'"):
    m3d.VideoResNet(num_classes=0, backbone='resnet_tiny', temporal='m3d',
                    p3d_norm='before').init(jax.random.key(0), jnp.zeros((1, 4, 32, 16, 3)))
