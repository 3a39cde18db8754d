r"""Ranks a gallery of extracted features for query tracklet folders; prints the top-k.

  python -m experiments.extract --config=experiments/configs/synthetic_baseline.py \
      --workdir=workdir --splits=gallery --output=gallery.npz
  python -m experiments.search --config=experiments/configs/synthetic_baseline.py \
      --workdir=workdir --gallery=gallery.npz --query=path/to/tracklet_folder --top_k=10

--query is one tracklet folder of frames, or a folder of tracklet folders. The
distance is the config's eval.metric (and eval.normalize_features applies).
"""

import os

import numpy as np
from absl import app, flags

from experiments import common, inference
from jaxreid import reporting
from jaxreid.evaluation import distance as distance_lib

_GALLERY = flags.DEFINE_string('gallery', None, 'Gallery .npz from experiments.extract.',
                               required=True)
_QUERY = flags.DEFINE_string('query', None, 'A tracklet folder, or a folder of them.',
                             required=True)
_TOP_K = flags.DEFINE_integer('top_k', 10, 'Gallery tracklets to list per query.')

_GALLERY_KEYS = ('features', 'pid', 'camid', 'name')

common.define_flags()


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


def search(config, workdir: str, gallery_path: str, query_root: str, top_k: int) -> list:
  """Returns, per query tracklet, (name, [(rank, gallery name, pid, camid, distance)])."""
  gallery = load_gallery(gallery_path)
  queries = inference.embed_sources(
      config, workdir, [('folder', common.folder_data(config, query_root), 'folder')])
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
  config, workdir = common.config_and_workdir()
  results = common.run_or_exit(
      lambda: search(config, workdir, _GALLERY.value, _QUERY.value, _TOP_K.value))
  for name, rows in results:
    print(f'query {name}')
    print(reporting.format_table(['rank', 'gallery tracklet', 'pid', 'camid', 'distance'],
                                 [[r, n, p, c, f'{d:.4g}'] for r, n, p, c, d in rows]))


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
