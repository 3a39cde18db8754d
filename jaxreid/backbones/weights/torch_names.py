"""torchvision tensor names and layouts <-> Flax variable paths and layouts.

One rule for ResNet-18/34/50 and Inception-v3, because the Flax backbones keep
torchvision's module names: dots become levels of the Flax tree, with ResNet's
two renamings (``layer{i}.{j}`` <-> ``layer{i}_{j}``, ``downsample.0`` /
``downsample.1`` <-> ``downsample_conv`` / ``downsample_bn``); a BatchNorm's
``weight`` / ``bias`` are params ``scale`` / ``bias`` and its ``running_mean``
/ ``running_var`` batch_stats ``mean`` / ``var``; other modules' ``weight`` is
``kernel``, (out, in, *spatial) in torch and (*spatial, in, out) in Flax.
"""

import re
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import jax
import numpy as np

# (collection, path below a prefix) -> leaf
Subtree = Dict[Tuple[str, Tuple[str, ...]], Any]


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


def is_batchnorm_module(name: str, names: set) -> bool:
  """Whether tensor `name`'s module is a BatchNorm: it has running statistics in `names`."""
  module = name.rpartition('.')[0]
  return f'{module}.running_mean' in names or f'{module}.running_var' in names


def key_str(key) -> str:
  """A pytree path entry (dict key, attribute, index) as a string."""
  return str(getattr(key, 'key', getattr(key, 'name', getattr(key, 'idx', key))))


def subtree(variables: Mapping[str, Any], prefix: str) -> Subtree:
  """{(collection, path below prefix): leaf} for the params and batch_stats under
  `prefix` ('/'-separated; '' for all of `variables`)."""
  prefix_path = tuple(p for p in prefix.split('/') if p)
  out = {}
  for collection in ('params', 'batch_stats'):
    if collection not in variables:
      continue
    for keys, leaf in jax.tree_util.tree_flatten_with_path(variables[collection])[0]:
      path = tuple(key_str(k) for k in keys)
      if path[:len(prefix_path)] == prefix_path:
        out[(collection, path[len(prefix_path):])] = leaf
  return out


def _flax_to_torch_module(path: Sequence[str]) -> str:
  name = '.'.join(path)
  name = re.sub(r'(^|\.)layer(\d+)_(\d+)(?=\.|$)', r'\1layer\2.\3', name)
  name = re.sub(r'(^|\.)downsample_conv(?=\.|$)', r'\1downsample.0', name)
  return re.sub(r'(^|\.)downsample_bn(?=\.|$)', r'\1downsample.1', name)


def export_torchvision(variables: Mapping[str, Any], prefix: str = 'backbone'
                       ) -> Dict[str, np.ndarray]:
  """The inverse mapping: Flax variables under `prefix` -> a torchvision state dict
  (numpy arrays, torch layouts, with ``num_batches_tracked``)."""
  target = subtree(variables, prefix)
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
