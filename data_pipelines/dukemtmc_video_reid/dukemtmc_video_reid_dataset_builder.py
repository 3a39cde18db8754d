"""`dukemtmc_video_reid`: DukeMTMC-VideoReID (Wu et al., CVPR 2018).

Usage::

  import tensorflow_datasets as tfds
  import data_pipelines.dukemtmc_video_reid  # registers the builder

  builder = tfds.builder('dukemtmc_video_reid', file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/duke'))

Nothing is downloaded. ``manual_dir`` is the folder into which
``DukeMTMC-VideoReID.zip`` was extracted (holding ``DukeMTMC-VideoReID/``), or
that folder itself, or torchreid's ``dukemtmc-vidreid/DukeMTMC-VideoReID``::

  DukeMTMC-VideoReID/{train,query,gallery}/<pid4>/<tracklet>/<pid4>_C<c>_F<f4>_X<g5>.jpg
      e.g. train/0001/0003/0001_C6_F0099_X30823.jpg
           (the older naming 0001C6F0099X30823.jpg is read too)

``F`` is the frame's index within the tracklet, ``C`` the camera (1..8), ``X``
(or ``D``) the frame number in the camera's video. The release's folders are the
splits: ``train`` (702 ids, 2,196 tracklets), ``query`` (702 tracklets, one per
test id), ``gallery`` (2,636 tracklets: the 702 test ids and 408 distractor ids,
each distractor with its own pid). ``pid`` is the folder's person id, ``camid``
the camera minus one, ``tracklet`` the example's position in its split (person
folders, then tracklet folders, in sorted order). The standard protocol is
``torchreid`` (no junk label; same pid and camera excluded).

Frames are ordered by their ``F`` number and all of them are kept: some
tracklets start at F0002, and loaders that look up F0001..F{n} (torchreid, AP3D)
silently lose their last frame. Frames are the release's original JPEG bytes.
"""

from __future__ import annotations

import os
import pathlib
import re

import tensorflow_datasets as tfds

from data_pipelines import provenance
from data_pipelines import release_files
from data_pipelines import video_reid_common as common

NUM_CAMERAS = 8
RELEASE_DIR = 'DukeMTMC-VideoReID'

# New naming 0001_C6_F0099_X30823.jpg and old naming 0001C6F0099X30823.jpg.
NAME_RE = re.compile(
    r'(?P<pid>\d{4})_?C(?P<cam>\d+)_?F(?P<frm>\d+)_?(?P<tag>[XD])(?P<vframe>\d+)\.jpg')

_TODO = ('Extract DukeMTMC-VideoReID.zip unchanged into manual_dir (see the '
         'MANUAL_DOWNLOAD_INSTRUCTIONS of `dukemtmc_video_reid`).')

DESCRIPTION = """\
DukeMTMC-VideoReID: a video re-ID subset of the DukeMTMC multi-camera tracking
dataset (8 cameras, Duke University campus), with manually annotated tracklets
sampled every 12 frames: 702 training identities (2,196 tracklets), 702 test
identities with one query tracklet each (702), and a gallery of 2,636 tracklets
including 408 distractor identities. Frames are stored as the original JPEG
bytes, in frame order (F number), every frame kept.
"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
DukeMTMC-VideoReID cannot be downloaded automatically (CC BY-NC-SA 4.0 plus the
DukeMTMC terms; the original Duke server is offline).

1. Get DukeMTMC-VideoReID.zip from the links of the official repository,
   github.com/Yu-Wu/DukeMTMC-VideoReID (README, "Download Dataset"; the authors
   share a Google Drive copy, see the repository's issues if a link is dead).
2. Extract it into manual_dir, giving
   manual_dir/DukeMTMC-VideoReID/{train,query,gallery}/0001/0003/0001_C6_F0099_X30823.jpg
   (manual_dir may also be the DukeMTMC-VideoReID folder itself).

Then prepare with
  tfds.download.DownloadConfig(manual_dir=<manual_dir>)
or `python -m experiments.train ... --config.manual_dir=<manual_dir>`.
"""


def _sorted_dirs(path: pathlib.Path) -> list:
  """Sub-folders of ``path`` (hidden entries and stray files ignored), numeric-aware order."""
  dirs = [e for e in os.scandir(path) if not e.name.startswith('.') and e.is_dir()]
  return sorted((e.name for e in dirs), key=lambda n: (not n.isdigit(), int(n) if n.isdigit()
                                                          else 0, n))


