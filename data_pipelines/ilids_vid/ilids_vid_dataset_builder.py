"""`ilids_vid`: the iLIDS-VID video person re-ID dataset (Wang et al., ECCV 2014).

Usage::

  import tensorflow_datasets as tfds
  import data_pipelines.ilids_vid  # registers the builder

  builder = tfds.builder('ilids_vid/split_3', file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/ilids'))

Nothing is downloaded: the release must be extracted under ``manual_dir`` (see
``MANUAL_DOWNLOAD_INSTRUCTIONS``). Each of the ten standard train/test splits is
a builder config (``split_0`` .. ``split_9``, default ``split_0``), read from the
release's ``train_test_splits_ilidsvid.mat`` exactly as torchreid reads it:
``ls_set`` (10 x 300) holds 1-based indices into the sorted cam1 person folders;
in each row the first half are the test persons, the second half the train
persons.

Splits: ``train`` = both cameras of the 150 train persons (300 tracklets),
``query`` = cam1 of the 150 test persons, ``gallery`` = cam2 of the same persons.
``pid`` is the person number of the folder (person012 -> 12; numbers are
non-contiguous, from 1..319), ``camid`` 0 = cam1, 1 = cam2, ``tracklet`` the
example's position in its split (persons in folder order; in ``train`` each
person's cam1 tracklet precedes its cam2 one). Frames are ordered by the frame
number in their file name (torchreid keeps directory order, which is a bug), and
the release's PNG bytes are stored unchanged.

The helpers (features, frame listing and integrity checks, example generation,
the split configs) are those of ``data_pipelines/video_reid_common.py``, shared
with the other video re-ID builders.
"""

from __future__ import annotations

import os
import pathlib
import re
import textwrap
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import provenance
from data_pipelines import release_files
from data_pipelines import video_reid_common as common

NUM_SPLITS = 10
_SEQUENCES = 'i-LIDS-VID/sequences'
_SPLITS_MAT = 'train-test people splits/train_test_splits_ilidsvid.mat'
_PERSON_DIR = re.compile(r'person(?P<pid>\d+)')
_FRAME = re.compile(r'cam(?P<cam>\d)_person(?P<pid>\d+)_(?P<frame>\d+)\.png')
_CAMERAS = ('cam1', 'cam2')
_MARKERS = tuple(f'{_SEQUENCES}/{cam}' for cam in _CAMERAS)

_REDO = ('Extract the original iLIDS-VID.tar again into the manual folder '
         '(see the MANUAL_DOWNLOAD_INSTRUCTIONS of the ilids_vid builder).')

