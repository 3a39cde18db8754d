r"""Records what training does, to check that a refactor changes nothing.

Trains the baseline and one config of every model family for 20 steps on the
tiny synthetic dataset (resnet_tiny backbones, 64 x 32 frames, CPU), and
writes, per config, the loss terms of every step, a SHA-256 of every parameter
and batch-statistic leaf after the last step, and the final rank-1 and mAP:

  python -m experiments.record_behaviour --output=/tmp/before.json
  ... refactor ...
  python -m experiments.record_behaviour --output=/tmp/after.json --compare=/tmp/before.json

With --compare, prints every value that differs (bitwise) and exits 1 if any.
"""

import hashlib
import json
import os
import sys
import tempfile

from absl import app, flags
import numpy as np

from experiments import common
from experiments.family_configs import CONFIGS, STEPS as _STEPS, tiny

_OUTPUT = flags.DEFINE_string('output', None, 'JSON file to write the record to.', required=True)
_COMPARE = flags.DEFINE_string('compare', None, 'An earlier record to compare with, bitwise.')
_ONLY = flags.DEFINE_list('only', [], 'Record only these names (default: all).')

class _Recorder:
  """Stands in for the TensorBoard writer: keeps every logged scalar."""

  def __init__(self):
    self.scalars = {}

  def write_scalars(self, step, scalars):
    for k, v in scalars.items():
      if k not in ('steps_per_sec', 'data_wait_ms_per_step'):  # timings, not behaviour
        self.scalars.setdefault(k, {})[int(step)] = float(np.asarray(v))

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def _leaf_hashes(tree, prefix=''):
  out = {}
  if isinstance(tree, dict):
    for k in sorted(tree):
      out.update(_leaf_hashes(tree[k], f'{prefix}/{k}' if prefix else str(k)))
  else:
    a = np.ascontiguousarray(np.asarray(tree))
    out[prefix] = hashlib.sha256(a.tobytes()).hexdigest()[:16] + f' {a.dtype}{list(a.shape)}'
  return out


def record(name: str, data_dir: str) -> dict:
  """Trains CONFIGS[name] tiny for 20 steps; returns its record."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from jaxreid.training import loop, writers  # pylint: disable=g-import-not-at-top
  config = tiny(CONFIGS[name](), data_dir)
  recorder = _Recorder()
  original = writers.create_writer
  writers.create_writer = lambda *a, **k: recorder
  try:
    with tempfile.TemporaryDirectory() as workdir:
      results = loop.train_and_evaluate(config, workdir, common.make_data(config))
      ckpt_dir = os.path.join(workdir, 'checkpoints', str(_STEPS), 'state')
      state = ocp.StandardCheckpointer().restore(os.path.abspath(ckpt_dir))
  finally:
    writers.create_writer = original
  variables = {k: v for k, v in state.items() if k in ('params', 'batch_stats')}
  return {'scalars': {k: {str(s): v for s, v in sorted(d.items())}
                      for k, d in sorted(recorder.scalars.items())},
          'leaves': _leaf_hashes(variables),
          'rank1': float(results['rank1']), 'mAP': float(results['mAP'])}


def compare(before: dict, after: dict) -> list:
  """Lines naming every difference between two records."""
  lines = []
  for name in sorted(set(before) | set(after)):
    if name not in before or name not in after:
      lines.append(f'{name}: only in {"after" if name in after else "before"}')
      continue
    b, a = before[name], after[name]
    for key in ('rank1', 'mAP'):
      if b[key] != a[key]:
        lines.append(f'{name}: {key} {b[key]!r} -> {a[key]!r}')
    for term in sorted(set(b['scalars']) | set(a['scalars'])):
      if b['scalars'].get(term) != a['scalars'].get(term):
        lines.append(f'{name}: scalar {term} {b["scalars"].get(term)} -> '
                     f'{a["scalars"].get(term)}')
    leaves_b, leaves_a = b['leaves'], a['leaves']
    if sorted(leaves_b.values()) != sorted(leaves_a.values()):
      differ = [k for k in leaves_b if leaves_b[k] != leaves_a.get(k)]
      lines.append(f'{name}: {len(differ)} of {len(leaves_b)} leaves differ, e.g. {differ[:3]}')
    elif leaves_b != leaves_a:
      lines.append(f'{name}: same leaf values under other names (renamed parameters)')
  return lines


def main(argv):
  del argv
  common.setup_tensorflow()
  from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
  data_dir = os.path.join(tempfile.gettempdir(), 'jaxreid_record_behaviour_tfds')
  datasets.prepare('synthetic_video_reid', 'tiny', data_dir=data_dir)
  out = {}
  for name in _ONLY.value or CONFIGS:
    print(f'Recording {name} ...', flush=True)
    out[name] = record(name, data_dir)
    with open(_OUTPUT.value, 'w') as f:  # after every config: a failure keeps the others
      json.dump(out, f, indent=1, sort_keys=True)
  print(f'Wrote {_OUTPUT.value}.')
  if _COMPARE.value:
    with open(_COMPARE.value) as f:
      before = json.load(f)
    lines = compare({k: v for k, v in before.items() if k in out}, out)
    print('\n'.join(lines) or 'Bitwise identical to ' + _COMPARE.value)
    sys.exit(1 if lines else 0)


if __name__ == '__main__':
  app.run(main)
