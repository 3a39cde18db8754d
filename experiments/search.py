r"""Ranks a gallery of extracted features for query tracklet folders; prints the top-k.

  python -m experiments.extract --config=experiments/configs/synthetic_baseline.py \
      --workdir=workdir --splits=gallery --output=gallery.npz
  python -m experiments.search --config=experiments/configs/synthetic_baseline.py \
      --workdir=workdir --gallery=gallery.npz --query=path/to/tracklet_folder --top_k=10

--query is one tracklet folder of frames, or a folder of tracklet folders. The
distance is the config's eval.metric (and eval.normalize_features applies).

Features of two checkpoints are not comparable, so a gallery whose recorded
checkpoint (workdir, step, fingerprint: experiments/inference.py) is not the
one --workdir restores now is refused, or with --allow_other_checkpoint only
warned about.
"""

import os

import numpy as np
from absl import app, flags, logging

from experiments import common, inference
from jaxreid import reporting
from jaxreid.evaluation import distance as distance_lib

_GALLERY = flags.DEFINE_string('gallery', None, 'Gallery .npz from experiments.extract.',
                               required=True)
_QUERY = flags.DEFINE_string('query', None, 'A tracklet folder, or a folder of them.',
                             required=True)
_TOP_K = flags.DEFINE_integer('top_k', 10, 'Gallery tracklets to list per query (>= 1).')
_ALLOW_OTHER = flags.DEFINE_bool(
    'allow_other_checkpoint', False, 'Rank a gallery extracted by another checkpoint than the '
    "latest of --workdir (another run, step or model) with a warning instead of refusing it.")

_GALLERY_KEYS = ('features', 'pid', 'camid', 'name')

common.define_flags()
common.define_step_flag()
flags.adopt_module_key_flags(common)  # --help lists --config, --workdir, ...


def load_gallery(path: str) -> dict:
  """Reads and checks a gallery .npz written by experiments.extract."""
  if not os.path.isfile(path):
    raise FileNotFoundError(f'--gallery={path}: no such file; write one with '
                            'python -m experiments.extract ... --output=gallery.npz')
  try:
    with np.load(path) as f:
      gallery = {k: f[k] for k in f.files}
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f'--gallery={path}: not a readable .npz file ({e}).') from e
  missing = [k for k in _GALLERY_KEYS if k not in gallery]
  if missing:
    raise ValueError(f'--gallery={path}: missing arrays {", ".join(missing)}; expected the '
                     'output of python -m experiments.extract.')
  return gallery


def check_provenance(gallery: dict, current: dict, gallery_path: str,
                     allow_other: bool = False):
  """Refuses (ValueError) a gallery whose PROVENANCE_KEYS differ from
  `current`, the checkpoint that embeds the queries; with `allow_other`, logs
  the same line as a warning instead."""
  missing = [k for k in inference.PROVENANCE_KEYS if k not in gallery]
  if missing:
    diffs = ['it records no checkpoint (written by an older experiments.extract)']
  else:
    diffs = [f'{k[len("checkpoint_"):]} {gallery[k].item()!r} (this --workdir: {current[k]!r})'
             for k in inference.PROVENANCE_KEYS if gallery[k].item() != current[k]]
  if not diffs:
    return
  message = (f'--gallery={gallery_path} was not extracted by the checkpoint that embeds the '
             f'queries: {"; ".join(diffs)}.')
  if not allow_other:
    raise ValueError(f'{message} Extract it again with this --workdir, or pass '
                     '--allow_other_checkpoint to rank it anyway.')
  logging.warning('%s Ranking it anyway (--allow_other_checkpoint): distances between '
                  'features of two checkpoints may mean nothing.', message)


def search(config, workdir: str, gallery_path: str, query_root: str, top_k: int,
           allow_other_checkpoint: bool = False, step='latest') -> list:
  """Returns, per query tracklet, (name, [(rank, gallery name, pid, camid, distance)]).

  Raises:
    ValueError: `top_k` < 1, an unreadable gallery, or one extracted by another
      checkpoint (unless `allow_other_checkpoint`).
  """
  if top_k < 1:
    raise ValueError(f'--top_k={top_k}: expected a number >= 1 (gallery tracklets listed '
                     'per query).')
  gallery = load_gallery(gallery_path)
  queries = inference.embed_sources(
      config, workdir, [('folder', common.folder_data(config, query_root), 'folder')],
      check=lambda current: check_provenance(gallery, current, gallery_path,
                                             allow_other_checkpoint), step=step)
  qf, gf = queries['features'], gallery['features']
  if qf.shape[1] != gf.shape[1]:
    raise ValueError(f'--gallery={gallery_path} holds {gf.shape[1]}-d features but this '
                     f'checkpoint gives {qf.shape[1]}-d ones; extract the gallery again '
                     'with the same checkpoint.')
  if config.eval.normalize_features:
    qf = qf / np.linalg.norm(qf, axis=1, keepdims=True)
    gf = gf / np.linalg.norm(gf, axis=1, keepdims=True)
  dist = distance_lib.pairwise_distance(qf, gf, metric=config.eval.metric)  # (Q, G)
  results = []
  for i, name in enumerate(queries['name']):
    order = np.argsort(dist[i], kind='stable')[:top_k]
    results.append((str(name), [(r + 1, str(gallery['name'][j]), int(gallery['pid'][j]),
                                 int(gallery['camid'][j]), float(dist[i, j]))
                                for r, j in enumerate(order)]))
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  config, workdir = common.run_or_exit(common.config_and_workdir)
  common.run_or_exit(lambda: common.check_config(config, workdir, 'search', uses_dataset=False))
  results = common.run_or_exit(
      lambda: search(config, workdir, _GALLERY.value, _QUERY.value, _TOP_K.value,
                     _ALLOW_OTHER.value, common.checkpoint_step()), workdir=workdir)
  for name, rows in results:
    print(f'query {name}')
    print(reporting.format_table(['rank', 'gallery tracklet', 'pid', 'camid', 'distance'],
                                 [[r, n, p, c, f'{d:.4g}'] for r, n, p, c, d in rows]))


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
