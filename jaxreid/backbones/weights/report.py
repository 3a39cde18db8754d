"""What a merge of pretrained weights did, and which architecture a file or
a model holds, for the messages that say why a file does not fit."""

import dataclasses
import re
from typing import Any, Dict, List, Mapping, Sequence, Tuple

from jaxreid.backbones.weights import torch_names

_RESNET_NAMES = {
    'resnet18': ((2, 2, 2, 2), False), 'resnet34': ((3, 4, 6, 3), False),
    'resnet50': ((3, 4, 6, 3), True), 'resnet101': ((3, 4, 23, 3), True),
    'resnet152': ((3, 8, 36, 3), True)}


def describe_state_dict(shapes: Mapping[str, Sequence[int]]) -> str:
  """'resnet50', 'inception_v3', 'resnet18 (width 16)', ... from tensor names and shapes."""
  names = set(shapes)
  if any(n.startswith('Mixed_7c.') for n in names):
    aux = any(n.startswith('AuxLogits.') for n in names)
    return 'inception_v3' + ('' if aux else ' (no auxiliary classifier)')
  blocks = _count_blocks(n.split('.')[0] + '.' + n.split('.')[1] for n in names
                         if re.match(r'layer\d+\.\d+\.', n))
  if not blocks:
    return 'no torchvision ResNet or Inception-v3 (unrecognized tensor names)'
  width = tuple(shapes['conv1.weight'])[0] if 'conv1.weight' in names else None
  return _resnet_name(blocks, 'layer1.0.conv3.weight' in names, width)


def describe_variables(variables: Mapping[str, Any], prefix: str = 'backbone') -> str:
  """The same description for the Flax backbone under `prefix`."""
  target = torch_names.subtree(variables, prefix)
  modules = {path[0] for _, path in target}
  if 'Mixed_7c' in modules:
    return 'inception_v3' + ('' if 'AuxLogits' in modules else ' (no auxiliary classifier)')
  blocks = _count_blocks(m.replace('_', '.') for m in modules if re.fullmatch(r'layer\d+_\d+', m))
  if not blocks:
    return (f'not a torchvision-layout ResNet or Inception-v3 '
            f'(modules: {", ".join(sorted(modules))})')
  kernel = target.get(('params', ('conv1', 'kernel')))
  width = kernel.shape[-1] if kernel is not None else None
  return _resnet_name(blocks, ('params', ('layer1_0', 'conv3', 'kernel')) in target, width)


def _count_blocks(block_names) -> Tuple[int, ...]:
  per_layer: Dict[int, set] = {}
  for b in block_names:
    layer, index = b.split('.')
    per_layer.setdefault(int(layer[len('layer'):]), set()).add(int(index))
  return tuple(len(per_layer[k]) for k in sorted(per_layer))


def _resnet_name(blocks, bottleneck: bool, width) -> str:
  name = next((n for n, spec in _RESNET_NAMES.items() if spec == (blocks, bottleneck)), None)
  if name is None:
    name = f'a ResNet with {"bottleneck" if bottleneck else "basic"} blocks {blocks}'
  if width is not None and width != 64:
    name += f' (width {width})'
  return name


@dataclasses.dataclass
class LoadReport:
  """What a merge did. Names are torchvision's for file tensors and Flax paths
  (``collection:a/b/c``) for model variables."""
  source: str
  prefix: str
  file_arch: str
  model_arch: str
  metadata: Dict[str, str] = dataclasses.field(default_factory=dict)
  loaded: List[str] = dataclasses.field(default_factory=list)
  missing: List[str] = dataclasses.field(default_factory=list)
  unexpected: List[str] = dataclasses.field(default_factory=list)
  # (torch name, Flax path, file shape in Flax layout, model shape)
  misshaped: List[Tuple[str, str, Tuple[int, ...], Tuple[int, ...]]] = dataclasses.field(
      default_factory=list)
  heads_left_out: List[str] = dataclasses.field(default_factory=list)
  kept_init: List[str] = dataclasses.field(default_factory=list)

  @property
  def ok(self) -> bool:
    return not (self.missing or self.unexpected or self.misshaped)

  def summary(self) -> str:
    lines = [f'Pretrained weights {self.source} ({self.file_arch}) -> {self.prefix or "model"} '
             f'({self.model_arch}): {len(self.loaded)} tensors loaded.']
    if self.heads_left_out:
      lines.append(f'  ImageNet heads left out (the model has its own): '
                   f'{_names(self.heads_left_out)}')
    if self.kept_init:
      lines.append(f'  kept their initialization (keep_init): {_names(self.kept_init)}')
    lines += self._problem_lines()
    return '\n'.join(lines)

  def _problem_lines(self) -> List[str]:
    lines = []
    if self.missing:
      lines.append(f'  {len(self.missing)} model variables not in the file: '
                   f'{_names(self.missing)}')
    if self.unexpected:
      lines.append(f'  {len(self.unexpected)} file tensors the model has no variable for: '
                   f'{_names(self.unexpected)}')
    if self.misshaped:
      shown = [f'{t} -> {p}: file {f}, model {m}' for t, p, f, m in self.misshaped]
      lines.append(f'  {len(self.misshaped)} tensors of the wrong shape (Flax layout): '
                   f'{_names(shown, 5)}')
    return lines

  def error_message(self) -> str:
    if self.file_arch != self.model_arch:
      what = (f'it holds {self.file_arch} weights but the model\'s backbone under '
              f'{self.prefix!r} is {self.model_arch}')
    else:
      what = f'it does not fit the model\'s {self.model_arch} backbone under {self.prefix!r}'
    if '(width' in self.model_arch:
      fix = ('ImageNet weights exist only for the published widths: set '
             'config.model.backbone_width=0 (the published width), or train from scratch '
             '(config.pretrained=\'\')')
    else:
      fix = (f'use a file converted from torchvision\'s {self.model_arch.split(" (")[0]} '
             f'(python -m experiments.convert_weights), or set config.model.backbone to what the '
             f'file holds')
    return '\n'.join(
        [f'Cannot load pretrained weights from {self.source}: {what}.'] + self._problem_lines() +
        [f'To fix it: {fix}; or load with strict=False to take only what fits.'])


def _names(names: Sequence[str], limit: int = 8) -> str:
  shown = ', '.join(names[:limit])
  return shown + (f' ... and {len(names) - limit} more' if len(names) > limit else '')
