"""`ls_vid`: the LS-VID video person re-ID dataset (Li et al., "GLTR", ICCV 2019).

Usage::

  import tensorflow_datasets as tfds
  import data_pipelines.ls_vid  # registers the builder

  builder = tfds.builder('ls_vid', file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/lsvid'))

Nothing is downloaded. ``manual_dir`` is the folder into which the LS-VID archive
was extracted (holding ``LS-VID/``), or the ``LS-VID`` folder itself::

  LS-VID/list_sequence/list_seq_{train,val,test}.txt   "<path prefix> <pid>" per line
  LS-VID/test/data/info_test.mat                        MATLAB v7.3 (HDF5): 'query', 'info_test'
  LS-VID/tracklet_{train,val,test}/<pid4>/<files>.jpg

A tracklet is the line's path prefix: its frames are the ``.jpg`` files whose
path starts with ``<LS-VID>/<prefix>`` (the loaders' ``glob(prefix + '*')``),
ordered by the frame number at the end of their name (never by directory
order). The camera is the third ``_``-separated field of the file name (1..15;
``camid`` = camera - 1), as in the BiCnet-TKS and TF-CLIP loaders.

Splits, as those loaders build them: ``train`` = ``list_seq_train.txt``
(``list_seq_val.txt`` is not used); ``query`` = the rows of
``list_seq_test.txt`` named (1-based) by ``info_test.mat``'s ``query``, in that
order; ``gallery`` = the other test rows, in file order. The published LS-VID
protocol ranks each query against the whole test set (queries appended to the
gallery): use the ``with_query_in_gallery`` evaluation protocol. ``pid`` is the
list's person id; ``tracklet`` the example's position in its split. Where
``info_test`` is present its pid and camera columns (3 and 4) are checked
against the list and the file names. Frames are the release's original JPEG
bytes.

The file-name fields other than the camera and the trailing frame number are
not relied on (their meaning is not documented).
"""

from __future__ import annotations

import bisect
import os
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import provenance
from data_pipelines import release_files
from data_pipelines import video_reid_common as common

NUM_CAMERAS = 15
RELEASE_DIR = 'LS-VID'
LIST_FILES = {'train': 'list_sequence/list_seq_train.txt',
              'test': 'list_sequence/list_seq_test.txt'}
INFO_TEST = 'test/data/info_test.mat'

_TODO = ('Extract the LS-VID archive unchanged into manual_dir (see the '
         'MANUAL_DOWNLOAD_INSTRUCTIONS of `ls_vid`).')

DESCRIPTION = """\
LS-VID (Large-Scale Video dataset for person re-ID, Peking University): 3,772
identities, 14,943 tracklets from 15 cameras (3 indoor, 12 outdoor), about 3M
frames. Splits follow the release's list_sequence/ files and
test/data/info_test.mat, as the BiCnet-TKS and TF-CLIP loaders read them:
train = list_seq_train.txt; query = the test rows named by info_test.mat;
gallery = the other test rows (the standard protocol appends the queries to the
gallery: with_query_in_gallery). Frames are the original JPEG bytes in frame
order.
"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
LS-VID cannot be downloaded automatically: it is released on request, for
non-commercial research, by the authors (Shiliang Zhang's group, Peking
University; Li et al., "Global-Local Temporal Representations for Video Person
Re-Identification", ICCV 2019).

1. Obtain the LS-VID archive from the authors (e.g. LS-VID_V2.zip).
2. Extract it into manual_dir without moving anything, giving
     manual_dir/LS-VID/list_sequence/list_seq_train.txt, list_seq_test.txt
     manual_dir/LS-VID/test/data/info_test.mat
     manual_dir/LS-VID/tracklet_train/..., manual_dir/LS-VID/tracklet_test/...
   (manual_dir may also be the LS-VID folder itself). Do not use the layout
   some code bases rearrange it into (info/list_sequence, info/data).

Then prepare with
  tfds.download.DownloadConfig(manual_dir=<manual_dir>)
or `python -m experiments.train ... --config.manual_dir=<manual_dir>`.
"""


