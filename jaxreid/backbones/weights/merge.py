"""Merging a torchvision-layout state dict into the backbone(s) of a model's
variables: the mapping of ``torch_names`` applied under a prefix, every tensor
accounted for in a ``LoadReport``."""

import fnmatch
import os
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Set, Tuple, Union

import jax
import numpy as np
from absl import logging

from jaxreid.backbones.weights import files, torch_names
from jaxreid.backbones.weights.report import LoadReport, describe_state_dict, describe_variables

DEFAULT_PREFIX = 'backbone'
# torchvision's ImageNet heads: loaded only where the model has the same head.
HEAD_PREFIXES = ('fc.', 'AuxLogits.')
# Heads whose shape depends on the class count: a different shape means a new
# classifier, which keeps its initialization.
CLASSIFIER_PREFIXES = ('fc.', 'AuxLogits.fc.')

Adapt = Callable[[str, np.ndarray, Tuple[int, ...]], Optional[np.ndarray]]
Key = Tuple[str, Tuple[str, ...]]  # (collection, path below the prefix)


def merge_pretrained(variables: Mapping[str, Any],
                     weights: Union[files.Path, Mapping[str, Any]],
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
      (numpy arrays or CPU torch tensors; ``load_state_dict``'s result also
      names its file in the messages).
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
    weights = files.load_state_dict(weights)
  source = getattr(weights, 'source', '<state dict>')
  state_dict = {k: np.asarray(v) for k, v in weights.items()}
  target = torch_names.subtree(variables, prefix)
  if not target:
    top = sorted(torch_names.key_str(k[0]) for k, _ in
                 jax.tree_util.tree_flatten_with_path(variables.get('params', {}))[0])
    raise files.PretrainedWeightsError(
        f'Cannot load {source}: the model has no variables under {prefix!r} (its top-level '
        f'modules: {", ".join(sorted(set(top)))}); pass the backbone\'s prefix.')
  report = LoadReport(source=source, prefix=prefix,
                      file_arch=describe_state_dict({k: v.shape for k, v in state_dict.items()}),
                      model_arch=describe_variables(variables, prefix),
                      metadata=dict(getattr(weights, 'metadata', {})))
  new_leaves, misshaped = _fill(state_dict, target, report, adapt)
  for key in sorted(target, key=lambda k: (k[1][:-1], k[0] != 'params', k[1][-1])):
    if key in new_leaves or key in misshaped:  # misshaped: reported already, not as missing
      continue
    path = '/'.join(key[1])
    if any(fnmatch.fnmatchcase(path, p) for p in keep_init):
      report.kept_init.append(f'{key[0]}:{path}')
    else:
      report.missing.append(f'{key[0]}:{path}')
  if not report.loaded:  # whatever `strict` says: surely the wrong file
    raise files.PretrainedWeightsError('No tensor fits. ' + report.error_message())
  if strict and not report.ok:
    raise files.PretrainedWeightsError(report.error_message())
  if not report.ok:
    logging.warning('%s', report.summary())
  return _replace(variables, prefix, new_leaves), report


def _fill(state_dict: Mapping[str, np.ndarray], target: torch_names.Subtree, report: LoadReport,
          adapt: Optional[Adapt]) -> Tuple[Dict[Key, np.ndarray], Set[Key]]:
  """The model leaves the file provides, {(collection, path): array of the
  model's shape and dtype}, and the keys of the leaves whose tensor has
  another shape; records loaded, unexpected and misshaped tensors and the
  left-out heads in `report`."""
  names = set(state_dict)
  new_leaves, misshaped = {}, set()
  for name in sorted(state_dict):
    is_bn = torch_names.is_batchnorm_module(name, names)
    key = torch_names.torch_to_flax_name(name, is_bn)
    if key is None:
      continue  # num_batches_tracked
    if key not in target:
      (report.heads_left_out if name.startswith(HEAD_PREFIXES) else report.unexpected).append(name)
      continue
    value = torch_names.torch_to_flax_array(name, state_dict[name], is_bn)
    model_leaf = target[key]
    shape = tuple(model_leaf.shape)
    if value.shape != shape and adapt is not None:
      adapted = adapt('/'.join(key[1]), value, shape)
      if adapted is not None and tuple(adapted.shape) == shape:
        value = adapted
    if value.shape != shape:
      misshaped.add(key)
      if name.startswith(CLASSIFIER_PREFIXES):  # another class count: a new classifier
        report.heads_left_out.append(name)
      else:
        report.misshaped.append((name, f'{key[0]}:{"/".join(key[1])}', value.shape, shape))
      continue
    new_leaves[key] = value.astype(model_leaf.dtype)
    report.loaded.append(name)
  return new_leaves, misshaped


def _replace(variables: Mapping[str, Any], prefix: str, new_leaves) -> Any:
  """`variables` with the leaves under `prefix` that `new_leaves` names replaced."""
  prefix_path = tuple(p for p in prefix.split('/') if p)

  def replace(collection):
    def fn(keys, leaf):
      path = tuple(torch_names.key_str(k) for k in keys)
      key = (collection, path[len(prefix_path):])
      if path[:len(prefix_path)] == prefix_path and key in new_leaves:
        return new_leaves[key]
      return leaf
    return fn

  merged = {c: (jax.tree_util.tree_map_with_path(replace(c), v)
                if c in ('params', 'batch_stats') else v) for c, v in variables.items()}
  return type(variables)(merged) if not isinstance(variables, dict) else merged


def merge_backbones(variables: Mapping[str, Any], weights: Mapping[str, Any],
                    prefixes: Sequence[str], *, keep_init: Sequence[str] = (),
                    adapt: Optional[Adapt] = None) -> Any:
  """``merge_pretrained`` (strict) into each backbone under `prefixes`, one
  logged summary per backbone: what a model's ``load`` does. Returns the
  merged variables (leaves the file does not provide are the same objects)."""
  for prefix in prefixes:
    variables, report = merge_pretrained(variables, weights, prefix=prefix,
                                         keep_init=keep_init, adapt=adapt)
    logging.info('%s', report.summary())
  return variables
