"""Finding and checking the files of a manually downloaded video re-ID release.

Used by the builders of the real releases (and tracklet_folders) to turn a
missing, incomplete or wrongly extracted release into one ``ReleaseError``
whose message names the path, what was expected there and what to do:

* ``ReleaseError`` / ``release_error(path, expected, todo)``: that error.
* ``require_path(path, expected, todo, kind)``: an existence check (folder or
  file) with hints (an archive left unextracted, the release one folder deeper).
* ``find_release_root(manual_dir, markers, candidates, todo)``: the folder under
  ``manual_dir`` that holds the release; with ``search_subfolders``, any one
  immediate subfolder of ``manual_dir`` may hold it (a manual folder shared by
  several datasets).
* ``list_frames(folder, suffix, pattern, ...)``: the frame files of one tracklet
  folder, names checked against a pattern, sorted by frame number.
* ``sort_frames(names, key, where)``: frames sorted by the frame number parsed
  from their names (never by directory order); duplicate numbers are an error.
* ``trailing_number(name)``: the last run of digits of a file stem, a default
  ``key`` for ``sort_frames``.
* ``read_frame(path, encoding_format)`` / ``check_image_bytes``: the file's bytes,
  after a cheap integrity check (JPEG SOI/EOI markers, PNG signature, IHDR and
  IEND chunks); ``check_decodes``: the full decode check (see video_reid_common).
"""

from __future__ import annotations

import os
import pathlib
import re
from typing import Callable, Iterable, Sequence

from data_pipelines import decoding

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


def require_path(path, expected: str, todo: str, kind: str = 'folder') -> pathlib.Path:
  """``path`` as a Path if it is a ``kind`` ('folder' or 'file'), else a ReleaseError
  with a hint (one check for both: only the test and the wording differ)."""
  path = pathlib.Path(path)
  if not (path.is_dir() if kind == 'folder' else path.is_file()):
    other = 'file' if kind == 'folder' else 'folder'
    state = f'is a {other}' if path.exists() else 'does not exist'
    raise release_error(path, f'{expected} (the {kind} {state})', todo + _hint(path))
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
