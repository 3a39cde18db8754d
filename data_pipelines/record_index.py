"""Per-tracklet metadata of a prepared split, stored beside its records.

The pipelines need each tracklet's record position, person, camera, frame count
and boolean flags (``sampling.SplitIndex``) before reading any frame. Reading
them from the records means parsing every tf.train.Example in full, frames
included (for MARS about 1.2M JPEGs, at every start). So ``datasets.prepare``
scans each split once after preparing it and writes
``<data_dir>/<dataset>-<split>.index.npz`` beside its ArrayRecord files; a start
reads only that (``read``).

The index records what it was built from: the split's number of records and the
names and sizes of its record files. ``read`` compares that with the records
now and stops with one line if they differ (records re-prepared or replaced
after the index was written) or the file cannot be read, so a stale index is
never used.

A copy prepared by an older version has no index: the first ``read`` scans the
records (what every start did before) and writes it, logging one line, so later
starts are fast with nothing to redo by hand. Where the folder is read-only, it
logs that every start will scan and how to get the index.
"""

from __future__ import annotations

import json
import os
import time
import zipfile

from absl import logging
import numpy as np
import tensorflow as tf

from data_pipelines import sampling

# Features stored by every builder; anything else holding an integer is a flag.
_CORE_FEATURES = ('frames', 'pid', 'camid', 'tracklet', 'num_frames')
_FORMAT = 1  # bumped when the file's content changes; another version is rebuilt
_EXTRA_PREFIX = 'extra_'


def index_path(builder, split: str) -> str:
  """Where the index of ``split`` lives: beside the split's record files."""
  return os.path.join(os.fspath(builder.data_dir), f'{builder.name}-{split}.index.npz')


def records_signature(builder, split: str, num_records: int) -> dict:
  """What an index must fit: the record count and each record file's name and size."""
  files = sorted(builder.info.splits[split].filepaths, key=os.fspath)
  return {'format': _FORMAT, 'num_records': int(num_records),
          'files': [[os.path.basename(os.fspath(f)), os.path.getsize(os.fspath(f))]
                    for f in files]}


def scan(source, split: str, path_hint: str = '') -> sampling.SplitIndex:
  """The SplitIndex of a split, from its records: every record parsed in full.

  Args:
    source: a RAW_BYTES TFDS data source (serialized tf.train.Example records).
    split, path_hint: the split and the prepared copy, for error messages.
  """
  n = len(source)
  tracklet, pid, camid, num_frames = (np.zeros(n, np.int64) for _ in range(4))
  extras = {}
  for pos in range(n):
    feature = tf.train.Example.FromString(source[pos]).features.feature
    tracklet[pos] = feature['tracklet'].int64_list.value[0]
    pid[pos] = feature['pid'].int64_list.value[0]
    camid[pos] = feature['camid'].int64_list.value[0]
    num_frames[pos] = feature['num_frames'].int64_list.value[0]
    for key in feature:
      if key not in _CORE_FEATURES and feature[key].int64_list.value:
        extras.setdefault(key, np.zeros(n, np.int64))[pos] = feature[key].int64_list.value[0]
  order = np.argsort(tracklet)
  if not np.array_equal(tracklet[order], np.arange(n)):
    raise ValueError(f'Split {split!r} of {path_hint}: tracklet ids are not 0..{n - 1}; '
                     'the prepared dataset is inconsistent. Delete it and prepare it again.')
  if (num_frames <= 0).any():
    bad = int(np.flatnonzero(num_frames[order] <= 0)[0])
    raise ValueError(f'Split {split!r} of {path_hint}: tracklet {bad} has no frames.')
  return sampling.SplitIndex(
      position=order, pid=pid[order].astype(np.int32), camid=camid[order].astype(np.int32),
      num_frames=num_frames[order].astype(np.int32),
      extras={k: v[order].astype(bool) for k, v in extras.items()})


def write(path: str, index: sampling.SplitIndex, signature: dict) -> None:
  """Writes ``index`` atomically (a temporary file renamed into place)."""
  arrays = {'position': index.position, 'pid': index.pid, 'camid': index.camid,
            'num_frames': index.num_frames,
            'signature': np.array(json.dumps(signature, sort_keys=True))}
  arrays.update({_EXTRA_PREFIX + k: v for k, v in index.extras.items()})
  # Hidden from TFDS, and created with the usual permissions (mkstemp's are 0600).
  tmp = os.path.join(os.path.dirname(path), f'.{os.path.basename(path)}.{os.getpid()}.tmp')
  try:
    with open(tmp, 'wb') as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise


def build(builder, split: str, source) -> sampling.SplitIndex:
  """Scans ``split`` and writes its index (``datasets.prepare``, after preparing)."""
  index = scan(source, split, os.fspath(builder.data_dir))
  write(index_path(builder, split), index, records_signature(builder, split, len(source)))
  return index


def _mismatch(path: str, stored: dict, now: dict) -> str:
  def describe(s):
    files = ', '.join(f'{name} ({size:,} bytes)' for name, size in s.get('files', []))
    return f'{s.get("num_records")} records in {files or "no files"} (format {s.get("format")})'
  return (f'{path}: expected the index of the records beside it, {describe(now)}; it was '
          f'written for {describe(stored)}, so the records were re-prepared or replaced since '
          f'and it does not fit them. Delete {path}: the next start rebuilds it from the '
          'records.')


def read(builder, split: str, source) -> sampling.SplitIndex:
  """The SplitIndex of ``split``: from its index file, which is checked against the records.

  Raises:
    ValueError: an index that does not fit the records now (one line naming it
      and what to do).
  """
  path = index_path(builder, split)
  signature = records_signature(builder, split, len(source))
  if not os.path.exists(path):
    return _build_missing(builder, split, source, path, signature)
  try:
    with np.load(path, allow_pickle=False) as stored:
      arrays = {k: stored[k] for k in stored.files}
    stored_signature = json.loads(str(arrays.pop('signature')))
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
    raise ValueError(f'{path}: expected the index of the records beside it, but it cannot be '
                     f'read ({type(e).__name__}: {e}). Delete {path}: the next start rebuilds '
                     'it from the records.') from None
  if stored_signature != signature:
    raise ValueError(_mismatch(path, stored_signature, signature))
  return sampling.SplitIndex(
      position=arrays['position'], pid=arrays['pid'], camid=arrays['camid'],
      num_frames=arrays['num_frames'],
      extras={k[len(_EXTRA_PREFIX):]: v for k, v in arrays.items() if k.startswith(_EXTRA_PREFIX)})


def _build_missing(builder, split, source, path, signature) -> sampling.SplitIndex:
  """A copy prepared before indexes existed: scan it once and keep the index."""
  start = time.perf_counter()
  index = scan(source, split, os.fspath(builder.data_dir))
  why = (f'No index {path} (the copy was prepared by an older version, or its indexing was '
         'interrupted)')
  try:
    write(path, index, signature)
  except OSError as e:
    logging.warning(
        '%s and it cannot be written (%s): read all %d records of split %r in full, frames '
        'included (%.1f s); every start will. To start fast, make %s writable for one start, '
        'or re-prepare it (--config.reprepare).', why, e.strerror or e, len(source), split,
        time.perf_counter() - start, builder.data_dir)
  else:
    logging.warning('%s: read all %d records of split %r in full once (%.1f s) and wrote it; '
                    'later starts read only the index.', why, len(source), split,
                    time.perf_counter() - start)
  return index
