"""ImageNet-pretrained backbones: torchvision-layout weights into Flax variables.

Files: ``.safetensors`` or ``.npz`` holding a torchvision state dict (tensor
name -> array, e.g. ``layer1.0.conv1.weight``). PyTorch pickles (``.pth``) are
refused, never unpickled (unpickling can run arbitrary code);
``experiments/convert_weights.py`` turns one into ``.safetensors`` where
PyTorch is installed.

How a tensor finds its variable (one rule for ResNet-18/34/50 and Inception-v3,
because the Flax backbones keep torchvision's module names):

  * module path: dots become levels of the Flax tree, with ResNet's two
    renamings, ``layer{i}.{j}`` -> ``layer{i}_{j}`` and ``downsample.0`` /
    ``downsample.1`` -> ``downsample_conv`` / ``downsample_bn``
    (``Mixed_6e.branch7x7_2.conv`` -> ``Mixed_6e/branch7x7_2/conv``);
  * a module with ``running_mean`` in the file is a BatchNorm:
    ``weight``/``bias`` -> params ``scale``/``bias``, ``running_mean`` /
    ``running_var`` -> batch_stats ``mean``/``var``, ``num_batches_tracked``
    is ignored;
  * other modules: ``weight`` -> ``kernel``, transposed from torch's
    (out, in, *spatial) to Flax's (*spatial, in, out) (OIHW -> HWIO, and
    OIDHW -> DHWIO for 3D convs; Linear (out, in) -> (in, out)), ``bias`` ->
    ``bias``.

The mapping is applied under a prefix of the model's variables
(``params[prefix]``, ``batch_stats[prefix]``; default ``'backbone'``), so any
model that nests a backbone can take the weights while its own heads keep
their initialization. ImageNet classifier tensors (``fc.*``, ``AuxLogits.*``)
load where the model has a variable of the same shape and are otherwise left
out without complaint (a re-ID model has its own classifier).

Missing, unexpected and misshaped tensors are reported by name; in strict mode
(the default) any of them is an error that names the file, the architecture it
holds and the one the model has. For backbones inflated from these 2D ones
(I3D, P3D, M3D; ``jaxreid/layers/temporal_conv.py``), the same names map:
``adapt=inflate_kernels`` turns a 2D kernel into the model's 3D kernel, and
``keep_init`` names the new (e.g. zero-initialized temporal) variables that
the file cannot provide.
"""

import dataclasses
import fnmatch
import json
import os
import re
import struct
import zipfile
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import jax
import numpy as np
from absl import logging

DEFAULT_PREFIX = 'backbone'

# Extensions of PyTorch's pickle-based checkpoints.
PICKLE_SUFFIXES = ('.pth', '.pt', '.pth.tar', '.pt.tar', '.tar', '.ckpt', '.bin', '.pkl',
                   '.pickle')
# torchvision's ImageNet heads: loaded only where the model has the same head.
HEAD_PREFIXES = ('fc.', 'AuxLogits.')
# Heads whose shape depends on the class count: a different shape means a new
# classifier, which keeps its initialization.
CLASSIFIER_PREFIXES = ('fc.', 'AuxLogits.fc.')
CONVERT_HINT = ('convert it once where PyTorch is installed: python -m experiments.convert_weights '
                '--input={path} --output={stem}.safetensors')

Path = Union[str, os.PathLike]
Adapt = Callable[[str, np.ndarray, Tuple[int, ...]], Optional[np.ndarray]]

_RESNET_NAMES = {
    'resnet18': ((2, 2, 2, 2), False), 'resnet34': ((3, 4, 6, 3), False),
    'resnet50': ((3, 4, 6, 3), True), 'resnet101': ((3, 4, 23, 3), True),
    'resnet152': ((3, 8, 36, 3), True)}


class PretrainedWeightsError(ValueError):
  """A weights file cannot be read or does not fit the model."""


# --------------------------------------------------------------------------
# Reading files.


def load_state_dict(path: Path) -> Dict[str, np.ndarray]:
  """Reads a torchvision-layout state dict from ``.safetensors`` or ``.npz``.

  Raises:
    FileNotFoundError: no such file.
    PretrainedWeightsError: a PyTorch pickle (never unpickled), an unknown
      format, or a damaged or truncated file.
  """
  return _read(path)[0]