def _frame_key(name: str) -> int:
  m = NAME_RE.fullmatch(name)
  if m is None:
    raise ValueError("not a DukeMTMC-VideoReID frame name like '0001_C6_F0099_X30823.jpg'")
  return int(m['frm'])


def duke_split_index(root) -> dict:
  """{'train', 'query', 'gallery'} -> list of Tracklet from the release's folders.

  Frame paths are relative to ``root`` (the DukeMTMC-VideoReID folder).

  Raises:
    ReleaseError: a missing split folder, a person folder that is not a number,
      a frame name that does not parse or names another person, a tracklet with
      two cameras, no frames, or a camera outside 1..8.
  """
  root = pathlib.Path(root)
  index = {}
  for split in common.SPLITS:
    split_dir = release_files.require_path(
        root / split, f'the {split} folder of DukeMTMC-VideoReID (<pid>/<tracklet>/<frames>.jpg)',
        _TODO)
    tracklets = []
    for pid_name in _sorted_dirs(split_dir):
      pid_dir = split_dir / pid_name
      if not pid_name.isdigit():
        raise release_files.release_error(pid_dir, 'a person folder named by its 4-digit id',
                                   f'Found {pid_name!r}. {_TODO}')
      pid = int(pid_name)
      for trk_name in _sorted_dirs(pid_dir):
        trk_dir = pid_dir / trk_name
        names = [n for n in os.listdir(trk_dir)
                 if not n.startswith('.') and n.lower().endswith('.jpg')]
        if not names:
          raise release_files.release_error(trk_dir, 'a tracklet folder holding its .jpg frames',
                                     f'It has none. {_TODO}')
        names = release_files.sort_frames(names, _frame_key, where=str(trk_dir))
        fields = [NAME_RE.fullmatch(n) for n in names]
        wrong_pid = [n for n, m in zip(names, fields) if int(m['pid']) != pid]
        if wrong_pid:
          raise release_files.release_error(trk_dir / wrong_pid[0],
                                     f'frames of person {pid_name} (the folder)',
                                     f'The name says person {wrong_pid[0][:4]}. {_TODO}')
        cams = sorted({int(m['cam']) for m in fields})
        if len(cams) != 1:
          raise release_files.release_error(trk_dir, 'the frames of one tracklet, from one camera',
                                     f'Its frames are from cameras {cams}. {_TODO}')
        if not 1 <= cams[0] <= NUM_CAMERAS:
          raise release_files.release_error(trk_dir / names[0], f'a camera C1..C{NUM_CAMERAS}',
                                     f'Got C{cams[0]}. {_TODO}')
        tracklets.append(common.Tracklet(
            pid=pid, camid=cams[0] - 1,
            frames=tuple(f'{split}/{pid_name}/{trk_name}/{n}' for n in names)))
    if not tracklets:
      raise release_files.release_error(split_dir, 'person folders with tracklets',
                                 f'It is empty. {_TODO}')
    index[split] = tracklets
  return index


def find_root(manual_dir) -> pathlib.Path:
  """The DukeMTMC-VideoReID folder under ``manual_dir`` (or ``manual_dir`` itself)."""
  return release_files.find_release_root(
      manual_dir, common.SPLITS,
      (RELEASE_DIR, '', f'dukemtmc-vidreid/{RELEASE_DIR}'),
      expected='the DukeMTMC-VideoReID release: train/, query/ and gallery/ folders',
      todo=_TODO)


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for DukeMTMC-VideoReID (manual download)."""

  name = 'dukemtmc_video_reid'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: the release folders as splits; every frame '
                            'kept, in F order.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    return common.dataset_info(self, description=DESCRIPTION, encoding_format='jpeg',
                               homepage='https://github.com/Yu-Wu/DukeMTMC-VideoReID')

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = find_root(os.fspath(dl_manager.manual_dir))
    index = duke_split_index(root)
    self.info.metadata['split_stats'] = {s: common.split_stats(t) for s, t in index.items()}
    self.info.metadata[provenance.SOURCE_KEY] = provenance.source_record(
        dl_manager.manual_dir, [root / split for split in common.SPLITS])
    return {split: self._generate_examples(index[split], root, split)
            for split in common.SPLITS}

  def _generate_examples(self, tracklets, root, split):
    yield from common.generate_examples(tracklets, root, 'jpeg', split=split)
