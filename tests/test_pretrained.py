"""Pretrained weights: torchvision-layout files into the Flax backbones.

With PyTorch installed, ResNet-50 and Inception-v3 written here in plain torch
(torchvision's module names and structure) get random weights and BatchNorm
statistics, go through .pth -> experiments/convert_weights -> .safetensors ->
Flax, and must give the same eval-mode outputs. Without PyTorch those tests
are skipped; the rest (file formats, errors, heads, the optimizer's
multiplier, the loop's hook) needs only numpy.
"""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import tiny
from jaxreid.backbones import inception_v3, pretrained, resnet
from jaxreid.models import get_model
from jaxreid.training import loop, optim, sharding

try:
  import torch
  from torch import nn as tnn
  import torch.nn.functional as F
except ImportError:  # pragma: no cover
  torch = None

needs_torch = pytest.mark.skipif(torch is None, reason='PyTorch is not installed (pip install '
                                 'torch==2.13.0, the test extra) for the reference forward pass')
MAX_REL_ERR = 1e-4


def _rel_err(flax_nhwc, torch_nchw):
  a = np.asarray(flax_nhwc, np.float64)
  b = torch_nchw.detach().double().numpy()
  if b.ndim == 4:
    b = b.transpose(0, 2, 3, 1)
  assert a.shape == b.shape
  return float(np.abs(a - b).max() / np.abs(b).max())


def _abstract(model, shape):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape)))


def _random_state_dict(variables, prefix='', seed=0):
  """A torchvision-layout state dict of random values for the Flax `variables`."""
  rng = np.random.default_rng(seed)
  zeros = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), variables)
  sd = pretrained.export_torchvision(zeros, prefix)
  return {k: (v if k.endswith('num_batches_tracked')
              else rng.uniform(0.5, 1.5, v.shape).astype(np.float32) if k.endswith('running_var')
              else rng.normal(0, 0.1, v.shape).astype(np.float32)) for k, v in sd.items()}


# ----------------------------------------------------------------------------
# PyTorch references, after torchvision's resnet.py and inception.py.

