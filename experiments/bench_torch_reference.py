"""The PyTorch eager reference of the train-step benchmark: `video_resnet`'s
temporal-pooling ResNet-50 ('2d') and its I3D variant ('i3d') in plain
torch.nn (no torchvision), the same architecture as ``jaxreid/models/m3d.py``'s
``VideoResNet`` with ``ral=''``, and a train step doing what the library's
does (forward, softmax CE, backward, SGD momentum with L2 weight decay,
BatchNorm statistics).

Layout: frames are folded to (B*T, C, H, W), as the JAX backbone folds them,
and every layer is a 2D one except I3D's 3x3x3 convolutions, which unfold to
(B, C, T, H, W) and back around the Conv3d. Module names are torchvision's
(``layer1.0.conv2``), so ``load_flax_variables`` copies a JAX model's variables
into the torch one through the library's own name mapping
(``jaxreid.backbones.pretrained.export_torchvision``) and the two networks
compute the same function from the same weights.

Imports torch at import time: import this module only where torch is
installed (``bench_torch_compare``, ``bench_gpu`` check first).
"""

import statistics
import time
from typing import Mapping, Optional

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from jaxreid.backbones import pretrained
from jaxreid.models import common

TORCH_TEMPORAL = ('2d', 'i3d')


class Bottleneck(nn.Module):
  """torchvision's Bottleneck (v1.5: stride on conv2); conv2 is a 3x3x3 Conv3d
  (stride (1, s, s)) for I3D, applied to the clip unfolded over time."""

  def __init__(self, inplanes: int, planes: int, stride: int, i3d: bool):
    super().__init__()
    self.i3d = i3d
    self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(planes)
    if i3d:
      self.conv2 = nn.Conv3d(planes, planes, 3, stride=(1, stride, stride), padding=1,
                             bias=False)
    else:
      self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.downsample = None
    if stride != 1 or inplanes != planes * 4:
      self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                      nn.BatchNorm2d(planes * 4))

  def forward(self, x, time_steps: int):  # (B*T, C, H, W)
    out = F.relu(self.bn1(self.conv1(x)))
    if self.i3d:
      n, c, h, w = out.shape
      clip = out.view(n // time_steps, time_steps, c, h, w).transpose(1, 2)  # (B, C, T, H, W)
      clip = self.conv2(clip)
      out = clip.transpose(1, 2).reshape(n, c, clip.shape[-2], clip.shape[-1])
    else:
      out = self.conv2(out)
    out = F.relu(self.bn2(out))
    out = self.bn3(self.conv3(out))
    identity = x if self.downsample is None else self.downsample(x)
    return F.relu(out + identity)


class ResNet50Trunk(nn.Module):
  """ResNet-50 (3, 4, 6, 3) with the stem width `width` (64: the published
  net), last stride `last_stride`; returns C5 (B*T, 32 * width, h, w)."""

  def __init__(self, width: int = 64, last_stride: int = 1, i3d: bool = False):
    super().__init__()
    self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    inplanes = width
    for i, blocks in enumerate((3, 4, 6, 3)):
      planes = width * 2**i
      first_stride = 1 if i == 0 else (last_stride if i == 3 else 2)
      layer = []
      for j in range(blocks):
        layer.append(Bottleneck(inplanes, planes, first_stride if j == 0 else 1, i3d))
        inplanes = planes * 4
      setattr(self, f'layer{i + 1}', nn.ModuleList(layer))

  def forward(self, x, time_steps: int):
    x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, stride=2, padding=1)
    for i in range(1, 5):
      for block in getattr(self, f'layer{i}'):
        x = block(x, time_steps)
    return x