def read_sequence_list(path) -> list:
  """[(path_prefix, pid)] of a list_seq_*.txt file (LF or CRLF; blank lines ignored)."""
  path = pathlib.Path(path)
  rows = []
  for number, line in enumerate(path.read_text(encoding='utf-8').splitlines(), 1):
    fields = line.split()
    if not fields:
      continue
    if len(fields) != 2 or not fields[1].lstrip('-').isdigit():
      raise release_files.release_error(f'{path}, line {number}',
                                 "'<path prefix> <pid>', e.g. 'tracklet_train/0001/0001_0001_1_ 1'",
                                 f'Got {line!r}. {_TODO}')
    rows.append((fields[0], int(fields[1])))
  if not rows:
    raise release_files.release_error(path, 'one tracklet per line', f'It is empty. {_TODO}')
  return rows


def _read_mat_arrays(path: pathlib.Path) -> tuple:
  """('query' as read, 'info_test' or None, transposed): HDF5 (v7.3) or, failing that, v5."""
  try:
    import h5py  # pylint: disable=g-import-not-at-top
  except ImportError:
    h5py = None
  if h5py is not None and h5py.is_hdf5(str(path)):
    with h5py.File(str(path), 'r') as f:
      if 'query' not in f:
        raise release_files.release_error(path, "an HDF5 dataset 'query' (1-based query rows of "
                                   'list_seq_test.txt)', f'It holds {sorted(f)}. {_TODO}')
      info = np.asarray(f['info_test']) if 'info_test' in f else None
      return np.asarray(f['query']), info, True  # MATLAB arrays are stored transposed.
  try:
    import scipy.io  # pylint: disable=g-import-not-at-top
    contents = scipy.io.loadmat(str(path))
  except Exception as e:  # pylint: disable=broad-except
    raise release_files.release_error(
        path, 'a MATLAB v7.3 (HDF5) file holding query and info_test',
        f'It could not be read ({type(e).__name__}: {e}; h5py '
        f'{"is" if h5py else "is not"} installed). {_TODO}') from None
  if 'query' not in contents:
    raise release_files.release_error(path, "a variable 'query'",
                               f'It holds {sorted(k for k in contents if k[:2] != "__")}.')
  return np.asarray(contents['query']), contents.get('info_test'), False


def read_info_test(path, num_test: int) -> tuple:
  """(query rows, 0-based int64 (Nq,); info_test (N, 4) int64 [start, end, pid, cam] or None)."""
  path = pathlib.Path(path)
  query, info, transposed = _read_mat_arrays(path)
  query = query.reshape(-1)
  rows = np.round(query).astype(np.int64)
  if (not len(rows) or not np.array_equal(rows, query) or rows.min() < 1
      or rows.max() > num_test or len(np.unique(rows)) != len(rows)):
    raise release_files.release_error(
        path, f'query: distinct 1-based row numbers of list_seq_test.txt (1..{num_test})',
        f'Got {len(rows)} values{f" in [{query.min()}, {query.max()}]" if len(rows) else ""}. '
        'info_test.mat and list_seq_test.txt must come from the same release. ' + _TODO)
  if info is not None:
    info = np.asarray(info)
    if transposed and info.ndim == 2 and info.shape[0] == 4:
      info = info.T
    if info.ndim != 2 or info.shape != (num_test, 4):
      raise release_files.release_error(
          path, f'info_test: one row [start, end, pid, cam] per test tracklet ({num_test})',
          f'Got shape {info.shape}. info_test.mat and list_seq_test.txt must come from the '
          'same release. ' + _TODO)
    info = np.round(info).astype(np.int64)
  return rows - 1, info


class _Listing:
  """Sorted .jpg names per folder, listed once."""

  def __init__(self):
    self._cache = {}

  def names(self, folder: pathlib.Path) -> list:
    if folder not in self._cache:
      try:
        self._cache[folder] = sorted(n for n in os.listdir(folder) if n.lower().endswith('.jpg'))
      except (FileNotFoundError, NotADirectoryError):
        self._cache[folder] = []
    return self._cache[folder]

  def with_prefix(self, folder: pathlib.Path, prefix: str) -> list:
    names = self.names(folder)
    out = []
    for i in range(bisect.bisect_left(names, prefix), len(names)):
      if not names[i].startswith(prefix):
        break
      out.append(names[i])
    return out


def _camera(name: str) -> int:
  fields = name.split('_')
  if len(fields) < 4 or not fields[2].isdigit():
    raise ValueError("the camera is not the third '_' field")
  return int(fields[2])