if torch is not None:

  def conv3x3(cin, cout, stride=1):
    return tnn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)

  def conv1x1(cin, cout, stride=1):
    return tnn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)

  class TorchBasicBlock(tnn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1 = conv3x3(inplanes, planes, stride)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.relu = tnn.ReLU(inplace=True)
      self.conv2 = conv3x3(planes, planes)
      self.bn2 = tnn.BatchNorm2d(planes)
      self.downsample = downsample

    def forward(self, x):
      identity = x
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.bn2(self.conv2(out))
      if self.downsample is not None:
        identity = self.downsample(x)
      return self.relu(out + identity)

  class TorchBottleneck(tnn.Module):
    """torchvision's Bottleneck (v1.5: the stride sits on conv2)."""
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1 = conv1x1(inplanes, planes)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.conv2 = conv3x3(planes, planes, stride)
      self.bn2 = tnn.BatchNorm2d(planes)
      self.conv3 = conv1x1(planes, planes * 4)
      self.bn3 = tnn.BatchNorm2d(planes * 4)
      self.relu = tnn.ReLU(inplace=True)
      self.downsample = downsample

    def forward(self, x):
      identity = x
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      out = self.bn3(self.conv3(out))
      if self.downsample is not None:
        identity = self.downsample(x)
      return self.relu(out + identity)

  class TorchResNet(tnn.Module):
    def __init__(self, block, layers, num_classes=1000):
      super().__init__()
      self.inplanes = 64
      self.conv1 = tnn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
      self.bn1 = tnn.BatchNorm2d(64)
      self.relu = tnn.ReLU(inplace=True)
      self.maxpool = tnn.MaxPool2d(kernel_size=3, stride=2, padding=1)
      self.layer1 = self._make_layer(block, 64, layers[0])
      self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
      self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
      self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
      self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
      self.fc = tnn.Linear(512 * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
      downsample = None
      if stride != 1 or self.inplanes != planes * block.expansion:
        downsample = tnn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                    tnn.BatchNorm2d(planes * block.expansion))
      layers = [block(self.inplanes, planes, stride, downsample)]
      self.inplanes = planes * block.expansion
      layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
      return tnn.Sequential(*layers)

    def forward(self, x):
      x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
      out = {}
      for i in range(1, 5):
        x = getattr(self, f'layer{i}')(x)
        out[f'C{i + 1}'] = x
      out['logits'] = self.fc(torch.flatten(self.avgpool(x), 1))
      return out

  class BasicConv2d(tnn.Module):
    def __init__(self, cin, cout, **kwargs):
      super().__init__()
      self.conv = tnn.Conv2d(cin, cout, bias=False, **kwargs)
      self.bn = tnn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
      return F.relu(self.bn(self.conv(x)), inplace=True)

  class InceptionA(tnn.Module):
    def __init__(self, cin, pool_features):
      super().__init__()
      self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
      self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
      self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
      self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
      b1 = self.branch1x1(x)
      b5 = self.branch5x5_2(self.branch5x5_1(x))
      b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
      bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
      return torch.cat([b1, b5, b3, bp], 1)

  class InceptionB(tnn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
      self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
      self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
      b3 = self.branch3x3(x)
      bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
      return torch.cat([b3, bd, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

  class InceptionC(tnn.Module):
    def __init__(self, cin, channels_7x7):
      super().__init__()
      c7 = channels_7x7
      self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
      self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
      self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
      b1 = self.branch1x1(x)
      b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
      bd = self.branch7x7dbl_1(x)
      for i in range(2, 6):
        bd = getattr(self, f'branch7x7dbl_{i}')(bd)
      bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
      return torch.cat([b1, b7, bd, bp], 1)

  class InceptionD(tnn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
      self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
      self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
      self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
      self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
      b3 = self.branch3x3_2(self.branch3x3_1(x))
      b7 = self.branch7x7x3_1(x)
      for i in range(2, 5):
        b7 = getattr(self, f'branch7x7x3_{i}')(b7)
      return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)

  class InceptionE(tnn.Module):
    def __init__(self, cin):
      super().__init__()
      self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
      self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
      self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
      self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
      self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
      self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
      self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
      b1 = self.branch1x1(x)
      b3 = self.branch3x3_1(x)
      b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
      bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
      bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
      bp = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
      return torch.cat([b1, b3, bd, bp], 1)

  class InceptionAux(tnn.Module):
    def __init__(self, cin, num_classes):
      super().__init__()
      self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
      self.conv1 = BasicConv2d(128, 768, kernel_size=5)
      self.fc = tnn.Linear(768, num_classes)

    def forward(self, x):
      x = F.avg_pool2d(x, kernel_size=5, stride=3)
      x = self.conv1(self.conv0(x))
      return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))

  class TorchInception3(tnn.Module):
    def __init__(self, num_classes=1000, aux_logits=True, transform_input=False):
      super().__init__()
      self.transform_input = transform_input
      self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
      self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
      self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
      self.maxpool1 = tnn.MaxPool2d(kernel_size=3, stride=2)
      self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
      self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
      self.maxpool2 = tnn.MaxPool2d(kernel_size=3, stride=2)
      self.Mixed_5b = InceptionA(192, pool_features=32)
      self.Mixed_5c = InceptionA(256, pool_features=64)
      self.Mixed_5d = InceptionA(288, pool_features=64)
      self.Mixed_6a = InceptionB(288)
      self.Mixed_6b = InceptionC(768, channels_7x7=128)
      self.Mixed_6c = InceptionC(768, channels_7x7=160)
      self.Mixed_6d = InceptionC(768, channels_7x7=160)
      self.Mixed_6e = InceptionC(768, channels_7x7=192)
      self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
      self.Mixed_7a = InceptionD(768)
      self.Mixed_7b = InceptionE(1280)
      self.Mixed_7c = InceptionE(2048)
      self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
      self.dropout = tnn.Dropout(p=0.5)
      self.fc = tnn.Linear(2048, num_classes)

    def _transform_input(self, x):
      if self.transform_input:
        x_ch0 = torch.unsqueeze(x[:, 0], 1) * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
        x_ch1 = torch.unsqueeze(x[:, 1], 1) * (0.224 / 0.5) + (0.456 - 0.5) / 0.5
        x_ch2 = torch.unsqueeze(x[:, 2], 1) * (0.225 / 0.5) + (0.406 - 0.5) / 0.5
        x = torch.cat((x_ch0, x_ch1, x_ch2), 1)
      return x

    def forward(self, x):
      x = self._transform_input(x)
      x = self.maxpool1(self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x))))
      x = self.maxpool2(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)))
      x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
      out = {'Mixed_5d': x}
      x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))
      out['Mixed_6e'] = x
      if self.AuxLogits is not None and self.training:
        out['aux_logits'] = self.AuxLogits(x)
      out['Mixed_7c'] = x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
      out['logits'] = self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))
      return out

  def _randomize(module, seed):
    """Random weights and BatchNorm statistics, scaled to keep activations O(1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
      for m in module.modules():
        if isinstance(m, (tnn.Conv2d, tnn.Linear)):
          fan_in = m.weight[0].numel()
          m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
          if m.bias is not None:
            m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        elif isinstance(m, tnn.BatchNorm2d):
          m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
          m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
          m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
          m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
          m.num_batches_tracked.fill_(1000)
    return module.eval()

  def _save_and_convert(module, tmp_path, name):
    """state_dict -> .pth (torch.save) -> convert_weights -> .safetensors."""
    from experiments import convert_weights  # pylint: disable=g-import-not-at-top
    pth = os.path.join(tmp_path, f'{name}.pth')
    torch.save(module.state_dict(), pth)
    out = os.path.join(tmp_path, f'{name}.safetensors')
    found = convert_weights.convert(out, input_path=pth)
    return out, found


@needs_torch
def test_resnet50_matches_torchvision_layout_forward(tmp_path):
  ref = _randomize(TorchResNet(TorchBottleneck, [3, 4, 6, 3]), seed=0)
  path, found = _save_and_convert(ref, tmp_path, 'resnet50')
  assert found == 'resnet50'
  with pytest.raises(pretrained.PretrainedWeightsError, match='never unpickles'):
    pretrained.load_state_dict(os.path.join(tmp_path, 'resnet50.pth'))

  # The backbone inside a model, under 'backbone': it takes the weights, the heads keep
  # theirs (abstract here: the features compared come before them, so any values do).
  model = get_model('temporal_pooling', num_classes=7, backbone='resnet50', last_stride=2)
  frames = np.random.default_rng(0).integers(0, 256, (2, 2, 64, 64, 3), dtype=np.uint8)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), frames[:1, :1]))
  variables, report = pretrained.merge_pretrained(abstract, path)
  assert report.ok and report.heads_left_out == ['fc.bias', 'fc.weight']
  assert len(report.loaded) == 265  # 53 convs + 53 BNs x 4 tensors
  assert variables['params']['classifier']['kernel'] is abstract['params']['classifier']['kernel']
  variables = jax.tree.map(lambda x: np.ones(x.shape, x.dtype) if isinstance(
      x, jax.ShapeDtypeStruct) else x, variables)
  out, captured = jax.jit(functools.partial(
      model.apply, capture_intermediates=lambda m, _: m.name == 'backbone',
      mutable=['intermediates']))(variables, frames)
  stages = captured['intermediates']['backbone']['__call__'][0]  # (B*T, h, w, C) each

  # torch on the same frames, normalized as the model does.
  x = (frames.reshape(4, 64, 64, 3).astype(np.float32) / 255 -
       np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(x.transpose(0, 3, 1, 2)))
  errors = {k: _rel_err(stages[k], expected[k]) for k in ('C2', 'C3', 'C4', 'C5')}
  pooled = expected['C5'].mean(dim=(2, 3)).reshape(2, 2, -1).mean(dim=1)  # GAP, then over T
  errors['pooled feature'] = _rel_err(out['triplet_features'], pooled)
  print('ResNet-50 max relative errors:', errors)
  assert max(errors.values()) < MAX_REL_ERR, errors


@needs_torch
def test_inception_v3_matches_torchvision_layout_forward(tmp_path):
  ref = _randomize(TorchInception3(num_classes=1000, aux_logits=True, transform_input=True), 1)
  path, found = _save_and_convert(ref, tmp_path, 'inception_v3')
  assert found == 'inception_v3'
  model = inception_v3.InceptionV3(aux_classes=1000, transform_input=True)
  # Every variable comes from the file, so the abstract tree fills completely.
  variables, report = pretrained.merge_pretrained(_abstract(model, (1, 299, 299, 3)), path,
                                                  prefix='')
  assert report.ok and report.heads_left_out == ['fc.bias', 'fc.weight']
  assert report.metadata['transform_input'] == 'true'

  images = np.random.default_rng(0).normal(size=(2, 96, 96, 3)).astype(np.float32)
  with torch.no_grad():
    expected = ref(torch.from_numpy(images.transpose(0, 3, 1, 2)))
  out = jax.jit(model.apply)(variables, images)
  errors = {k: _rel_err(out[k], expected[k]) for k in ('Mixed_5d', 'Mixed_6e', 'Mixed_7c')}

  # The auxiliary head at its 17 x 17 input (inputs of 299 px), on its own.
  mixed_6e = np.random.default_rng(1).uniform(0, 2, (2, 17, 17, 768)).astype(np.float32)
  with torch.no_grad():
    expected_aux = ref.AuxLogits(torch.from_numpy(mixed_6e.transpose(0, 3, 1, 2)))
  aux = inception_v3.InceptionAux(1000).apply(
      {'params': variables['params']['AuxLogits'],
       'batch_stats': variables['batch_stats']['AuxLogits']}, mixed_6e)
  errors['aux_logits'] = _rel_err(aux, expected_aux)
  print('Inception-v3 max relative errors:', errors)
  assert max(errors.values()) < MAX_REL_ERR, errors

  # A re-ID backbone without the aux head (smaller frames) leaves the ImageNet heads out;
  # one with an aux head for its own identities takes all of it but the fc (RRU's code).
  small = inception_v3.InceptionV3(transform_input=True)
  _, report = pretrained.merge_pretrained(_abstract(small, (1, 96, 96, 3)), path, prefix='')
  assert report.ok and 'AuxLogits.conv0.conv.weight' in report.heads_left_out
  reid = _abstract(inception_v3.InceptionV3(aux_classes=625), (1, 299, 299, 3))
  merged, report = pretrained.merge_pretrained(reid, path, prefix='')
  assert report.ok and report.heads_left_out == ['AuxLogits.fc.bias', 'AuxLogits.fc.weight',
                                                 'fc.bias', 'fc.weight']
  assert merged['params']['AuxLogits']['fc']['kernel'] is reid['params']['AuxLogits']['fc']['kernel']
  np.testing.assert_array_equal(merged['params']['AuxLogits']['conv1']['conv']['kernel'],
                                variables['params']['AuxLogits']['conv1']['conv']['kernel'])


# ----------------------------------------------------------------------------
# Files and errors (no PyTorch needed).


@pytest.fixture(scope='module')
def resnet18_file(tmp_path_factory):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  sd = _random_state_dict(_abstract(resnet.ResNet18(), (1, 64, 64, 3)))
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
  abstract = _abstract(resnet.ResNet50(), (1, 64, 64, 3))
  with pytest.raises(pretrained.PretrainedWeightsError) as e:
    pretrained.merge_pretrained(abstract, path, prefix='')
  msg = str(e.value)
  assert 'resnet18.safetensors' in msg
  assert "holds resnet18 weights but the model's backbone under '' is resnet50" in msg
  assert 'model variables not in the file: params:layer1_0/bn3/bias' in msg
  assert 'of the wrong shape' in msg and 'convert_weights' in msg
  # The synthetic config's quarter-width ResNet-18 cannot take ImageNet weights either.
  narrow = _abstract(resnet.ResNet18(width=16), (1, 64, 64, 3))
  with pytest.raises(pretrained.PretrainedWeightsError,
                     match=r"resnet18 weights but .* is resnet18 \(width 16\)(.|\n)*"
                           r"published widths: set config.model.backbone_width=0"):
    pretrained.merge_pretrained(narrow, path, prefix='')
  # Not strict: what fits is loaded (the rest keeps its initialization), the rest reported.
  merged, report = pretrained.merge_pretrained(abstract, path, prefix='', strict=False)
  assert not report.ok and len(report.misshaped) == 23 and len(report.missing) == 165
  np.testing.assert_array_equal(merged['params']['conv1']['kernel'],
                                pretrained.load_state_dict(path)['conv1.weight']
                                .transpose(2, 3, 1, 0))
  assert merged['params']['layer1_0']['conv3']['kernel'] is \
      abstract['params']['layer1_0']['conv3']['kernel']
  # A wrong prefix says where the modules are.
  with pytest.raises(pretrained.PretrainedWeightsError,
                     match=r"no variables under 'x' \(its top-level modules: bn1, conv1, layer1_0"):
    pretrained.merge_pretrained(abstract, path, prefix='x')


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
  """What an I3D/M3D backbone will use: 2D kernels inflated to 3D, new variables kept."""
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


# ----------------------------------------------------------------------------
# Optimizer multiplier and the training loop's hook.


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


def test_setup_state_loads_pretrained_backbone_only_when_starting(tmp_path):
  from safetensors.numpy import save_file  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.height, config.width, config.clip_len = 32, 16, 2
  model = loop.build_model(config, 4)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0),
                                               jnp.zeros((1, 2, 32, 16, 3), jnp.uint8)))
  sd = _random_state_dict(abstract, 'backbone', seed=3)
  path = str(tmp_path / 'tiny.safetensors')
  save_file(sd, path)
  mesh = sharding.make_mesh(jax.devices()[:1])  # compiles faster; the hook is the same
  workdir = str(tmp_path / 'run')
  config.pretrained = path
  config.pretrained_lr_mult = 0.1
  _, state, _, _, ckpt, meta = loop.setup_state(config, workdir, 4, mesh)
  params, stats = jax.device_get((state.params, state.batch_stats))
  np.testing.assert_array_equal(params['backbone']['conv1']['kernel'],
                                sd['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(stats['backbone']['layer4_0']['downsample_bn']['mean'],
                                sd['layer4.0.downsample.1.running_mean'])
  # The heads keep their initialization: BNNeck's statistics start at 0 / 1.
  np.testing.assert_array_equal(stats['bnneck']['var'], np.ones_like(stats['bnneck']['var']))
  replicated = sharding.replicated(mesh)
  assert state.params['backbone']['conv1']['kernel'].sharding == replicated
  assert isinstance(state.opt_state, optax.MultiTransformState)
  ckpt.save(1, state, meta)
  ckpt.close()
  # Resuming restores the checkpoint; the file is not read again.
  config.pretrained = str(tmp_path / 'gone.safetensors')
  _, resumed, _, _, ckpt, _ = loop.setup_state(config, workdir, 4, mesh)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(resumed.params), params)
  ckpt.close()


def test_load_into_train_state_places_leaves_on_the_mesh():
  from jaxreid.training import state as state_lib  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh()  # 8 CPU devices
  rep = sharding.replicated(mesh)
  params = {'backbone': {'conv1': {'kernel': jnp.zeros((3, 3, 3, 4))}}, 'head': {'w': jnp.ones(2)}}
  stats = {'backbone': {'bn1': {'mean': jnp.zeros(4), 'var': jnp.ones(4)}}}
  tx = optax.sgd(0.1, momentum=0.9)
  state = state_lib.TrainState.create(apply_fn=None, params=params, tx=tx, batch_stats=stats)
  state = jax.device_put(state, rep)
  state_sharding = jax.tree.map(lambda _: rep, state)
  rng = np.random.default_rng(0)
  sd = {'conv1.weight': rng.normal(size=(4, 3, 3, 3)).astype(np.float32),
        'bn1.running_mean': rng.normal(size=4).astype(np.float32),
        'bn1.running_var': rng.uniform(1, 2, 4).astype(np.float32),
        'bn1.num_batches_tracked': np.array(7)}
  new = pretrained.load_into_train_state(state, sd, state_sharding)
  kernel = new.params['backbone']['conv1']['kernel']
  assert kernel.sharding == rep and len(kernel.addressable_shards) == 8
  np.testing.assert_array_equal(kernel, sd['conv1.weight'].transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(new.batch_stats['backbone']['bn1']['var'], sd['bn1.running_var'])
  assert new.params['head']['w'] is state.params['head']['w']
  assert new.opt_state[0].trace['backbone']['conv1']['kernel'].sharding == rep
