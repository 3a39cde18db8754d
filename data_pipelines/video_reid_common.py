"""Pieces shared by the TFDS builders of the real video re-ID releases.

Every builder stores the same features (``video_reid_features``): the original
encoded frames of a tracklet in frame order, the dataset's person id, a 0-based
camera, the tracklet's position in its split and its number of frames. The
helpers here:

* ``video_reid_features(encoding_format)``: the ``FeaturesDict``.
* ``dataset_info(builder, ...)``: a builder's ``DatasetInfo`` with those features
  (frame order kept: ``disable_shuffling``; a ``MetadataDict`` for split facts).
* ``Tracklet(pid, camid, frames)``: one example to write; ``frames`` are paths
  (relative to a root given later) already in frame order.
* ``sort_frames(names, key, where)``: frames sorted by the frame number parsed
  from their names (never by directory order); duplicate numbers are an error.
* ``trailing_number(name)``: the last run of digits of a file stem, a default
  ``key`` for ``sort_frames``.
* ``ReleaseError`` / ``release_error(path, expected, todo)``: the one error type
  for a missing, incomplete or wrongly extracted release; its message names the
  path, what was expected there and what to do.
* ``require_dir`` / ``require_file``: existence checks raising ``ReleaseError``
  with hints (an archive left unextracted, the release one folder deeper).
* ``find_release_root(manual_dir, markers, candidates, todo)``: the folder under
  ``manual_dir`` that holds the release; with ``search_subfolders``, any one
  immediate subfolder of ``manual_dir`` may hold it (a manual folder shared by
  several datasets).
* ``list_frames(folder, suffix, pattern, ...)``: the frame files of one tracklet
  folder, names checked against a pattern, sorted by frame number.
* ``SplitConfig`` / ``split_configs(dataset, ...)``: one builder config per
  standard train/test split (iLIDS-VID, PRID-2011).
* ``read_frame(path, encoding_format)``: the file's bytes, after a cheap
  integrity check (JPEG SOI/EOI markers, PNG signature, IHDR and IEND chunks).
* ``generate_examples(tracklets, root, encoding_format, split=...)``: the
  ``_generate_examples`` body: yields ``(tracklet_index, example)`` in order,
  reading and decoding frames in a few threads.
* ``split_stats(tracklets)``: ids / tracklets / frames / cameras of a split.
* ``source_record(manual_dir, paths)`` / ``fingerprint(paths)``: what a prepared
  copy was built from (stored as the ``'source'`` metadata entry; ``datasets.prepare``
  compares it with the release before reusing the copy).

Original bytes: TFDS's ``Image`` feature stores ``bytes`` (and the content of a
path) as given and only encodes NumPy arrays and PIL images, so passing the
file's bytes keeps the release's JPEG/PNG bit-exact (no decode/re-encode loss);
the builders' tests check this.

Integrity, in two steps. First the markers: a JPEG must start with FF D8 and end
with FF D9 (trailing NUL/whitespace padding allowed), a PNG must start with its
signature and IHDR chunk and end with the IEND chunk; this catches empty and
truncated files (interrupted extraction or copy), the common damage, with a
message that says so. Then every frame is decoded once with the decoder the
pipelines use (``decoding.decode_error``): a file whose start and end are intact
but whose body is corrupt fails here, naming its path and tracklet, instead of
being stored and crashing training when it is first sampled. The decode costs
about 0.2 ms (64 x 32) to 0.6 ms (256 x 128) of CPU per frame, i.e. 15-20 and
43-58 core-seconds per 100k frames: about 10 core-minutes for MARS (1.2M frames),
shared by the reader threads (measured in docs/design.md, "Faults").

Provenance: a builder stores ``source_record(manual_dir, paths)`` in its metadata
(``metadata.json``, written with the data and renamed into place with it): the
absolute manual_dir and a cheap fingerprint (file count, total size, newest
modification time) of the release files and folders it read. ``datasets.prepare``
recomputes the fingerprint and refuses to reuse a copy whose manual_dir or
release changed (``reprepare=True`` rebuilds it).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import datetime
import os
import pathlib
import re
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import decoding

SPLITS = ('train', 'query', 'gallery')

JPEG_SOI = b'\xff\xd8'
JPEG_EOI = b'\xff\xd9'
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
PNG_IEND = b'IEND\xaeB`\x82'  # chunk type + CRC of the (empty) IEND chunk
_ARCHIVE_SUFFIXES = ('.zip', '.tar', '.tar.gz', '.tgz', '.rar', '.7z')


class ReleaseError(ValueError):
  """The manually downloaded release is missing, incomplete or wrongly extracted."""


def release_error(path, expected: str, todo: str) -> ReleaseError:
  """``ReleaseError('<path>: expected <expected>. <todo>')``."""
  return ReleaseError(f'{path}: expected {expected}. {todo}')


def video_reid_features(encoding_format: str = 'jpeg') -> tfds.features.FeaturesDict:
  """The features every video re-ID builder stores (see data_pipelines/pipeline.py)."""
  return tfds.features.FeaturesDict({
      'frames': tfds.features.Sequence(
          tfds.features.Image(shape=(None, None, 3), encoding_format=encoding_format)),
      'pid': np.int32,
      'camid': np.int32,
      'tracklet': np.int32,
      'num_frames': np.int32,
  })


def dataset_info(builder: tfds.core.DatasetBuilder, *, description: str,
                 encoding_format: str, homepage: str | None = None,
                 citation: str | None = None) -> tfds.core.DatasetInfo:
  """The ``_info()`` of a video re-ID builder: ``video_reid_features``, stored in order."""
  return tfds.core.DatasetInfo(
      builder=builder,
      description=description,
      features=video_reid_features(encoding_format),
      supervised_keys=None,
      disable_shuffling=True,
      homepage=homepage,
      citation=citation,
      metadata=tfds.core.MetadataDict(),
  )


@dataclasses.dataclass(frozen=True)
class Tracklet:
  """One example: person id as in the release, 0-based camera, frame paths in order."""
  pid: int
  camid: int
  frames: tuple[str, ...]


def trailing_number(name: str) -> int:
  """The last run of digits in the file stem: 'cam1_person001_00317.png' -> 317."""
  stem = os.path.splitext(os.path.basename(name))[0]
  match = re.search(r'(\d+)\D*$', stem)
  if not match:
    raise ValueError(f'no frame number in {name!r}')
  return int(match.group(1))


def sort_frames(names: Iterable[str], key: Callable[[str], object] = trailing_number,
                where: str = '', todo: str = '') -> list[str]:
  """``names`` sorted by their frame number ``key(name)``; duplicates raise ReleaseError.

  ``todo`` replaces the messages' advice, which is for a release (re-extract it).
  """
  keyed = []
  for name in names:
    try:
      keyed.append((key(name), name))
    except ValueError as e:
      raise release_error(os.path.join(where, name) if where else name,
                          'a frame file name carrying its frame number',
                          f'Cannot parse it ({e}); ' + (todo or 'check that the release was '
                                                        'extracted unchanged.')) from None
  keyed.sort()
  for (k1, n1), (k2, n2) in zip(keyed, keyed[1:]):
    if k1 == k2:
      raise release_error(where or n1, 'one file per frame number',
                          f'{n1!r} and {n2!r} have the same frame number {k1}; ' + (
                              todo or 'the release looks modified or extracted twice into the '
                              'same folder. Re-extract it.'))
  return [n for _, n in keyed]


def _hint(path: pathlib.Path) -> str:
  """Why ``path`` may be missing: an unextracted archive, or the release a level deeper."""
  parent = path.parent
  if parent.is_dir():
    for suffix in _ARCHIVE_SUFFIXES:
      archive = parent / (path.name + suffix)
      if archive.is_file():
        return f' Found the archive {archive}: extract it there first.'
    try:
      subdirs = sorted(p for p in parent.iterdir() if p.is_dir())
    except OSError:
      subdirs = []
    for sub in subdirs[:100]:  # one or two levels deeper; bounded (error path only)
      try:
        deeper = sorted(s for s in sub.iterdir() if s.is_dir())[:100]
      except OSError:
        deeper = []
      for candidate in (sub / path.name, *(s / path.name for s in deeper)):
        if candidate.exists():
          return (f' Found {candidate}: the release seems to be extracted one level deeper; '
                  f'point manual_dir at {candidate.parent} (or move its content up).')
  return ''


def require_dir(path, expected: str, todo: str) -> pathlib.Path:
  """``path`` as a Path if it is a directory, else a ReleaseError with a hint."""
  path = pathlib.Path(path)
  if not path.is_dir():
    state = 'is a file' if path.exists() else 'does not exist'
    raise release_error(path, f'{expected} (the folder {state})', todo + _hint(path))
  return path


def require_file(path, expected: str, todo: str) -> pathlib.Path:
  """``path`` as a Path if it is a file, else a ReleaseError with a hint."""
  path = pathlib.Path(path)
  if not path.is_file():
    state = 'is a folder' if path.exists() else 'does not exist'
    raise release_error(path, f'{expected} (it {state})', todo + _hint(path))
  return path


def _subdirs(path: pathlib.Path, limit: int = 100) -> list[pathlib.Path]:
  """The first ``limit`` non-hidden subfolders of ``path``, sorted ([] if unreadable)."""
  try:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith('.'))[:limit]
  except OSError:
    return []


def _search_hint(manual_dir: pathlib.Path, markers: Sequence[str]) -> str:
  """What ``manual_dir`` holds, an unextracted archive there, a release two levels down."""
  try:
    entries = sorted(p.name + ('/' if p.is_dir() else '') for p in manual_dir.iterdir())
  except OSError:
    entries = []
  shown = ', '.join(entries[:12]) + (f', ... ({len(entries)} entries)' if len(entries) > 12 else '')
  hint = f' {manual_dir} holds: {shown or "nothing"}.'
  for folder in (manual_dir, *_subdirs(manual_dir)):  # bounded (error path only)
    try:
      archives = sorted(p for p in folder.iterdir()
                        if p.is_file() and p.name.lower().endswith(_ARCHIVE_SUFFIXES))
    except OSError:
      archives = []
    if archives:
      return hint + (f' Found the archive {archives[0]}: it seems not extracted yet; extract '
                     f'it in {folder} first.')
  for sub in _subdirs(manual_dir):
    for deeper in _subdirs(sub):
      if all((deeper / m).exists() for m in markers):
        return hint + (f' Found the release in {deeper}: it seems to be extracted one level too '
                       f'deep; move it up (into {manual_dir} or one subfolder of it), or point '
                       f'manual_dir at {deeper}.')
  return hint


def find_release_root(manual_dir, markers: Sequence[str], candidates: Sequence[str] = ('',),
                      *, expected: str, todo: str,
                      search_subfolders: bool = False) -> pathlib.Path:
  """The first ``manual_dir / c`` (c in ``candidates``) holding every path in ``markers``.

  With ``search_subfolders``, when no candidate holds the release, each immediate
  (non-hidden) subfolder of ``manual_dir`` is tried too: the one holding it is
  returned (for a manual folder shared by several datasets, as TFDS's default
  ``<download_dir>/manual`` is); several holding it is an error. A failure
  message then also says what ``manual_dir`` holds, and points at an archive left
  unextracted there (or in a subfolder) or at a release one level too deep.

  Raises:
    ReleaseError: none does (or, with ``search_subfolders``, several subfolders
      do); the message names where it looked and what is missing.
  """
  manual_dir = pathlib.Path(manual_dir)
  roots = [manual_dir / c for c in candidates]
  for root in roots:
    if all((root / m).exists() for m in markers):
      return root
  if search_subfolders:
    subfolders = [s for s in _subdirs(manual_dir, limit=10_000) if s not in roots]
    found = [s for s in subfolders if all((s / m).exists() for m in markers)]
    if len(found) == 1:
      return found[0]
    if found:
      raise release_error(manual_dir, f'{expected}, in one place',
                          f'Found it in each of {", ".join(str(f) for f in found)}; remove or '
                          'move all but one (or point manual_dir at the one to use).')
    roots += subfolders
  # Report against the candidate that came closest (most markers present).
  root = max(roots, key=lambda r: (sum((r / m).exists() for m in markers), r.is_dir()))
  missing = [m for m in markers if not (root / m).exists()]
  looked = ', '.join(str(manual_dir / c) for c in candidates)
  if search_subfolders:
    looked += ' and each subfolder of ' + str(manual_dir)
    hint = _search_hint(manual_dir, markers)
  else:
    hint = _hint(root / missing[0])
  raise release_error(root / missing[0], expected,
                      f'Looked in: {looked}; missing there: {", ".join(missing)}. {todo}'
                      + hint)


def list_frames(folder, suffix: str, pattern: re.Pattern, *, example: str, todo: str,
                check: Callable[[re.Match], str | None] | None = None) -> list[str]:
  """The names of the frame files in ``folder``, sorted by frame number.

  Frame files are the non-hidden files whose name ends with ``suffix`` (any case):
  hidden files (``.DS_Store``, ``._0001.png``) and others (``Thumbs.db``) are
  ignored. Each must fully match ``pattern``, whose group ``'frame'`` is the frame
  number (``example`` is such a name, for messages); ``check(match)`` may return a
  complaint about a matching name (a sentence, e.g. that its camera differs from
  the folder's), or None. Directory order is never used.

  Raises:
    ReleaseError: a name that does not match or draws a complaint, two files with
      one frame number, or no frame file at all; ``todo`` says what to do.
  """
  folder = pathlib.Path(folder)
  names = []
  for name in os.listdir(folder):
    if name.startswith('.') or not name.lower().endswith(suffix.lower()):
      continue
    match = pattern.fullmatch(name)
    complaint = None if match else 'Its name does not have that form'
    if match and check is not None:
      complaint = check(match)
    if complaint:
      raise release_error(folder / name, f'a frame file named like {example}',
                          f'{complaint}. {todo}')
    names.append(name)
  if not names:
    raise release_error(folder, f'the {suffix} frames of one tracklet (like {example})',
                        f'It holds none. {todo}')
  return sort_frames(names, lambda n: int(pattern.fullmatch(n).group('frame')), str(folder))


@dataclasses.dataclass(eq=False)
class SplitConfig(tfds.core.BuilderConfig):
  """One of a dataset's standard train/test splits (``split_index`` 0-based)."""

  split_index: int = 0


def split_configs(dataset: str, num_test: int, num_train: int,
                  num_splits: int = 10) -> list[SplitConfig]:
  """``split_0`` .. ``split_<num_splits - 1>``: one builder config per standard split."""
  return [
      SplitConfig(name=f'split_{i}', split_index=i,
                  description=f'{dataset} standard split {i} (0-based; {num_train} train '
                  f'persons, {num_test} test persons).')
      for i in range(num_splits)
  ]


def check_image_bytes(data: bytes, path, encoding_format: str) -> None:
  """Cheap integrity check of an encoded frame (markers only, no decoding).

  ``encoding_format`` 'auto' (a dataset of JPEG and PNG frames) checks the
  format of the file's signature, or of its name's suffix when it has neither.
  """
  if encoding_format == 'auto':
    is_png = data.startswith(PNG_SIGNATURE) or (
        not data.startswith(JPEG_SOI) and str(path).lower().endswith('.png'))
    encoding_format = 'png' if is_png else 'jpeg'
  if encoding_format == 'jpeg':
    tail = data[-64:].rstrip(b'\x00\r\n\t ')
    if data.startswith(JPEG_SOI) and tail.endswith(JPEG_EOI):
      return
    expected = 'a complete JPEG file (starting with FF D8, ending with FF D9)'
  elif encoding_format == 'png':
    if (data.startswith(PNG_SIGNATURE) and data[12:16] == b'IHDR'
        and data[-64:].rstrip(b'\x00').endswith(PNG_IEND)):
      return
    expected = 'a complete PNG file (PNG signature and IHDR chunk, ending with the IEND chunk)'
  else:
    raise ValueError(f'Unsupported encoding format {encoding_format!r}.')
  raise release_error(path, expected,
                      f'Got {len(data)} bytes (first {data[:4].hex(" ")!r}, last '
                      f'{data[-4:].hex(" ")!r}): the file is truncated or corrupt. Extract it '
                      'again from the release archive (re-download the archive if that fails), '
                      'then prepare again.')


def read_frame(path, encoding_format: str = 'jpeg') -> bytes:
  """The file's bytes, checked with ``check_image_bytes``."""
  try:
    with open(path, 'rb') as f:
      data = f.read()
  except FileNotFoundError:
    raise release_error(path, 'a frame image listed by the release', 'It is missing: extract '
                        'the release archive again, completely, then prepare again.') from None
  except OSError as e:
    raise release_error(path, 'a readable frame image', f'Reading it failed ({e}).') from None
  check_image_bytes(data, path, encoding_format)
  return data


def _num_workers() -> int:
  env = os.environ.get('JAXREID_PREPARE_WORKERS')
  if env:
    return max(1, int(env))
  return max(1, min(4, os.cpu_count() or 1))


def _ordered_map(fn, items: Sequence, workers: int) -> Iterator:
  """``map(fn, items)`` computed ``workers`` at a time, in order, with a bounded window."""
  if workers <= 1 or len(items) < 2:
    yield from map(fn, items)
    return
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= 4 * workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def check_decodes(data: bytes, path, encoding_format: str, where: str) -> None:
  """Raises ReleaseError unless ``data`` decodes with the pipelines' decoder.

  ``where`` says which frame of which tracklet it is, for the message.
  """
  reason = decoding.decode_error(data)
  if reason is None:
    return
  kind = 'JPEG or PNG' if encoding_format == 'auto' else encoding_format.upper()
  raise release_error(
      path, f'a {kind} frame that decodes (with the TensorFlow decoder '
      'training reads frames with)',
      f'Decoding it failed ({reason}); it is {where}. Its start and end markers are intact, so '
      'the body of the file is corrupt (a damaged copy or download). Extract that file again '
      'from the release archive (re-download the archive if that fails), then prepare again.')


def generate_examples(tracklets: Sequence[Tracklet], root, encoding_format: str = 'jpeg',
                      workers: int | None = None, split: str = '') -> Iterator[tuple[int, dict]]:
  """``(i, example)`` for each tracklet, i = position in ``tracklets``; frames read from ``root``.

  The frames are the files' original bytes (TFDS stores ``bytes`` unchanged),
  checked with ``check_image_bytes`` and then decoded once with the pipelines'
  decoder (``check_decodes``), so nothing is stored that training could not
  decode. ``split`` names the split in messages. Reads and decodes run in
  threads (file I/O and TensorFlow's decoder release the GIL); set
  ``JAXREID_PREPARE_WORKERS`` to change their number (default min(4, CPUs)).

  Raises:
    ReleaseError: a missing, truncated or undecodable frame, naming its path and
      its tracklet (position in the split, person, camera).
  """
  root = pathlib.Path(root)
  split_name = f'split {split!r}' if split else 'its split'

  def read(item: tuple[int, Tracklet]) -> list[bytes]:
    i, tracklet = item
    frames = []
    for k, f in enumerate(tracklet.frames):
      data = read_frame(root / f, encoding_format)
      check_decodes(data, root / f, encoding_format,
                    f'frame {k + 1} of {len(tracklet.frames)} of tracklet {i} of {split_name} '
                    f'(person {tracklet.pid}, camera {tracklet.camid + 1})')
      frames.append(data)
    return frames

  for i, (tracklet, frames) in enumerate(
      zip(tracklets, _ordered_map(read, list(enumerate(tracklets)), workers or _num_workers()))):
    yield i, {
        'frames': frames,
        'pid': np.int32(tracklet.pid),
        'camid': np.int32(tracklet.camid),
        'tracklet': np.int32(i),
        'num_frames': np.int32(len(frames)),
    }


def split_stats(tracklets: Sequence[Tracklet]) -> dict:
  """{'tracklets', 'ids', 'frames', 'cameras'} of one split (pid -1 and 0 count as ids)."""
  return {
      'tracklets': len(tracklets),
      'ids': len({t.pid for t in tracklets}),
      'frames': sum(len(t.frames) for t in tracklets),
      'cameras': len({t.camid for t in tracklets}),
  }



# --- provenance: what a prepared copy was built from -------------------------------------------

SOURCE_KEY = 'source'  # the metadata entry holding ``source_record``


def fingerprint(paths: Iterable) -> dict:
  """A cheap fingerprint of the release files a builder read.

  Every non-hidden regular file under the folders in ``paths`` (walked, hidden
  folders skipped) and every file in ``paths`` counts; a missing path counts
  nothing. No file is opened: one ``stat`` per file.

  Returns:
    {'files': count, 'bytes': total size, 'newest_mtime_ns': the newest
    modification time (0 if no file)}.
  """
  files = size = newest = 0
  pending = []
  for path in paths:
    path = os.fspath(path)
    if os.path.isdir(path):
      pending.append(path)
    elif os.path.isfile(path):
      st = os.stat(path)
      files, size, newest = files + 1, size + st.st_size, max(newest, st.st_mtime_ns)
  while pending:  # os.scandir: the entry type comes with the listing, one stat per file
    try:
      entries = list(os.scandir(pending.pop()))
    except OSError:  # unreadable folder: counts nothing (a change shows in the totals)
      continue
    for entry in entries:
      if entry.name.startswith('.'):  # .DS_Store, ._0001.png, .git: no builder reads them
        continue
      try:
        if entry.is_dir():
          pending.append(entry.path)
        elif entry.is_file():
          st = entry.stat()
          files, size, newest = files + 1, size + st.st_size, max(newest, st.st_mtime_ns)
      except OSError:  # a dangling link or a file removed meanwhile
        continue
  return {'files': files, 'bytes': size, 'newest_mtime_ns': newest}


def describe_fingerprint(fp: dict) -> str:
  """'41 files, 329,402 bytes, newest modified 2026-12-01 13:02:11.250113 UTC'.

  Microseconds: a file repaired within the same second still shows a change.
  """
  seconds, ns = divmod(fp['newest_mtime_ns'], 1_000_000_000)
  newest = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
  return (f'{fp["files"]} files, {fp["bytes"]:,} bytes, newest modified '
          f'{newest:%Y-%m-%d %H:%M:%S}.{ns // 1000:06d} UTC')


def source_record(manual_dir, paths: Sequence) -> dict:
  """What a prepared copy is built from, for the builder's ``'source'`` metadata entry.

  Args:
    manual_dir: the manual_dir the builder was given (``dl_manager.manual_dir``).
    paths: the release's files and folders the builder reads (frames, split
      files), not the whole manual_dir: it may be shared with other datasets
      and hold archives that may be deleted once extracted.

  Returns:
    {'manual_dir': absolute path, 'paths': absolute paths, and ``fingerprint(paths)``}.
  """
  paths = sorted({os.path.abspath(os.fspath(p)) for p in paths})
  return {'manual_dir': os.path.abspath(os.fspath(manual_dir)), 'paths': paths,
          **fingerprint(paths)}