class TorchVideoResNet(nn.Module):
  """VideoResNet(ral='') in torch: ImageNet normalization of uint8 frames,
  the trunk on every frame, spatial then temporal average of C5, BNNeck
  (BatchNorm without a trained shift) and a bias-free classifier."""

  def __init__(self, num_classes: int, temporal: str = '2d', width: int = 64,
               last_stride: int = 1):
    super().__init__()
    if temporal not in TORCH_TEMPORAL:
      raise ValueError(f'temporal={temporal!r}: the torch reference has {TORCH_TEMPORAL}.')
    self.backbone = ResNet50Trunk(width, last_stride, i3d=temporal == 'i3d')
    self.bnneck = nn.BatchNorm1d(32 * width)
    self.bnneck.bias.requires_grad_(False)  # Flax's BNNeck has no shift (use_bias=False)
    self.classifier = nn.Linear(32 * width, num_classes, bias=False)
    self.register_buffer('mean', torch.tensor(common.IMAGENET_MEAN).view(1, 3, 1, 1))
    self.register_buffer('std', torch.tensor(common.IMAGENET_STD).view(1, 3, 1, 1))
    # NHWC activations (set with model.to(memory_format=torch.channels_last)):
    # the fast cuDNN layout on a GPU; NCHW, PyTorch's default, elsewhere.
    self.channels_last = False

  def forward(self, frames):  # (B, T, H, W, 3) uint8 -> {'embedding', 'logits'}
    b, t, h, w, _ = frames.shape
    x = frames.reshape(b * t, h, w, 3).permute(0, 3, 1, 2).float()  # (B*T, 3, H, W)
    x = (x - self.mean) / self.std
    if self.channels_last:
      x = x.contiguous(memory_format=torch.channels_last)
    c5 = self.backbone(x, t)  # (B*T, C, h, w)
    features = c5.float().mean(dim=(2, 3)).view(b, t, -1).mean(dim=1)  # (B, C)
    embedding = self.bnneck(features)
    return {'embedding': embedding, 'logits': self.classifier(embedding)}


def trainable_parameters(module: nn.Module) -> int:
  """Parameters the optimizer updates (the JAX count of `params` leaves)."""
  return sum(p.numel() for p in module.parameters() if p.requires_grad)


def load_flax_variables(model: TorchVideoResNet, variables: Mapping) -> None:
  """Copies a JAX VideoResNet's {'params', 'batch_stats'} into `model`
  (strict: every torch tensor gets a value)."""
  state = {f'backbone.{k}': v for k, v in pretrained.export_torchvision(variables).items()}
  params, stats = variables['params'], variables['batch_stats']
  state.update({
      'bnneck.weight': params['bnneck']['scale'],
      'bnneck.bias': np.zeros_like(np.asarray(params['bnneck']['scale'])),
      'bnneck.running_mean': stats['bnneck']['mean'],
      'bnneck.running_var': stats['bnneck']['var'],
      'bnneck.num_batches_tracked': np.zeros((), np.int64),
      'classifier.weight': np.asarray(params['classifier']['kernel']).T,
      'mean': model.mean.numpy(), 'std': model.std.numpy()})
  model.load_state_dict({k: torch.as_tensor(np.array(v)) for k, v in state.items()}, strict=True)


def make_train_step(model: nn.Module, learning_rate: float, momentum: float,
                    weight_decay: float, autocast_dtype: Optional[torch.dtype] = None):
  """step(frames uint8 (B, T, H, W, 3), labels int64 (B,)) -> loss: one SGD
  step (torch.optim.SGD's L2 weight decay = the library's 'sgd' optimizer).
  `autocast_dtype` (e.g. torch.bfloat16): mixed-precision forward."""
  params = [p for p in model.parameters() if p.requires_grad]
  opt = torch.optim.SGD(params, lr=learning_rate, momentum=momentum, weight_decay=weight_decay)
  device_type = next(model.parameters()).device.type
  model.train()

  def step(frames, labels):
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type, dtype=autocast_dtype or torch.float32,
                        enabled=autocast_dtype is not None):
      loss = F.cross_entropy(model(frames)['logits'].float(), labels)
    loss.backward()
    opt.step()
    return loss.detach()
  return step


def median_torch_step_seconds(step, frames, labels, repeats: int, warmup: int = 2) -> float:
  """Median wall seconds of `step(frames, labels)` over `repeats` calls after
  `warmup` untimed ones, synchronizing CUDA after each."""
  def sync():
    if frames.is_cuda:
      torch.cuda.synchronize()
  for _ in range(warmup):
    step(frames, labels)
  sync()
  times = []
  for _ in range(max(1, repeats)):
    start = time.perf_counter()
    step(frames, labels)
    sync()
    times.append(time.perf_counter() - start)
  return statistics.median(times)
