"""Pretrained weights against PyTorch: ResNet-50 and Inception-v3 in plain torch
(torchvision's names and structure), random weights and BN statistics, .pth ->
experiments/convert_weights -> .safetensors -> Flax give the same eval-mode
outputs. Skipped without PyTorch; tests/test_pretrained.py needs only numpy."""

import functools
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreid.backbones import inception_v3, pretrained
from jaxreid.models import get_model

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


def _abstract(model, shape, dtype=jnp.float32):
  return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape, dtype)))


if torch is not None:  # PyTorch references, after torchvision's resnet.py and inception.py

  def conv3x3(cin, cout, stride=1):
    return tnn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)

  def conv1x1(cin, cout, stride=1):
    return tnn.Conv2d(cin, cout, kernel_size=1, stride=stride, bias=False)

  class _TorchBlock(tnn.Module):
    """torchvision's block forward: relu(body(x) + shortcut(x))."""

    def forward(self, x):
      identity = x if self.downsample is None else self.downsample(x)
      return self.relu(self.body(x) + identity)

  class TorchBasicBlock(_TorchBlock):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
      super().__init__()
      self.conv1 = conv3x3(inplanes, planes, stride)
      self.bn1 = tnn.BatchNorm2d(planes)
      self.relu = tnn.ReLU(inplace=True)
      self.conv2 = conv3x3(planes, planes)
      self.bn2 = tnn.BatchNorm2d(planes)
      self.downsample = downsample

    def body(self, x):
      return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

  class TorchBottleneck(_TorchBlock):
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

    def body(self, x):
      out = self.relu(self.bn1(self.conv1(x)))
      out = self.relu(self.bn2(self.conv2(out)))
      return self.bn3(self.conv3(out))

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
def test_resnet50_matches_torchvision_layout_forward(tmp_path, caplog):
  ref = _randomize(TorchResNet(TorchBottleneck, [3, 4, 6, 3]), seed=0)
  path, found = _save_and_convert(ref, tmp_path, 'resnet50')
  assert found == 'resnet50'
  with pytest.raises(pretrained.PretrainedWeightsError, match='never unpickles'):
    pretrained.load_state_dict(os.path.join(tmp_path, 'resnet50.pth'))
  # The backbone inside a model, as training loads it (``model.load``): the
  # backbone takes the weights, the heads keep theirs (abstract here: the
  # features compared come before them, so any values do).
  model = get_model('temporal_pooling', num_classes=7, backbone='resnet50', last_stride=2)
  frames = np.random.default_rng(0).integers(0, 256, (2, 2, 64, 64, 3), dtype=np.uint8)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), frames[:1, :1]))
  caplog.set_level(logging.INFO, logger='absl')
  variables = model.load(abstract, pretrained.load_state_dict(path))
  assert ('resnet50.safetensors (resnet50) -> backbone (resnet50): 265 tensors loaded'
          in caplog.text)  # 53 convs + 53 BNs x 4 tensors
  assert 'ImageNet heads left out (the model has its own): fc.bias, fc.weight' in caplog.text
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
def test_inception_v3_matches_torchvision_layout_forward(tmp_path, caplog):
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

  # RRU's model as training loads it (``model.load``): with frames too small for
  # the aux head the ImageNet heads are left out; with an aux head for its own
  # identities it takes all of it but the fc (RRU's code).
  weights = pretrained.load_state_dict(path)
  caplog.set_level(logging.INFO, logger='absl')
  small = get_model('rru', num_classes=625)
  small.load(_abstract(small, (1, 1, 96, 96, 3), jnp.uint8), weights)
  assert 'heads left out (the model has its own): AuxLogits.conv0.bn.bias' in caplog.text
  reid = _abstract(small, (1, 1, 299, 299, 3), jnp.uint8)
  merged = small.load(reid, weights)['params']['backbone']['AuxLogits']
  assert merged['fc']['kernel'] is reid['params']['backbone']['AuxLogits']['fc']['kernel']
  np.testing.assert_array_equal(merged['conv1']['conv']['kernel'],
                                variables['params']['AuxLogits']['conv1']['conv']['kernel'])
