"""The two layouts of ``tracklet_folders``: a tree of folders, or a CSV manifest.

Tree (used when ``<root>/manifest.csv`` does not exist)::

  <root>/{train,query,gallery}/<person>/<camera>/<tracklet>/<frames>

Only folders count at the split, person and camera levels (other files are
ignored); hidden entries (``.DS_Store``, ``.git``) are ignored everywhere.

Manifest (``<root>/manifest.csv``, which alone then says what the dataset holds):
a header row naming the columns ``split,frame_path,person,camera,tracklet`` (in
any order; further columns are ignored), then one row per frame. ``split`` is
train, query or gallery; ``frame_path`` is absolute or relative to ``<root>``;
``person``, ``camera`` and ``tracklet`` are any text, and the rows sharing all
four of split, person, camera and tracklet are one tracklet. Rows are numbered
as in a spreadsheet (the header is row 1); blank rows are skipped.

In both, frames are ``.jpg``, ``.jpeg`` or ``.png`` files (any case), ordered by
the last number in their file name (``release_files.sort_frames``:
``f_9.jpg`` before ``f_10.jpg``; no number, or two frames of a tracklet with one
number, is an error), never by directory or row order; tracklets are ordered by
(person, camera, tracklet) name. Every problem is one ``ReleaseError`` line
naming the path (and the manifest row).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import os
import pathlib

from data_pipelines import release_files
from data_pipelines import video_reid_common as common

MANIFEST = 'manifest.csv'
COLUMNS = ('split', 'frame_path', 'person', 'camera', 'tracklet')
FRAME_SUFFIXES = ('.jpg', '.jpeg', '.png')

ORDER_TODO = ('the last number in a file name orders the frames of a tracklet: give each frame '
              'its own number (frame_0001.jpg, frame_0002.jpg, ...).')
TODO = ('Lay the tracklets out as <root>/{train,query,gallery}/<person>/<camera>/<tracklet>/'
        f'<frames>, or list their frames in <root>/{MANIFEST} (README, "Your own data").')


@dataclasses.dataclass(frozen=True)
class NamedTracklet:
  """One tracklet with its names as given; ``frames`` (paths under root, or absolute) in order."""
  person: str
  camera: str
  name: str
  frames: tuple[str, ...]


def _entries(folder: pathlib.Path) -> list[os.DirEntry]:
  return sorted((e for e in os.scandir(folder) if not e.name.startswith('.')),
                key=lambda e: e.name)


def _is_frame(name: str) -> bool:
  return name.lower().endswith(FRAME_SUFFIXES)


def _subfolders(folder: pathlib.Path, holds: str) -> list[str]:
  """The names of the folders in ``folder`` (a level above the tracklets); none is an error."""
  entries = _entries(folder)
  names = [e.name for e in entries if e.is_dir()]
  if not names:
    frames = [e.name for e in entries if e.is_file() and _is_frame(e.name)]
    found = (f'It holds frame files ({frames[0]}, ...) but no folders: a level of the tree is '
             'missing' if frames else 'It holds none')
    raise release_files.release_error(folder, holds, f'{found}. {TODO}')
  return names


def read_tree(root) -> dict[str, list[NamedTracklet]]:
  """{split: tracklets} of the folder tree under ``root``; frame paths relative to ``root``.

  Raises:
    ReleaseError: a missing split folder; a split, person or camera folder with no
      folders in it; a tracklet folder with no frame file; a frame name without a
      number, or two frames of a tracklet with one number.
  """
  root = pathlib.Path(root)
  index = {}
  for split in common.SPLITS:
    split_dir = release_files.require_path(
        root / split, f'the {split} folder of the tracklet tree, as there is no {MANIFEST}',
        TODO)
    tracklets = []
    for person in _subfolders(split_dir, 'person folders'):
      for camera in _subfolders(split_dir / person, 'camera folders'):
        for name in _subfolders(split_dir / person / camera, 'tracklet folders'):
          folder = split_dir / person / camera / name
          frames = [e.name for e in _entries(folder) if e.is_file() and _is_frame(e.name)]
          if not frames:
            raise release_files.release_error(
                folder, f'a tracklet folder holding its frames ({", ".join(FRAME_SUFFIXES)} '
                'files)', 'It holds none: add its frames, or remove the folder.')
          frames = release_files.sort_frames(frames, where=str(folder), todo=ORDER_TODO)
          tracklets.append(NamedTracklet(
              person, camera, name, tuple(f'{split}/{person}/{camera}/{name}/{f}'
                                          for f in frames)))
    index[split] = tracklets
  return index


def _cell_error(manifest, row: int, expected: str, todo: str) -> release_files.ReleaseError:
  return release_files.release_error(f'{manifest}, row {row}', expected, todo)


def read_manifest(root) -> dict[str, list[NamedTracklet]]:
  """{split: tracklets} listed by ``root/manifest.csv``; frame paths as written there.

  Every listed frame must exist; a split without rows gives an empty list (the
  caller refuses it).

  Raises:
    ReleaseError: a missing column, a row with an empty value, an unknown split, a
      frame that is not a JPEG/PNG name or does not exist (its row number and
      path), a frame name without a number, or two frames of a tracklet with one
      number.
  """
  root = pathlib.Path(root)
  manifest = root / MANIFEST
  groups = collections.defaultdict(list)
  # utf-8-sig: a spreadsheet's byte-order mark does not end up in the first column's name.
  with open(manifest, newline='', encoding='utf-8-sig') as f:
    reader = csv.reader(f)
    header = [h.strip() for h in next(reader, [])]
    missing = [c for c in COLUMNS if c not in header]
    if missing:
      raise _cell_error(manifest, 1, f'a header row naming the columns {",".join(COLUMNS)}',
                        f'It lacks {", ".join(missing)} (it is {",".join(header) or "empty"}).')
    column = {c: header.index(c) for c in COLUMNS}
    for values in reader:
      row = reader.line_num
      if not any(v.strip() for v in values):
        continue
      cells = {c: values[i].strip() if i < len(values) else '' for c, i in column.items()}
      empty = [c for c in COLUMNS if not cells[c]]
      if empty:
        raise _cell_error(manifest, row, f'a value in every column ({",".join(COLUMNS)})',
                          f'Empty: {", ".join(empty)}.')
      if cells['split'] not in common.SPLITS:
        raise _cell_error(manifest, row, f'a split among {", ".join(common.SPLITS)}',
                          f'Got {cells["split"]!r}.')
      frame = cells['frame_path']
      path = root / frame  # an absolute frame_path stays as it is
      if not _is_frame(frame):
        raise _cell_error(manifest, row, f'a frame_path naming a {"/".join(FRAME_SUFFIXES)} file',
                          f'Got {frame!r}.')
      if not path.is_file():
        raise _cell_error(manifest, row, 'a frame_path naming an existing file (absolute, or '
                          f'relative to {root})', f'{path} does not exist: correct or remove '
                          'the row.')
      groups[cells['split'], cells['person'], cells['camera'], cells['tracklet']].append(frame)
  index = {split: [] for split in common.SPLITS}
  for (split, person, camera, name), frames in sorted(groups.items()):
    where = f'{manifest}, tracklet {name!r} of person {person!r}, camera {camera!r} ({split})'
    index[split].append(NamedTracklet(person, camera, name,
                                      tuple(release_files.sort_frames(frames, where=where,
                                                               todo=ORDER_TODO))))
  return index


def read_layout(root) -> tuple[str, dict[str, list[NamedTracklet]], list[pathlib.Path]]:
  """(layout 'manifest' | 'tree', {split: tracklets}, the paths the copy is built from).

  The paths are for ``provenance.source_record``, whose fingerprint
  counts the files under them (number, bytes, newest time) but no names. A
  tree: the (absent) manifest, so that adding one counts as a change; the
  split folders, for frames and folders added; and every tracklet folder, so
  that renaming or moving a folder (relabelling a tracklet, which keeps every
  file as it was) leaves a path without files and counts too; each frame is
  counted twice. A manifest: itself and the folders holding its frames (none
  inside another).
  """
  root = pathlib.Path(root)
  if not (root / MANIFEST).exists():
    index = read_tree(root)
    folders = {root / os.path.dirname(f) for tracklets in index.values() for t in tracklets
               for f in t.frames}
    return 'tree', index, [root / MANIFEST, *(root / s for s in common.SPLITS), *folders]
  index = read_manifest(root)
  folders = {pathlib.Path(os.path.abspath(root / f)).parent
             for tracklets in index.values() for t in tracklets for f in t.frames}
  # The fingerprint walks each folder: one inside another would count its files twice.
  outermost = sorted(f for f in folders if not folders.intersection(f.parents))
  return 'manifest', index, [root / MANIFEST, *outermost]