_DESCRIPTION = """\
iLIDS-VID (Wang et al., ECCV 2014): 300 persons, each seen by two non-overlapping
cameras of an airport arrival hall (i-LIDS MCTS footage), one image sequence per
person and camera (22..192 frames, PNG). Standard protocol: ten random
half/half splits of the persons; cam1 sequences of the test persons are queries,
cam2 sequences the gallery; results are averaged over the ten splits.
"""


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for iLIDS-VID, one config per standard split."""

  name = 'ilids_vid'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: the 10 standard splits, original PNG frames.'}
  BUILDER_CONFIGS = common.split_configs('iLIDS-VID', num_test=150, num_train=150,
                                         num_splits=NUM_SPLITS)
  DEFAULT_CONFIG_NAME = 'split_0'
  MANUAL_DOWNLOAD_INSTRUCTIONS = textwrap.dedent("""\
  iLIDS-VID cannot be downloaded automatically. Download the archive
  iLIDS-VID.tar from the dataset's page,
  https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html
  (formerly http://www.eecs.qmul.ac.uk/~xiatian/downloads_qmul_iLIDS-VID_ReID_dataset.html;
  the archive was at http://www.eecs.qmul.ac.uk/~xiatian/iLIDS-VID/iLIDS-VID.tar),
  observing its terms (research use only), and extract it, unchanged, into the
  manual folder (`--manual_dir`, by default ~/tensorflow_datasets/downloads/manual):

    tar -xf iLIDS-VID.tar -C <manual_dir>

  so that the manual folder holds the release's own layout:

    <manual_dir>/i-LIDS-VID/sequences/cam1/person001/cam1_person001_00317.png ...
    <manual_dir>/i-LIDS-VID/sequences/cam2/person001/cam2_person001_00480.png ...
    <manual_dir>/train-test people splits/train_test_splits_ilidsvid.mat

  (i-LIDS-VID/images/ and the other files of the archive are not used).
  Extracting it into one subfolder of the manual folder instead, e.g.
  <manual_dir>/ilids-vid/ as torchreid does, works too. The ten splits come from
  train_test_splits_ilidsvid.mat, which is part of the archive.
  """)

  def _info(self) -> tfds.core.DatasetInfo:
    return common.dataset_info(
        self, description=_DESCRIPTION, encoding_format='png',
        homepage='https://xiatian-zhu.github.io/downloads_qmul_iLIDS-VID_ReID_dataset.html',
        citation="""\
@inproceedings{wang2014person,
  title={Person Re-Identification by Video Ranking},
  author={Wang, Taiqing and Gong, Shaogang and Zhu, Xiatian and Wang, Shengjin},
  booktitle={ECCV},
  year={2014}
}""")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = release_files.find_release_root(
        os.fspath(dl_manager.manual_dir), _MARKERS, search_subfolders=True,
        expected=f'the iLIDS-VID release ({_SEQUENCES}/cam1 and cam2, and {_SPLITS_MAT!r}), '
        'in the manual folder or in one subfolder of it', todo=_REDO)
    test_dirs, train_dirs = _read_split(root, self.builder_config.split_index)
    self.info.metadata['split_index'] = self.builder_config.split_index
    self.info.metadata['test_persons'] = list(test_dirs)
    self.info.metadata['train_persons'] = list(train_dirs)
    tracklets = {name: [_tracklet(root, person, camid) for person in test_dirs]
                 for name, camid in (('query', 0), ('gallery', 1))}
    tracklets['train'] = [_tracklet(root, person, camid)
                          for person in train_dirs for camid in (0, 1)]
    self.info.metadata['split_stats'] = {s: common.split_stats(t) for s, t in tracklets.items()}
    self.info.metadata[provenance.SOURCE_KEY] = provenance.source_record(
        dl_manager.manual_dir, [root / _SEQUENCES, root / _SPLITS_MAT])
    return {split: self._generate_examples(tracklets[split], root, split)
            for split in common.SPLITS}

  def _generate_examples(self, tracklets: Sequence[common.Tracklet], root: pathlib.Path,
                         split: str):
    yield from common.generate_examples(tracklets, root, 'png', split=split)


def _person_dirs(camera_dir: pathlib.Path) -> list[str]:
  names = sorted(p.name for p in camera_dir.iterdir() if p.is_dir() and not p.name.startswith('.'))
  for name in names:
    if not _PERSON_DIR.fullmatch(name):
      raise release_files.release_error(camera_dir / name,
                                        f'only personNNN folders in {camera_dir}', _REDO)
  if not names:
    raise FileNotFoundError(f'No person folders in {camera_dir}: expected personNNN folders. '
                            f'{_REDO}')
  return names


def _read_split(root: pathlib.Path, split_index: int) -> tuple[list[str], list[str]]:
  """(test, train) person folder names of one split, each sorted."""
  from scipy import io as scipy_io  # pylint: disable=g-import-not-at-top

  mat_path = root / _SPLITS_MAT
  if not mat_path.exists():
    raise FileNotFoundError(
        f'Missing split file {mat_path}: expected the ten iLIDS-VID splits '
        f'(variable ls_set) there; it is part of iLIDS-VID.tar. {_REDO}')
  try:
    with mat_path.open('rb') as f:
      ls_set = scipy_io.loadmat(f)['ls_set']
  except (ValueError, TypeError, KeyError, NotImplementedError, OSError) as e:
    raise release_files.release_error(mat_path, 'a MATLAB file with a 10 x 300 matrix ls_set',
                               f'Cannot read it ({type(e).__name__}: {e}). {_REDO}') from e
  persons = _person_dirs(root / _SEQUENCES / 'cam1')
  n = len(persons)
  ls_set = np.asarray(ls_set)
  if ls_set.ndim != 2 or ls_set.shape[0] != NUM_SPLITS or ls_set.shape[1] != n:
    raise release_files.release_error(
        mat_path, f'an ls_set of shape ({NUM_SPLITS}, {n}): one row per split, one column per '
        f'person folder of {root / _SEQUENCES / "cam1"} ({n} folders; the release has 300)',
        f'Its shape is {ls_set.shape}. {_REDO}')
  row = ls_set[split_index]
  if (not np.all(row == np.round(row))
      or not np.array_equal(np.sort(row.astype(np.int64)), np.arange(1, n + 1))):
    raise release_files.release_error(
        mat_path, f'in row {split_index} of ls_set, a permutation of 1..{n} (1-based indices '
        'of the cam1 person folders)', f'It is not one. {_REDO}')
  row = row.astype(np.int64) - 1
  half = n // 2  # "first half test, second half train", as torchreid and Wang et al.
  test = sorted(persons[i] for i in row[:half])
  train = sorted(persons[i] for i in row[half:])
  return test, train


def _tracklet(root: pathlib.Path, person: str, camid: int) -> common.Tracklet:
  cam = _CAMERAS[camid]
  folder = f'{_SEQUENCES}/{cam}/{person}'
  if not (root / folder).is_dir():
    raise FileNotFoundError(
        f'Missing folder {root / folder}: the split file lists {person} (a folder of cam1), '
        f'so expected its {cam} sequence there. {_REDO}')
  pid = int(_PERSON_DIR.fullmatch(person).group('pid'))

  def check(match):
    if match.group('cam') != cam[-1] or int(match.group('pid')) != pid:
      return f'Its camera or person differs from its folder {cam}/{person}'
    return None

  names = release_files.list_frames(root / folder, '.png', _FRAME,
                                    example=f'{cam}_{person}_00317.png', todo=_REDO, check=check)
  return common.Tracklet(pid=pid, camid=camid, frames=tuple(f'{folder}/{n}' for n in names))