def _read(path: Path) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f'Pretrained weights file {path} does not exist.')
  with open(path, 'rb') as f:
    magic = f.read(4)
  lower = path.lower()
  if lower.endswith(PICKLE_SUFFIXES) or _is_pickle(path, magic):
    stem = re.sub(r'(\.pth\.tar|\.pt\.tar|\.[^./]+)$', '', path)
    raise PretrainedWeightsError(
        f'{path} is a PyTorch pickle checkpoint; jaxreid reads weights only from .safetensors '
        f'or .npz files and never unpickles (loading a pickle can run arbitrary code). To use '
        f'it, ' + CONVERT_HINT.format(path=path, stem=stem) + '.')
  if lower.endswith('.npz'):
    return _read_npz(path), {}
  if lower.endswith('.safetensors'):
    return _read_safetensors(path)
  raise PretrainedWeightsError(
      f'{path}: unknown weights format (expected a .safetensors or .npz file holding a '
      f'torchvision state dict); for a PyTorch checkpoint, '
      + CONVERT_HINT.format(path=path, stem=os.path.splitext(path)[0]) + '.')


def _is_pickle(path: str, magic: bytes) -> bool:
  """A pickle (PyTorch's legacy format) or a zip holding one (torch.save's)."""
  if magic[:1] == b'\x80' and magic[1:2] in (b'\x02', b'\x03', b'\x04', b'\x05'):
    return True
  if magic == b'PK\x03\x04':
    try:
      with zipfile.ZipFile(path) as z:
        return any(n.endswith('.pkl') for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
      return False
  return False


def _truncated(path: str, detail: str) -> PretrainedWeightsError:
  return PretrainedWeightsError(
      f'{path} is damaged or truncated ({detail}); an interrupted download or copy does this. '
      f'Copy or convert the file again (python -m experiments.convert_weights).')


def _read_npz(path: str) -> Dict[str, np.ndarray]:
  try:
    with np.load(path, allow_pickle=False) as z:
      return {k: np.asarray(z[k]) for k in z.files}
  except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as e:
    raise _truncated(path, f'not a readable .npz archive: {e}') from e


def _read_safetensors(path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
  # Check the header against the file size first: the library's own errors
  # for a cut file ("MetadataIncompleteBuffer") do not say what happened.
  size = os.path.getsize(path)
  with open(path, 'rb') as f:
    head = f.read(8)
    if len(head) < 8:
      raise _truncated(path, f'{size} bytes, shorter than a safetensors header')
    header_len = struct.unpack('<Q', head)[0]
    if 8 + header_len > size:
      raise _truncated(path, f'its header announces {header_len} bytes of metadata, the file '
                             f'has {size} bytes in all')
    try:
      header = json.loads(f.read(header_len))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
      raise PretrainedWeightsError(f'{path} is not a safetensors file (unreadable header: '
                                   f'{e}).') from e
  metadata = header.pop('__metadata__', None) or {}
  end = max((int(v['data_offsets'][1]) for v in header.values()), default=0)
  if 8 + header_len + end > size:
    raise _truncated(path, f'its header describes {8 + header_len + end} bytes, the file has '
                           f'{size}')
  try:
    from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ImportError('Reading .safetensors files needs the safetensors package: '
                      'pip install safetensors') from e
  try:
    return dict(load_file(path)), dict(metadata)
  except Exception as e:  # pylint: disable=broad-except
    raise PretrainedWeightsError(f'{path}: cannot read it as safetensors ({e}).') from e


# --------------------------------------------------------------------------
# Names.


def torch_to_flax_name(name: str, is_batchnorm: bool) -> Optional[Tuple[str, Tuple[str, ...]]]:
  """``(collection, path)`` of a torchvision tensor name; None to ignore it.

  ``layer1.0.downsample.1.running_var`` -> ``('batch_stats', ('layer1_0',
  'downsample_bn', 'var'))``; `is_batchnorm` says whether the tensor's module
  is a BatchNorm (it has running statistics in the file).
  """
  module, _, leaf = name.rpartition('.')
  module = re.sub(r'(^|\.)layer(\d+)\.(\d+)(?=\.|$)', r'\1layer\2_\3', module)
  module = re.sub(r'(^|\.)downsample\.0(?=\.|$)', r'\1downsample_conv', module)
  module = re.sub(r'(^|\.)downsample\.1(?=\.|$)', r'\1downsample_bn', module)
  path = tuple(module.split('.')) if module else ()
  if is_batchnorm:
    target = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
              'running_mean': ('batch_stats', 'mean'), 'running_var': ('batch_stats', 'var')}
    if leaf == 'num_batches_tracked':
      return None
  else:
    target = {'weight': ('params', 'kernel'), 'bias': ('params', 'bias')}
  if leaf not in target:
    return None if leaf == 'num_batches_tracked' else ('unknown', path + (leaf,))
  collection, flax_leaf = target[leaf]
  return collection, path + (flax_leaf,)


def torch_to_flax_array(name: str, value: np.ndarray, is_batchnorm: bool) -> np.ndarray:
  """Converts a tensor's layout: conv/linear weights (out, in, *k) -> (*k, in, out)."""
  value = np.asarray(value)
  if not is_batchnorm and name.endswith('.weight') and value.ndim >= 2:
    return np.transpose(value, tuple(range(2, value.ndim)) + (1, 0))
  return value


def _flax_to_torch_module(path: Sequence[str]) -> str:
  name = '.'.join(path)
  name = re.sub(r'(^|\.)layer(\d+)_(\d+)(?=\.|$)', r'\1layer\2.\3', name)
  name = re.sub(r'(^|\.)downsample_conv(?=\.|$)', r'\1downsample.0', name)
  return re.sub(r'(^|\.)downsample_bn(?=\.|$)', r'\1downsample.1', name)


def export_torchvision(variables: Mapping[str, Any], prefix: str = DEFAULT_PREFIX
                       ) -> Dict[str, np.ndarray]:
  """The inverse mapping: Flax variables under `prefix` -> a torchvision state dict
  (numpy arrays, torch layouts, with ``num_batches_tracked``)."""
  target = _subtree(variables, prefix)
  out = {}
  for (collection, path), leaf in sorted(target.items()):
    module, flax_leaf = _flax_to_torch_module(path[:-1]), path[-1]
    value = np.asarray(leaf)
    is_bn = (('params', path[:-1] + ('scale',)) in target
             or ('batch_stats', path[:-1] + ('mean',)) in target)
    if is_bn:
      torch_leaf = {'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
                    'var': 'running_var'}[flax_leaf]
      if flax_leaf == 'mean':
        out[f'{module}.num_batches_tracked'] = np.zeros((), np.int64)
    else:
      torch_leaf = {'kernel': 'weight', 'bias': 'bias'}.get(flax_leaf, flax_leaf)
      if flax_leaf == 'kernel':
        value = np.transpose(value, (value.ndim - 1, value.ndim - 2) + tuple(range(value.ndim - 2)))
    out[f'{module}.{torch_leaf}' if module else torch_leaf] = value
  return out


# --------------------------------------------------------------------------
# Which architecture a file or a model holds (for error messages).


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


def describe_variables(variables: Mapping[str, Any], prefix: str = DEFAULT_PREFIX) -> str:
  """The same description for the Flax backbone under `prefix`."""
  target = _subtree(variables, prefix)
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


# --------------------------------------------------------------------------
# Merging.


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
             'config.model.backbone_width=0 (the published width), or train from scratch (config.pretrained=\'\')')
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


