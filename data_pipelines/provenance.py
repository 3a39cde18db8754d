"""Provenance: what a prepared copy of a downloaded release was built from.

A builder stores ``source_record(manual_dir, paths)`` in its metadata
(``metadata.json``, written with the data and renamed into place with it): the
absolute manual_dir and a cheap fingerprint (file count, total size, newest
modification time) of the release files and folders it read. ``datasets.prepare``
recomputes the fingerprint and refuses to reuse a copy whose manual_dir or
release changed (``reprepare=True`` rebuilds it).
"""

from __future__ import annotations

import datetime
import os
from typing import Iterable, Sequence

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
