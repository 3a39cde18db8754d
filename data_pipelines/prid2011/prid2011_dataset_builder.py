"""`prid2011`: the PRID-2011 video person re-ID dataset (Hirzer et al., SCIA 2011).

Usage::

  import tensorflow_datasets as tfds
  import data_pipelines.prid2011  # registers the builder

  builder = tfds.builder('prid2011/split_3', file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/prid2011'))

Nothing is downloaded: the release and the split file must be placed under
``manual_dir`` (see ``MANUAL_DOWNLOAD_INSTRUCTIONS``). Each of the ten standard
splits is a builder config (``split_0`` .. ``split_9``, default ``split_0``),
read from ``splits_prid2011.json`` (the file torchreid and most papers use: 10
splits, each 89 test + 89 train of the same 178 persons). Only the multi-shot
sequences of the persons named in the split file are used: the others (cam_a
has 385 persons, cam_b 749, only 200 are in both; 22 of those are excluded by
the protocol) are ignored. The split is never recomputed from frame counts.

Splits: ``train`` = both cameras of the 89 train persons (178 tracklets),
``query`` = cam_a of the 89 test persons, ``gallery`` = cam_b of the same
persons. ``pid`` is the folder's person number (person_0012 -> 12), ``camid`` 0 =
cam_a, 1 = cam_b, ``tracklet`` the example's position in its split (persons in
name order; in ``train`` each person's cam_a tracklet precedes its cam_b one).
Frames are ordered by the number in their file name (0001.png, 0002.png, ...),
not by directory order, and the release's PNG bytes are stored unchanged. The
helpers are those of ``data_pipelines/video_reid_common.py``.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import textwrap
from typing import Sequence

import tensorflow_datasets as tfds

from data_pipelines import provenance
from data_pipelines import release_files
from data_pipelines import video_reid_common as common

NUM_SPLITS = 10
SPLITS_FILE = 'splits_prid2011.json'
_MULTI_SHOT = 'prid_2011/multi_shot'
_CAMERAS = ('cam_a', 'cam_b')
_MARKERS = tuple(f'{_MULTI_SHOT}/{cam}' for cam in _CAMERAS)
_PERSON = re.compile(r'person_(?P<pid>\d+)')
_FRAME = re.compile(r'(?P<frame>\d+)\.png')

_REDO = ('Extract the original PRID-2011 archive again into the manual folder (see the '
         'MANUAL_DOWNLOAD_INSTRUCTIONS of the prid2011 builder).')
_LAYOUT_REDO = ('Extract the original PRID-2011 archive into the manual folder and put '
                f'{SPLITS_FILE} beside its prid_2011/ folder (see the '
                'MANUAL_DOWNLOAD_INSTRUCTIONS of the prid2011 builder).')

_SPLIT_REDO = (f'Download {SPLITS_FILE} again as the MANUAL_DOWNLOAD_INSTRUCTIONS of the '
               'prid2011 builder say (unchanged; the standard file has 10 splits of 89 test '
               '+ 89 train persons).')

_DESCRIPTION = """\
PRID-2011 (Hirzer et al., SCIA 2011): pedestrians seen by two static,
non-overlapping outdoor cameras (A: 385 persons, B: 749, 200 in both). Video
re-ID protocol: the multi-shot sequences of the 178 persons whose sequences in
both cameras are long enough, in ten half/half splits (splits_prid2011.json);
cam_a sequences of the test persons are queries, cam_b sequences the gallery;
results are averaged over the ten splits.
"""


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for PRID-2011 (multi-shot), one config per standard split."""

  name = 'prid2011'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: the 10 standard splits, original PNG frames.'}
  BUILDER_CONFIGS = common.split_configs('PRID-2011', num_test=89, num_train=89,
                                         num_splits=NUM_SPLITS)
  DEFAULT_CONFIG_NAME = 'split_0'
  MANUAL_DOWNLOAD_INSTRUCTIONS = textwrap.dedent(f"""\
  PRID-2011 cannot be downloaded automatically. You need two things:

  1. The dataset, from its page at TU Graz,
     https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/PRID11/
     (observe its terms; cite Hirzer et al., SCIA 2011). Extract the archive,
     unchanged, into the manual folder (`--manual_dir`, by default
     ~/tensorflow_datasets/downloads/manual), giving its folder prid_2011/.
  2. The split file {SPLITS_FILE} (10 splits of 178 persons, created by the
     iLIDS-VID authors), which torchreid's documentation (docs/datasets.rst)
     links to on Google Drive:
     https://drive.google.com/open?id=1qw7SI7YdIgfHetIQO7LLW4SHpL_qkieT
     Put it, under that name, in the manual folder beside prid_2011/.

  The manual folder then holds:

    <manual_dir>/{SPLITS_FILE}
    <manual_dir>/prid_2011/multi_shot/cam_a/person_0001/0001.png ...
    <manual_dir>/prid_2011/multi_shot/cam_b/person_0001/0001.png ...

  (prid_2011/single_shot/ is not used). The same layout inside one subfolder of
  the manual folder, e.g. <manual_dir>/prid2011/ as torchreid expects it, works
  too; {SPLITS_FILE} is then looked for in that subfolder, then in the manual
  folder itself.
  """)

  def _info(self) -> tfds.core.DatasetInfo:
    return common.dataset_info(
        self, description=_DESCRIPTION, encoding_format='png',
        homepage='https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/PRID11/',
        citation="""\
@inproceedings{hirzer2011person,
  title={Person Re-Identification by Descriptive and Discriminative Classification},
  author={Hirzer, Martin and Beleznai, Csaba and Roth, Peter M. and Bischof, Horst},
  booktitle={Scandinavian Conference on Image Analysis (SCIA)},
  year={2011}
}""")

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    manual_dir = pathlib.Path(os.fspath(dl_manager.manual_dir))
    root = release_files.find_release_root(
        manual_dir, _MARKERS, search_subfolders=True,
        expected=f'the PRID-2011 release ({_MULTI_SHOT}/cam_a and cam_b, and {SPLITS_FILE}), '
        'in the manual folder or in one subfolder of it', todo=_LAYOUT_REDO)
    split_index = self.builder_config.split_index
    splits_file = _find_splits_file(root, manual_dir)
    test, train = read_split(splits_file, split_index)
    self.info.metadata['split_index'] = split_index
    self.info.metadata['test_persons'] = test
    self.info.metadata['train_persons'] = train
    where = {**{p: 'test' for p in test}, **{p: 'train' for p in train}}

    def tracklet(person, camid):
      return _tracklet(root, person, camid, f'split {split_index}, {where[person]}')

    tracklets = {name: [tracklet(person, camid) for person in test]
                 for name, camid in (('query', 0), ('gallery', 1))}
    tracklets['train'] = [tracklet(person, camid) for person in train for camid in (0, 1)]
    self.info.metadata['split_stats'] = {s: common.split_stats(t) for s, t in tracklets.items()}
    self.info.metadata[provenance.SOURCE_KEY] = provenance.source_record(
        manual_dir, [root / _MULTI_SHOT / cam for cam in _CAMERAS] + [splits_file])
    return {split: self._generate_examples(tracklets[split], root, split)
            for split in common.SPLITS}

  def _generate_examples(self, tracklets: Sequence[common.Tracklet], root: pathlib.Path,
                         split: str):
    yield from common.generate_examples(tracklets, root, 'png', split=split)


