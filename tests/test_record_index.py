"""The per-tracklet index written beside a prepared split (data_pipelines/record_index.py):
start-up reads it and no frame bytes; an index that does not fit its records stops
with one line; a copy prepared without one (an older version) still works and gets one."""

import glob
import logging
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_pipelines import datasets, pipeline, record_index

_SPLITS = ('train', 'query', 'gallery')


@pytest.fixture
def config(tiny_data_dir, tmp_path):
  """The tiny config reading its own copy of the prepared tiny dataset."""
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  c = tiny.get_config()
  c.data_dir = str(tmp_path / 'tfds')
  shutil.copytree(tiny_data_dir, c.data_dir)
  return c


def _index_files(config):
  return sorted(glob.glob(os.path.join(config.data_dir, '**', '*.index.npz'), recursive=True))


def _scanned(builder, split):
  source = builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  return record_index.scan(source, split)


def _assert_same(a, b):
  for field in ('position', 'pid', 'camid', 'num_frames'):
    np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
  assert a.extras.keys() == b.extras.keys()
  for k in a.extras:
    np.testing.assert_array_equal(a.extras[k], b.extras[k])


class _NoRecordReads:
  """A data source whose records cannot be read: only its length is known."""

  def __init__(self, source):
    self._n = len(source)

  def __len__(self):
    return self._n

  def __getitem__(self, key):
    raise AssertionError(f'record {key} read at start-up')

  __getitems__ = __getitem__


def test_preparing_writes_an_index_per_split(config):
  assert [os.path.basename(p) for p in _index_files(config)] == sorted(
      f'synthetic_video_reid-{s}.index.npz' for s in _SPLITS)


def test_start_up_reads_no_record(config, monkeypatch):
  real = tfds.core.DatasetBuilder.as_data_source
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'as_data_source',
                      lambda self, *a, **k: _NoRecordReads(real(self, *a, **k)))
  data = pipeline.ReIDData(config)  # any record read raises
  monkeypatch.undo()
  for split in _SPLITS:
    _assert_same(data.index[split], _scanned(data.builder, split))
  assert data.index['gallery'].extras  # the synthetic 'gait_twin' flags come through


def test_an_index_that_does_not_fit_its_records_stops(config):
  builder = pipeline.ReIDData(config).builder
  gallery = record_index.index_path(builder, 'gallery')
  shutil.copy(record_index.index_path(builder, 'query'), gallery)  # another split's index
  with pytest.raises(ValueError) as e:
    pipeline.ReIDData(config)
  message = str(e.value)
  assert '\n' not in message and message.startswith(gallery)
  assert 'does not fit' in message and f'Delete {gallery}' in message
  # A wrong record count, with the right files, is caught too.
  source = builder.as_data_source('gallery')
  signature = record_index.records_signature(builder, 'gallery', len(source) + 1)
  record_index.write(gallery, _scanned(builder, 'gallery'), signature)
  with pytest.raises(ValueError, match=f'{len(source)} records in .*written for '
                     f'{len(source) + 1} records'):
    pipeline.ReIDData(config)
  with open(gallery, 'wb') as f:  # truncated: unreadable
    f.write(b'PK')
  with pytest.raises(ValueError, match=f'^{gallery}: expected the index .* cannot be read'):
    pipeline.ReIDData(config)
  os.remove(gallery)  # what the messages say to do
  assert len(pipeline.ReIDData(config).index['gallery']) == len(source)


def test_a_copy_without_index_is_scanned_once_and_gets_one(config, caplog):
  for path in _index_files(config):
    os.remove(path)
  with caplog.at_level(logging.WARNING):
    data = pipeline.ReIDData(config)
  lines = [r.getMessage() for r in caplog.records if 'No index' in r.getMessage()]
  assert len(lines) == 3 and all('older version' in l and 'wrote it' in l for l in lines)
  assert len(_index_files(config)) == 3
  for split in _SPLITS:
    _assert_same(data.index[split], _scanned(data.builder, split))


def test_a_read_only_copy_without_index_is_scanned_every_start(config, caplog, monkeypatch):
  for path in _index_files(config):
    os.remove(path)

  def read_only(*args):
    raise PermissionError(13, 'Permission denied')

  monkeypatch.setattr(record_index, 'write', read_only)
  with caplog.at_level(logging.WARNING):
    data = pipeline.ReIDData(config)
  lines = [r.getMessage() for r in caplog.records if 'No index' in r.getMessage()]
  assert len(lines) == 3 and all('every start will' in l and 'writable' in l for l in lines)
  assert not _index_files(config)
  assert len(data.index['train']) == len(_scanned(data.builder, 'train'))


def test_reprepare_writes_fresh_indexes(config):
  builder = datasets.prepare('synthetic_video_reid', 'tiny', data_dir=config.data_dir)
  for path in _index_files(config):
    os.remove(path)
  datasets.prepare('synthetic_video_reid', 'tiny', data_dir=config.data_dir, reprepare=True)
  assert len(_index_files(config)) == 3
  _assert_same(record_index.read(builder, 'query', builder.as_data_source('query')),
               _scanned(builder, 'query'))