def _key_str(key) -> str:
  return str(getattr(key, 'key', getattr(key, 'name', getattr(key, 'idx', key))))


def _subtree(variables: Mapping[str, Any], prefix: str) -> Dict[Tuple[str, Tuple[str, ...]], Any]:
  """{(collection, path below prefix): leaf} for the params and batch_stats under `prefix`."""
  prefix_path = tuple(p for p in prefix.split('/') if p)
  out = {}
  for collection in ('params', 'batch_stats'):
    if collection not in variables:
      continue
    for keys, leaf in jax.tree_util.tree_flatten_with_path(variables[collection])[0]:
      path = tuple(_key_str(k) for k in keys)
      if path[:len(prefix_path)] == prefix_path:
        out[(collection, path[len(prefix_path):])] = leaf
  return out


def _is_batchnorm_module(name: str, names: set) -> bool:
  module = name.rpartition('.')[0]
  return f'{module}.running_mean' in names or f'{module}.running_var' in names


def merge_pretrained(variables: Mapping[str, Any],
                     weights: Union[Path, Mapping[str, Any]],
                     *,
                     prefix: str = DEFAULT_PREFIX,
                     strict: bool = True,
                     keep_init: Sequence[str] = (),
                     adapt: Optional[Adapt] = None) -> Tuple[Any, LoadReport]:
  """Puts torchvision-layout weights into the backbone of a model's variables.

  Args:
    variables: the model's variables (``{'params': ..., 'batch_stats': ...}``,
      dicts or FrozenDicts; leaves may be arrays or ``jax.ShapeDtypeStruct``,
      so a tree from ``jax.eval_shape`` can be filled without initializing).
    weights: a ``.safetensors`` / ``.npz`` path, or a mapping name -> array
      (numpy arrays or CPU torch tensors).
    prefix: where the backbone sits, '/'-separated ('backbone', or
      'stream/backbone'; '' when `variables` are the backbone's own).
    strict: raise on missing, unexpected or misshaped tensors (ImageNet heads
      and ``keep_init`` variables excepted).
    keep_init: fnmatch patterns of Flax paths below `prefix`
      ('layer*_0/temporal*/*') that the file is not expected to provide.
    adapt: ``adapt(flax_path, array, model_shape)`` -> array of `model_shape`
      or None, tried when a converted tensor's shape differs from the model's
      (e.g. ``inflate_kernels`` for 3D-inflated backbones).

  Returns:
    (variables of the same structure, with the backbone's leaves replaced by
    numpy arrays of the model's dtypes; the other leaves are the very same
    objects), and a ``LoadReport``.

  Raises:
    PretrainedWeightsError: the file is unreadable; nothing under `prefix`;
      no tensor fits; or, in strict mode, any missing, unexpected or
      misshaped tensor. Messages name the file and the architectures.
  """
  if isinstance(weights, (str, os.PathLike)):
    source = os.fspath(weights)
    state_dict, metadata = _read(source)
  else:
    source, state_dict, metadata = '<state dict>', dict(weights), {}
  state_dict = {k: np.asarray(v) for k, v in state_dict.items()}
  target = _subtree(variables, prefix)
  if not target:
    top = sorted(_key_str(k[0]) for k, _ in
                 jax.tree_util.tree_flatten_with_path(variables.get('params', {}))[0])
    raise PretrainedWeightsError(
        f'Cannot load {source}: the model has no variables under {prefix!r} (its top-level '
        f'modules: {", ".join(sorted(set(top)))}); pass the backbone\'s prefix.')
  report = LoadReport(source=source, prefix=prefix,
                      file_arch=describe_state_dict({k: v.shape for k, v in state_dict.items()}),
                      model_arch=describe_variables(variables, prefix), metadata=metadata)
  names = set(state_dict)
  new_leaves: Dict[Tuple[str, Tuple[str, ...]], np.ndarray] = {}
  kept = set()
  for name in sorted(state_dict):
    is_bn = _is_batchnorm_module(name, names)
    mapped = torch_to_flax_name(name, is_bn)
    if mapped is None:
      continue  # num_batches_tracked
    key = mapped
    head = name.startswith(HEAD_PREFIXES)
    if key not in target:
      (report.heads_left_out if head else report.unexpected).append(name)
      continue
    value = torch_to_flax_array(name, state_dict[name], is_bn)
    model_leaf = target[key]
    shape = tuple(model_leaf.shape)
    if value.shape != shape and adapt is not None:
      adapted = adapt('/'.join(key[1]), value, shape)
      if adapted is not None and tuple(adapted.shape) == shape:
        value = adapted
    if value.shape != shape:
      kept.add(key)  # reported here, not again as missing
      if name.startswith(CLASSIFIER_PREFIXES):  # another class count: a new classifier
        report.heads_left_out.append(name)
      else:
        report.misshaped.append((name, f'{key[0]}:{"/".join(key[1])}', value.shape, shape))
      continue
    new_leaves[key] = value.astype(model_leaf.dtype)
    report.loaded.append(name)
  for key in sorted(target, key=lambda k: (k[1][:-1], k[0] != 'params', k[1][-1])):
    if key in new_leaves or key in kept:
      continue
    path = '/'.join(key[1])
    if any(fnmatch.fnmatchcase(path, p) for p in keep_init):
      report.kept_init.append(f'{key[0]}:{path}')
    else:
      report.missing.append(f'{key[0]}:{path}')
  if not report.loaded:  # whatever `strict` says: surely the wrong file
    raise PretrainedWeightsError('No tensor fits. ' + report.error_message())
  if strict and not report.ok:
    raise PretrainedWeightsError(report.error_message())
  if not report.ok:
    logging.warning('%s', report.summary())

  prefix_path = tuple(p for p in prefix.split('/') if p)

  def replace(collection):
    def fn(keys, leaf):
      path = tuple(_key_str(k) for k in keys)
      key = (collection, path[len(prefix_path):])
      if path[:len(prefix_path)] == prefix_path and key in new_leaves:
        return new_leaves[key]
      return leaf
    return fn

  merged = {c: (jax.tree_util.tree_map_with_path(replace(c), v)
                if c in ('params', 'batch_stats') else v) for c, v in variables.items()}
  return type(variables)(merged) if not isinstance(variables, dict) else merged, report


