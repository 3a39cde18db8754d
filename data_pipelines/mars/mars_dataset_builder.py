"""`mars`: the MARS video person re-ID dataset (Zheng et al., ECCV 2016).

Usage::

  import tensorflow_datasets as tfds
  import data_pipelines.mars  # registers the builder

  builder = tfds.builder('mars', file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/mars'))

Nothing is downloaded: ``manual_dir`` must hold the release as extracted (see
``MANUAL_DOWNLOAD_INSTRUCTIONS``)::

  <manual_dir>/bbox_train/<pid4>/<pid4>C<cam>T<trk4>F<frm3>.jpg
  <manual_dir>/bbox_test/{00-1,0000,<pid4>}/...        (00-1 = junk, 0000 = distractors)
  <manual_dir>/info/{train_name.txt, test_name.txt, tracks_train_info.mat,
                     tracks_test_info.mat, query_IDX.mat}

A nested ``bbox_train/bbox_train`` (``bbox_test/bbox_test``), which some unzip
tools produce, is accepted.

Splits, built from ``info/`` only by ``mars_split_index`` (no image is opened):

  ========  =========  ===============================================
  split     tracklets  what
  ========  =========  ===============================================
  train     8,298      every row of ``track_train_info`` (625 ids)
  query     1,980      the rows of ``track_test_info`` in ``query_IDX``
  gallery   10,200     the other test rows, in file order: 9,330 of
                       labelled persons and distractors (pid 0) and
                       870 junk tracklets (pid -1)
  ========  =========  ===============================================

``pid`` is the release's person id (junk -1, distractors 0); ``camid`` is the
camera minus one (0..5); ``tracklet`` is the example's position in its split
(train and gallery: row order of the track table; query: ``query_IDX`` order).
Junk stays in ``gallery`` so that the evaluation can choose: the ``torchreid``
protocol drops pid -1 (gallery of 9,330; 140 queries have no cross-camera match
and are skipped), ``mars_official`` ranks all test tracklets with junk ignored,
``with_query_in_gallery`` is what AP3D and later papers report.

Frames are ordered by the tracklet and frame numbers in their names (the
``T`` and ``F`` fields), not by name-list or directory order, and stored as the
release's original JPEG bytes. Every frame is checked for existence before
anything is written, and for complete JPEG markers and decoded once while it is
read (see ``data_pipelines/video_reid_common.py``).
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import re

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import provenance
from data_pipelines import release_files
from data_pipelines import video_reid_common as common

NUM_CAMERAS = 6
JUNK_PID = -1
DISTRACTOR_PID = 0

# <pid4 or 00-1>C<cam>T<tracklet>F<frame>.jpg, e.g. 0001C1T0001F001.jpg, 00-1C2T0003F017.jpg.
NAME_RE = re.compile(r'(?P<pid>\d{4}|00-1)C(?P<cam>\d)T(?P<trk>\d+)F(?P<frm>\d+)\.jpg')

_INFO_TODO = ('Copy the info/ folder of the MARS-evaluation repository '
              '(github.com/liangzheng06/MARS-evaluation) to <manual_dir>/info/ unchanged.')

DESCRIPTION = """\
MARS (Motion Analysis and Re-identification Set): 1,261 identities, 20,478
tracklets from 6 cameras on the Tsinghua campus, auto-detected and tracked
(DPM + GMMCP), 256x128 JPEG crops. Splits follow the info/ files of the
official MARS-evaluation code: train = 625 ids / 8,298 tracklets; query = the
1,980 rows of query_IDX.mat; gallery = the other 10,200 test tracklets,
including distractors (pid 0) and junk (pid -1), which the evaluation protocol
keeps or drops. Frames are stored as the original JPEG bytes in frame order.
"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
MARS cannot be downloaded automatically (academic use; no redistribution).

1. From the MARS dataset page of the authors (Liang Zheng et al., "MARS: A Video
   Benchmark for Large-Scale Person Re-identification", ECCV 2016; the page links
   Google Drive and Baidu copies) download bbox_train.zip and bbox_test.zip
   (about 6.3 GB together).
2. Extract both into manual_dir, giving manual_dir/bbox_train/0001/0001C1T0001F001.jpg
   ... and manual_dir/bbox_test/00-1/..., manual_dir/bbox_test/0000/..., ...
   (a doubled bbox_train/bbox_train level is accepted).
