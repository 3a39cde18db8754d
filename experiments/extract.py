r"""Embeds tracklets with a trained checkpoint and writes the features to .npz.

  # Every tracklet of the query and gallery splits of the configured dataset:
  python -m experiments.extract --config=experiments/configs/synthetic_baseline.py \
      --workdir=workdir --output=gallery.npz [--splits=query,gallery]

  # Your own tracklets: a folder of tracklet folders of frames:
  python -m experiments.extract --config=... --workdir=workdir \
      --folder=path/to/tracklets --output=mine.npz

The .npz holds `features` (N, D) float32, `pid`, `camid` (N,) int32 (-1 for
folders), `split` and `name` (N,) strings ('<split>/<tracklet index>' or the
folder path), and the checkpoint that made them: `checkpoint_workdir`,
`checkpoint_step` and `checkpoint_fingerprint` (0-d; see experiments/inference.py).
Rank it with `python -m experiments.search`, which refuses a gallery of another
checkpoint.
"""

import os

import jax
import numpy as np
from absl import app, flags, logging

from experiments import common, inference

_SPLITS = flags.DEFINE_list('splits', ['query', 'gallery'],
                            'Dataset splits to embed (ignored with --folder).')
_FOLDER = flags.DEFINE_string('folder', None, 'A folder of tracklet folders of frames.')
_OUTPUT = flags.DEFINE_string('output', None, 'The .npz file to write.', required=True)

common.define_flags()
common.define_step_flag()
flags.adopt_module_key_flags(common)  # --help lists --config, --workdir, ...


def extract(config, workdir: str, output: str, folder=None, splits=('query', 'gallery'),
            step='latest'):
  """Writes the features of `folder`'s tracklets, or of the dataset's `splits`,
  embedded by the checkpoint of `step` (latest, best or a number)."""
  if not output.endswith('.npz'):
    raise ValueError(f'--output={output}: expected a path ending in .npz.')
  parent = os.path.dirname(os.path.abspath(output))
  if not os.path.isdir(parent):
    raise FileNotFoundError(f'--output={output}: the folder {parent} does not exist; '
                            'create it first or choose another path.')
  if os.path.isdir(output):
    raise ValueError(f'--output={output}: is a folder; expected a path ending in .npz.')
  if folder:
    sources = [('folder', common.folder_data(config, folder), 'folder')]
  else:
    data = common.make_data(config, training=False)
    unknown = sorted(set(splits) - set(data.index))
    if unknown:
      raise ValueError(f'Unknown split(s) {", ".join(unknown)}; valid choices: '
                       f'{", ".join(data.index)}.')
    sources = [(s, data, s) for s in splits]
  arrays = inference.embed_sources(config, workdir, sources, step=step)
  if jax.process_index() == 0:
    tmp = output + '.tmp.npz'
    np.savez(tmp, **arrays)
    os.replace(tmp, output)  # never leave a half-written file under the real name
    logging.info('Wrote %d x %d features to %s', *arrays['features'].shape, output)
  return arrays


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  config, workdir = common.run_or_exit(common.config_and_workdir)
  common.run_or_exit(lambda: common.check_config(config, workdir, 'extract',
                                                 uses_dataset=not _FOLDER.value))
  common.run_or_exit(lambda: extract(config, workdir, _OUTPUT.value, _FOLDER.value,
                                     _SPLITS.value, common.checkpoint_step()),
                     workdir=workdir)


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