def load_into_train_state(state, path: Path, state_sharding=None, *,
                          prefix: str = DEFAULT_PREFIX, strict: bool = True, **kwargs):
  """``merge_pretrained`` for a ``TrainState``: the loaded leaves are placed with
  `state_sharding`'s shardings (or on the default device) and the optimizer
  state is re-initialized for the new parameters. Logs the report."""
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  merged, report = merge_pretrained(variables, path, prefix=prefix, strict=strict, **kwargs)
  logging.info('%s', report.summary())

  def place(new, old, sharding):
    if new is old:
      return old
    if sharding is None:
      return jax.numpy.asarray(new)
    return jax.make_array_from_callback(new.shape, sharding, lambda index: new[index])

  shardings = ({'params': state_sharding.params, 'batch_stats': state_sharding.batch_stats}
               if state_sharding is not None else jax.tree.map(lambda _: None, variables))
  placed = jax.tree.map(place, merged, variables, shardings)
  init_opt = state.tx.init
  if state_sharding is not None:
    init_opt = jax.jit(init_opt, out_shardings=state_sharding.opt_state)
  return state.replace(params=placed['params'], batch_stats=placed['batch_stats'],
                       opt_state=init_opt(placed['params']))


# --------------------------------------------------------------------------
# 3D inflation (I3D / P3D / M3D backbones built from the 2D ones).


def inflate_kernels(flax_path: str, kernel: np.ndarray, model_shape: Tuple[int, ...],
                    mode: str = 'center') -> Optional[np.ndarray]:
  """An ``adapt`` for ``merge_pretrained``: a 2D kernel (kh, kw, in, out) into a
  3D kernel (kt, kh, kw, in, out).

  'center' puts the 2D kernel at the middle time tap and zeros elsewhere (the
  I3D of AP3D's code: the inflated network starts as the 2D one frame by
  frame); 'mean' repeats it over time divided by kt (Carreira & Zisserman's
  inflation: the same response to a clip of identical frames). Returns None
  where the shapes are not such a pair.
  """
  del flax_path
  if kernel.ndim != 4 or len(model_shape) != 5 or tuple(model_shape[1:]) != kernel.shape:
    return None
  kt = model_shape[0]
  if mode == 'center':
    out = np.zeros(model_shape, kernel.dtype)
    out[kt // 2] = kernel
    return out
  if mode == 'mean':
    return np.repeat(kernel[None] / kt, kt, axis=0).astype(kernel.dtype)
  raise ValueError(f'Unknown inflation mode {mode!r}; valid choices: center, mean.')