3. The split files are not in the image archives: copy the info/ folder of the
   official evaluation code, the GitHub repository liangzheng06/MARS-evaluation,
   to manual_dir/info/, so that it holds train_name.txt, test_name.txt,
   tracks_train_info.mat, tracks_test_info.mat and query_IDX.mat.

Then prepare with
  tfds.download.DownloadConfig(manual_dir=<manual_dir>)
or `python -m experiments.train ... --config.manual_dir=<manual_dir>`.
"""


@dataclasses.dataclass(frozen=True)
class MarsInfo:
  """The content of MARS's ``info/`` folder.

  Attributes:
    train_names, test_names: the lines of train_name.txt / test_name.txt.
    track_train, track_test: (N, 4) int64 ``[start, end, pid, cam]``, 1-based
      inclusive rows of the name lists.
    query_idx: (Nq,) int64, 1-based rows of ``track_test``.
    info_dir: where they were read (for messages).
  """
  train_names: list
  test_names: list
  track_train: np.ndarray
  track_test: np.ndarray
  query_idx: np.ndarray
  info_dir: str = 'info'


def pid_folder(pid: int) -> str:
  """The folder (and name prefix) of a pid: 1 -> '0001', 0 -> '0000', -1 -> '00-1'."""
  return '00-1' if pid == JUNK_PID else f'{pid:04d}'


def _parse_pid(text: str) -> int:
  return JUNK_PID if text == '00-1' else int(text)


def _read_names(path: pathlib.Path) -> list:
  """One bare file name per line; CRLF or LF; trailing blank lines ignored."""
  try:
    text = path.read_bytes().decode('ascii')
  except UnicodeDecodeError as e:
    raise release_files.release_error(path, 'a text file of JPEG names, one per line',
                               f'It is not ASCII text ({e}). {_INFO_TODO}') from None
  names = [line.strip() for line in text.splitlines()]
  while names and not names[-1]:
    names.pop()
  if not names:
    raise release_files.release_error(path, 'a text file of JPEG names, one per line',
                               f'It is empty. {_INFO_TODO}')
  if '' in names:
    raise release_files.release_error(path, 'no blank lines between names (rows of the track '
                               'tables count lines)',
                               f'Line {names.index("") + 1} is blank. {_INFO_TODO}')
  return names


def _read_mat(path: pathlib.Path, variable: str) -> np.ndarray:
  try:
    import scipy.io  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ImportError('Reading MARS info/*.mat files needs scipy: pip install scipy') from None
  try:
    contents = scipy.io.loadmat(str(path))
  except NotImplementedError:
    raise release_files.release_error(path, f'a MATLAB v5 .mat file holding {variable!r}',
                               f'It is a v7.3 (HDF5) file, not the original. {_INFO_TODO}'
                               ) from None
  except Exception as e:  # pylint: disable=broad-except
    raise release_files.release_error(path, f'a MATLAB .mat file holding {variable!r}',
                               f'Reading it failed ({type(e).__name__}: {e}). {_INFO_TODO}'
                               ) from None
  if variable not in contents:
    found = sorted(k for k in contents if not k.startswith('__'))
    raise release_files.release_error(path, f'the variable {variable!r}',
                               f'It holds {found}. {_INFO_TODO}')
  return np.asarray(contents[variable])


def _track_table(array: np.ndarray, path, num_names: int, names_file: str) -> np.ndarray:
  if array.ndim != 2 or array.shape[1] != 4 or not len(array):
    raise release_files.release_error(path, 'an (N, 4) table [start, end, pid, cam]',
                               f'Got shape {array.shape}. {_INFO_TODO}')
  table = array.astype(np.int64)
  if not np.array_equal(table, array):
    raise release_files.release_error(path, 'integer rows [start, end, pid, cam]',
                               f'It holds non-integers. {_INFO_TODO}')
  start, end = table[:, 0], table[:, 1]
  bad = np.flatnonzero((start < 1) | (end < start) | (end > num_names))
  if len(bad):
    i = int(bad[0])
    raise release_files.release_error(
        path, f'1-based inclusive row ranges within the {num_names} lines of {names_file}',
        f'Row {i + 1} is {table[i].tolist()}. The track tables and the name lists come from '
        f'different releases: take all five info/ files from one copy. {_INFO_TODO}')
  return table


def read_mars_info(info_dir) -> MarsInfo:
  """Reads the five files of ``info/`` (raising ReleaseError naming any problem)."""
  info_dir = pathlib.Path(info_dir)
  expected = {
      'train_name.txt': 'the list of training frame names',
      'test_name.txt': 'the list of test frame names',
      'tracks_train_info.mat': 'the training track table',
      'tracks_test_info.mat': 'the test track table',
      'query_IDX.mat': 'the query indices',
  }
  paths = {name: release_files.require_path(info_dir / name, f'{what} of MARS ({name})',
                                            _INFO_TODO, kind='file')
           for name, what in expected.items()}
  train_names = _read_names(paths['train_name.txt'])
  test_names = _read_names(paths['test_name.txt'])
  track_train = _track_table(_read_mat(paths['tracks_train_info.mat'], 'track_train_info'),
                             paths['tracks_train_info.mat'], len(train_names), 'train_name.txt')
  track_test = _track_table(_read_mat(paths['tracks_test_info.mat'], 'track_test_info'),
                            paths['tracks_test_info.mat'], len(test_names), 'test_name.txt')
  query = _read_mat(paths['query_IDX.mat'], 'query_IDX').reshape(-1)
  query_idx = query.astype(np.int64)
  if (not len(query_idx) or not np.array_equal(query_idx, query)
      or query_idx.min() < 1 or query_idx.max() > len(track_test)
      or len(np.unique(query_idx)) != len(query_idx)):
    raise release_files.release_error(
        paths['query_IDX.mat'],
        f'distinct 1-based row numbers of tracks_test_info.mat (1..{len(track_test)})',
        f'Got {len(query_idx)} values in [{query.min() if len(query) else "-"}, '
        f'{query.max() if len(query) else "-"}]. {_INFO_TODO}')
  return MarsInfo(train_names, test_names, track_train, track_test, query_idx, str(info_dir))


def _parse_names(names: list, path: str) -> tuple:
  """(pid, cam, trk, frm) int64 arrays of the name list; ReleaseError on a bad name."""
  n = len(names)
  pid, cam, trk, frm = (np.empty(n, np.int64) for _ in range(4))
  fullmatch = NAME_RE.fullmatch
  for i, name in enumerate(names):
    m = fullmatch(name)
    if m is None:
      raise release_files.release_error(
          f'{path}, line {i + 1}', "a MARS frame name like '0001C1T0001F001.jpg'",
          f'Got {name!r}. {_INFO_TODO}')
    pid[i] = _parse_pid(m['pid'])
    cam[i], trk[i], frm[i] = int(m['cam']), int(m['trk']), int(m['frm'])
  return pid, cam, trk, frm


def _tracklets(names: list, table: np.ndarray, rows, names_path: str,
               table_path: str) -> list:
  """Tracklets of ``rows`` of a track table; frames 'pid4/name' sorted by (T, F)."""
  pid, cam, trk, frm = _parse_names(names, names_path)
  out = []
  for row in rows:
    start, end, row_pid, row_cam = (int(v) for v in table[row])
    lo, hi = start - 1, end
    if not 1 <= row_cam <= NUM_CAMERAS:
      raise release_files.release_error(f'{table_path}, row {row + 1}',
                                 f'a camera in 1..{NUM_CAMERAS}',
                                 f'Got {table[row].tolist()}. {_INFO_TODO}')
    for what, values, want in (('person', pid, row_pid), ('camera', cam, row_cam)):
      wrong = np.flatnonzero(values[lo:hi] != want)
      if len(wrong):
        line = lo + int(wrong[0])
        raise release_files.release_error(
            f'{table_path}, row {row + 1}',
            f'lines {start}..{end} of {os.path.basename(names_path)} to be frames of one '
            f'tracklet of person {row_pid}, camera {row_cam} (row {table[row].tolist()})',
            f'Line {line + 1} is {names[line]!r} ({what} {int(values[line])}). The name list '
            'and the track table do not belong together. ' + _INFO_TODO)
    order = np.lexsort((frm[lo:hi], trk[lo:hi]))  # by tracklet number, then frame number
    t, f = trk[lo:hi][order], frm[lo:hi][order]
    dup = np.flatnonzero((np.diff(t) == 0) & (np.diff(f) == 0))
    if len(dup):
      a, b = (names[lo + int(order[dup[0] + k])] for k in (0, 1))
      raise release_files.release_error(f'{names_path}, lines {start}..{end}',
                                 'one name per frame number in a tracklet',
                                 f'{a!r} and {b!r} have the same T and F numbers. {_INFO_TODO}')
    folder = pid_folder(row_pid)
    frames = tuple(f'{folder}/{names[lo + int(j)]}' for j in order)
    out.append(common.Tracklet(pid=row_pid, camid=row_cam - 1, frames=frames))
  return out


def mars_split_index(info: MarsInfo) -> dict:
  """{'train', 'query', 'gallery'} -> list of Tracklet, from ``info`` alone (no images).

  Frame paths are relative to ``bbox_train/`` (train) or ``bbox_test/`` (query,
  gallery): ``<pid folder>/<name>``. Query = ``query_IDX`` rows in that order;
  gallery = every other test row, in table order, junk and distractors included.

  Raises:
    ReleaseError: a name that is not a MARS frame name, a track whose names are
      not all of its person and camera, a camera outside 1..6, duplicate frames.
  """
  info_dir = info.info_dir
  query_rows = info.query_idx - 1
  is_query = np.zeros(len(info.track_test), bool)
  is_query[query_rows] = True
  train = _tracklets(info.train_names, info.track_train, range(len(info.track_train)),
                     f'{info_dir}/train_name.txt', f'{info_dir}/tracks_train_info.mat')
  test = _tracklets(info.test_names, info.track_test, range(len(info.track_test)),
                    f'{info_dir}/test_name.txt', f'{info_dir}/tracks_test_info.mat')
  return {
      'train': train,
      'query': [test[int(r)] for r in query_rows],
      'gallery': [t for t, q in zip(test, is_query) if not q],
  }


def images_dir(root: pathlib.Path, subset: str) -> pathlib.Path:
  """``root/subset``, or ``root/subset/subset`` when the archive was extracted doubly."""
  path = release_files.require_path(
      root / subset, f'the MARS images of {subset}.zip (<pid>/<name>.jpg folders)',
      f'Extract {subset}.zip into {root} (see the MANUAL_DOWNLOAD_INSTRUCTIONS of `mars`).')
  nested = path / subset
  return nested if nested.is_dir() else path


def check_frames_exist(tracklets, image_dir: pathlib.Path, names_file: str, archive: str,
                       root: pathlib.Path) -> None:
  """Every listed frame is a file under ``image_dir`` (one listing per folder)."""
  by_folder = collections.defaultdict(list)
  for tracklet in tracklets:
    for frame in tracklet.frames:
      folder, name = frame.split('/')
      by_folder[folder].append(name)
  missing, total = [], 0
  for folder, names in sorted(by_folder.items()):
    total += len(names)
    try:
      present = set(os.listdir(image_dir / folder))
    except (FileNotFoundError, NotADirectoryError):
      present = set()
    missing.extend(image_dir / folder / n for n in names if n not in present)
  if missing:
    raise release_files.release_error(
        missing[0], f'the frame image listed in {names_file}',
        f'{len(missing)} of the {total} frames it lists are missing under {image_dir} '
        f'(e.g. {", ".join(str(m) for m in missing[:3])}). Extract {archive} completely '
        f'into {root}, and take info/ from the MARS-evaluation repository (its lists name '
        'every image of the release).')


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for MARS (manual download)."""

  name = 'mars'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: train / query / gallery from info/ of '
                            'MARS-evaluation; junk and distractors kept in gallery.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return common.dataset_info(self, description=DESCRIPTION, encoding_format='jpeg',
                               homepage='https://github.com/liangzheng06/MARS-evaluation')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = pathlib.Path(os.fspath(dl_manager.manual_dir))
    info_dir = release_files.require_path(
        root / 'info', 'the info/ folder of MARS-evaluation (train_name.txt, test_name.txt, '
        'tracks_train_info.mat, tracks_test_info.mat, query_IDX.mat)', _INFO_TODO)
    index = mars_split_index(read_mars_info(info_dir))
    train_dir = images_dir(root, 'bbox_train')
    test_dir = images_dir(root, 'bbox_test')
    check_frames_exist(index['train'], train_dir, 'info/train_name.txt', 'bbox_train.zip',
                       root)
    check_frames_exist(index['query'] + index['gallery'], test_dir, 'info/test_name.txt',
                       'bbox_test.zip', root)
    self.info.metadata['split_stats'] = {s: common.split_stats(t) for s, t in index.items()}
    self.info.metadata[provenance.SOURCE_KEY] = provenance.source_record(
        root, [info_dir, train_dir, test_dir])
    dirs = {'train': train_dir, 'query': test_dir, 'gallery': test_dir}
    return {split: self._generate_examples(index[split], dirs[split], split)
            for split in common.SPLITS}

  def _generate_examples(self, tracklets, image_dir, split):
    yield from common.generate_examples(tracklets, image_dir, 'jpeg', split=split)
