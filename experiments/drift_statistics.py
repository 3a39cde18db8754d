"""How far each group of a model's parameters moved from initialization.

Pure NumPy on two parameter trees (flag-free, so tests import it; the command
is `experiments/parameter_drift.py`). A *group* is a module name with its
position in the network dropped: ``backbone/layer3_1/temporal_conv2/kernel``
and ``backbone/layer1_0/temporal_conv1/kernel`` are both ``temporal_conv``
``kernel``, ``rru/cell/spatial_fc1/kernel`` is ``rru/cell/spatial_fc``
``kernel``. Per group:

  init_norm     ||theta_0||  (0 for a zero-initialized parameter)
  delta_norm    ||theta - theta_0||
  relative      delta_norm / init_norm (None where init_norm is 0)
  delta_rms     delta_norm / sqrt(size): the mean move per weight; under Adam
                it measures how consistently the gradient pushed, not its
                size, so groups compare on it whatever their scale.
"""

import re

import numpy as np
from flax import traverse_util

_POSITION = re.compile(r'^layer\d+_\d+$')  # a ResNet block's position


def group_of(path: tuple[str, ...]) -> str:
  """'module/.../param' with block positions and trailing module indices dropped."""
  *modules, param = path
  kept = [re.sub(r'\d+$', '', m) for m in modules
          if m != 'backbone' and not _POSITION.match(m)]
  return '/'.join([m for m in kept if m] + [param])


def _flatten(tree) -> dict:
  return {tuple(map(str, k)): np.asarray(v, np.float64)
          for k, v in traverse_util.flatten_dict(tree).items()}


def drift_by_group(init_params, final_params) -> dict[str, dict]:
  """{group: {'size', 'init_norm', 'delta_norm', 'relative', 'delta_rms'}}, in
  the order the groups first appear; the trees must have the same structure."""
  init, final = _flatten(init_params), _flatten(final_params)
  if init.keys() != final.keys():
    raise ValueError('The two parameter trees differ in structure: '
                     f'{sorted(init.keys() ^ final.keys())[:3]} ...')
  sums: dict[str, list[float]] = {}
  for path, theta0 in init.items():
    s = sums.setdefault(group_of(path), [0, 0.0, 0.0])
    s[0] += theta0.size
    s[1] += float(np.sum(theta0 ** 2))
    s[2] += float(np.sum((final[path] - theta0) ** 2))
  out = {}
  for group, (size, init_sq, delta_sq) in sums.items():
    init_norm, delta_norm = np.sqrt(init_sq), np.sqrt(delta_sq)
    out[group] = {'size': int(size), 'init_norm': float(init_norm),
                  'delta_norm': float(delta_norm),
                  'relative': float(delta_norm / init_norm) if init_norm > 0 else None,
                  'delta_rms': float(delta_norm / np.sqrt(size))}
  return out


def format_table(drift: dict[str, dict]) -> str:
  lines = ['| group | weights | init norm | norm of the move | relative | mean move per weight |',
           '|---|---|---|---|---|---|']
  for group, d in drift.items():
    rel = 'from 0' if d['relative'] is None else f'{d["relative"]:.3f}'
    lines.append(f'| {group} | {d["size"]} | {d["init_norm"]:.3g} | {d["delta_norm"]:.3g} | '
                 f'{rel} | {d["delta_rms"]:.2e} |')
  return '\n'.join(lines)