def _find_splits_file(root: pathlib.Path, manual_dir: pathlib.Path) -> pathlib.Path:
  candidates = [root / SPLITS_FILE]
  if root != manual_dir:
    candidates.append(manual_dir / SPLITS_FILE)
  for path in candidates:
    if path.exists():
      return path
  raise FileNotFoundError(
      f'Missing split file {SPLITS_FILE}: looked for {" and ".join(str(c) for c in candidates)}. '
      f'Expected the standard PRID-2011 splits there (10 splits of 89 test + 89 train persons). '
      'Download it as the MANUAL_DOWNLOAD_INSTRUCTIONS of the prid2011 builder say (the link in '
      f'torchreid\'s docs/datasets.rst) and put it beside the prid_2011/ folder, in {root}.')


def read_split(path: pathlib.Path, split_index: int) -> tuple[list[str], list[str]]:
  """(test, train) person folder names of split ``split_index`` of a splits file, sorted."""
  expected = (f'a JSON list of {NUM_SPLITS} objects {{"test": [...], "train": [...]}} of '
              'person folder names like "person_0001"')
  try:
    splits = json.loads(path.read_text())
  except (ValueError, UnicodeDecodeError) as e:
    raise release_files.release_error(path, expected,
                               f'Cannot parse it ({e}). {_SPLIT_REDO}') from e
  if not isinstance(splits, list) or len(splits) != NUM_SPLITS:
    got = f'{len(splits)} entries' if isinstance(splits, list) else f'a {type(splits).__name__}'
    raise release_files.release_error(path, expected, f'Got {got}. {_SPLIT_REDO}')
  split = splits[split_index]
  lists = {}
  for key in ('test', 'train'):
    names = split.get(key) if isinstance(split, dict) else None
    if (not isinstance(names, list) or not names
        or not all(isinstance(n, str) and _PERSON.fullmatch(n) for n in names)
        or len(set(names)) != len(names)):
      raise release_files.release_error(f'{path}, split {split_index}, "{key}"',
                                 f'{expected} (non-empty, without repetitions)', _SPLIT_REDO)
    lists[key] = sorted(names)
  both = set(lists['test']) & set(lists['train'])
  if both:
    raise release_files.release_error(f'{path}, split {split_index}',
                                      'disjoint test and train lists',
                                      f'{sorted(both)[:5]} are in both. {_SPLIT_REDO}')
  return lists['test'], lists['train']


def _tracklet(root: pathlib.Path, person: str, camid: int, where: str) -> common.Tracklet:
  cam = _CAMERAS[camid]
  folder = f'{_MULTI_SHOT}/{cam}/{person}'
  if not (root / folder).is_dir():
    raise FileNotFoundError(
        f'Missing folder {root / folder}: {SPLITS_FILE} lists {person} ({where}), so expected '
        f'its {cam} sequence there (every listed person has one in both cameras). Check that '
        f'the release is complete and that the split file is the standard one. {_REDO}')
  names = release_files.list_frames(root / folder, '.png', _FRAME, example='0001.png', todo=_REDO)
  return common.Tracklet(pid=int(_PERSON.fullmatch(person).group('pid')), camid=camid,
                         frames=tuple(f'{folder}/{n}' for n in names))