def _tracklets(rows: list, root: pathlib.Path, list_path: str, listing: _Listing) -> list:
  out = []
  for number, (prefix, pid) in enumerate(rows, 1):
    folder_rel, base = os.path.split(prefix)
    folder = root / folder_rel
    names = listing.with_prefix(folder, base)
    if not names:
      raise release_files.release_error(
          root / (prefix + '*.jpg'), f'the frames of the tracklet on line {number} of {list_path}',
          f'No file matches. Extract the tracklet_* folders of the archive completely into '
          f'{root}. ' + _TODO)
    names = release_files.sort_frames(names, release_files.trailing_number, where=str(folder))
    try:
      cams = sorted({_camera(n) for n in names})
    except ValueError as e:
      raise release_files.release_error(folder / names[0], "an LS-VID frame name "
                                 "'<pid>_<n>_<camera>_<frame>.jpg'", f'{e}. {_TODO}') from None
    if len(cams) != 1 or not 1 <= cams[0] <= NUM_CAMERAS:
      raise release_files.release_error(
          root / (prefix + '*.jpg'),
          f'the frames of one tracklet, from one camera in 1..{NUM_CAMERAS}',
          f'Its frames name cameras {cams} (line {number} of {list_path}). ' + _TODO)
    out.append(common.Tracklet(pid=pid, camid=cams[0] - 1,
                               frames=tuple(f'{folder_rel}/{n}' for n in names)))
  return out


def lsvid_split_index(root) -> dict:
  """{'train', 'query', 'gallery'} -> list of Tracklet; frame paths relative to ``root``.

  Raises:
    ReleaseError: a missing list or info file, a malformed line, a tracklet without
      frames or with several cameras, query rows out of range, or an info_test row
      whose pid or camera disagrees with the list and the file names.
  """
  root = pathlib.Path(root)
  lists = {k: release_files.require_path(root / v, f'the LS-VID sequence list {v}', _TODO,
                                          kind='file')
           for k, v in LIST_FILES.items()}
  info_path = release_files.require_path(root / INFO_TEST, 'the LS-VID test split file '
                                         '(query indices and info_test)', _TODO, kind='file')
  listing = _Listing()
  train = _tracklets(read_sequence_list(lists['train']), root, LIST_FILES['train'], listing)
  test_rows = read_sequence_list(lists['test'])
  query_rows, info = read_info_test(info_path, len(test_rows))
  test = _tracklets(test_rows, root, LIST_FILES['test'], listing)
  if info is not None:
    for i, (tracklet, row) in enumerate(zip(test, info)):
      if (tracklet.pid, tracklet.camid + 1) != (int(row[2]), int(row[3])):
        raise release_files.release_error(
            f'{info_path}, info_test row {i + 1}',
            f'pid {tracklet.pid} and camera {tracklet.camid + 1}, as line {i + 1} of '
            f'{LIST_FILES["test"]} and its file names say',
            f'Got {row.tolist()} [start, end, pid, cam]. info_test.mat and list_seq_test.txt '
            'must come from the same release. ' + _TODO)
  is_query = np.zeros(len(test), bool)
  is_query[query_rows] = True
  return {
      'train': train,
      'query': [test[int(r)] for r in query_rows],
      'gallery': [t for t, q in zip(test, is_query) if not q],
  }


def find_root(manual_dir) -> pathlib.Path:
  """The LS-VID folder under ``manual_dir`` (or ``manual_dir`` itself)."""
  return release_files.find_release_root(
      manual_dir, ('list_sequence', 'test/data'), (RELEASE_DIR, ''),
      expected='the LS-VID release: list_sequence/, test/data/info_test.mat, tracklet_*/',
      todo=_TODO)


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for LS-VID (manual download)."""

  name = 'ls_vid'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: train from list_seq_train.txt; query / gallery '
                            'from list_seq_test.txt and info_test.mat.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return common.dataset_info(self, description=DESCRIPTION, encoding_format='jpeg')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_root(os.fspath(dl_manager.manual_dir))
    index = lsvid_split_index(root)
    self.info.metadata['split_stats'] = {s: common.split_stats(t) for s, t in index.items()}
    # The lists, info_test.mat and the top folders of the frames (tracklet_train/, ...).
    frame_dirs = {t.frames[0].split('/')[0] for ts in index.values() for t in ts}
    self.info.metadata[provenance.SOURCE_KEY] = provenance.source_record(
        dl_manager.manual_dir, [root / f for f in (*LIST_FILES.values(), INFO_TEST)]
        + [root / d for d in frame_dirs])
    return {split: self._generate_examples(index[split], root, split)
            for split in common.SPLITS}

  def _generate_examples(self, tracklets, root, split):
    yield from common.generate_examples(tracklets, root, 'jpeg', split=split)
