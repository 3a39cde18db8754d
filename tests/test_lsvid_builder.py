"""Tests of the LS-VID TFDS builder on a fabricated release tree (HDF5 info_test.mat)."""

import io
import pathlib
import shutil

import h5py
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import data_pipelines.ls_vid  # pylint: disable=unused-import  # registers 'ls_vid'
from data_pipelines import record_index
from data_pipelines import release_files
from data_pipelines.ls_vid import ls_vid_dataset_builder as lsvid
import prepared_records

# (pid, tracklet number, camera, frame numbers); cameras with 1 and 2 digits.
TRAIN = [
    (1, 1, 1, [1, 2, 3]),
    (1, 2, 12, [5, 6, 7, 8]),      # frames that do not start at 1
    (4, 1, 3, [1, 2]),             # non-contiguous ids
    (4, 2, 1, [9, 10, 11]),        # 0009 < 0010: numeric order
]
TEST = [
    (2, 1, 1, [1, 2, 3]),
    (2, 2, 15, [1, 2]),
    (3, 1, 2, [1, 2, 3, 4]),
    (3, 2, 2, [7, 8]),
    (3, 3, 11, [1, 2, 3]),
    (6, 1, 4, [1, 2]),
]
QUERY = [5, 2]  # 1-based rows of list_seq_test.txt, in the order the file gives them


def _jpeg(seed):
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (8, 4, 3), np.uint8)).save(buf, 'JPEG', quality=90)
  return buf.getvalue()


def make_tree(release):
  """LS-VID/{list_sequence, test/data/info_test.mat, tracklet_*}; {(split, i): [paths]}."""
  release = pathlib.Path(release)
  paths, seed = {}, 0
  (release / 'list_sequence').mkdir(parents=True)
  for split, rows in (('train', TRAIN), ('test', TEST)):
    lines, table, start = [], [], 1
    for i, (pid, trk, cam, frames) in enumerate(rows):
      prefix = f'tracklet_{split}/{pid:04d}/{pid:04d}_{trk:04d}_{cam}_'
      lines.append(f'{prefix} {pid}')
      (release / prefix).parent.mkdir(parents=True, exist_ok=True)
      paths[split, i] = [release / f'{prefix}{f:04d}.jpg' for f in frames]
      for path in reversed(paths[split, i]):
        seed += 1
        path.write_bytes(_jpeg(seed))
      table.append([start, start + len(frames) - 1, pid, cam])
      start += len(frames)
    eol = '\r\n' if split == 'test' else '\n'
    (release / 'list_sequence' / f'list_seq_{split}.txt').write_bytes(
        ''.join(line + eol for line in lines).encode())
  (release / 'test' / 'data').mkdir(parents=True)
  # MATLAB v7.3 stores an (N, 4) matrix as a (4, N) HDF5 dataset, and Nq x 1 as (1, Nq).
  with h5py.File(release / lsvid.INFO_TEST, 'w') as f:
    f.create_dataset('query', data=np.array([QUERY], np.float64))
    f.create_dataset('info_test', data=np.array(table, np.float64).T)
  return paths


def _prepare(tmp_path):
  return prepared_records.prepare('ls_vid', tmp_path / 'manual', tmp_path / 'data')


def test_prepare_fabricated_tree(tmp_path):
  paths = make_tree(tmp_path / 'manual' / 'LS-VID')
  builder = _prepare(tmp_path)
  expected = {
      'train': [(r, paths['train', i]) for i, r in enumerate(TRAIN)],
      'query': [(TEST[q - 1], paths['test', q - 1]) for q in QUERY],
      'gallery': [(r, paths['test', i]) for i, r in enumerate(TEST) if i + 1 not in QUERY],
  }
  for split, rows in expected.items():
    records = prepared_records.records(builder, split)
    assert len(records) == len(rows)
    for record, ((pid, _, cam, frames), frame_paths) in zip(records, rows):
      assert (record['pid'], record['camid'], record['num_frames']) == (pid, cam - 1, len(frames))
      assert record['frames'] == [p.read_bytes() for p in frame_paths]
    source = prepared_records.raw_source(builder, split)
    record_index.scan(source, split)
  assert [r['pid'] for r in builder.as_data_source('query')] == [3, 2]


def _index_error(root):
  with pytest.raises(release_files.ReleaseError) as e:
    lsvid.lsvid_split_index(root)
  return str(e.value)


def test_bad_input(tmp_path):
  release = tmp_path / 'manual' / 'LS-VID'
  paths = make_tree(release)
  info = release / lsvid.INFO_TEST
  # The rearranged layout some code bases use (info/list_sequence, info/data) is refused.
  (tmp_path / 'manual' / 'info').mkdir()
  shutil.move(release / 'list_sequence', tmp_path / 'manual' / 'info' / 'list_sequence')
  with pytest.raises(release_files.ReleaseError) as e:
    _prepare(tmp_path)
  assert 'list_sequence' in str(e.value) and 'LS-VID' in str(e.value)
  assert not tfds.builder_cls('ls_vid')(data_dir=str(tmp_path / 'data')).is_prepared()
  shutil.move(tmp_path / 'manual' / 'info' / 'list_sequence', release / 'list_sequence')
  # Query rows out of range.
  with h5py.File(info, 'r+') as f:
    del f['query']
    f.create_dataset('query', data=np.array([[2.0, 7.0]]))
  msg = _index_error(release)
  assert str(info) in msg and '1..6' in msg
  # info_test disagreeing with the list.
  with h5py.File(info, 'r+') as f:
    del f['query']
    f.create_dataset('query', data=np.array([QUERY], np.float64))
    f['info_test'][2, 3] = 9  # pid column, row 4
  msg = _index_error(release)
  assert 'info_test row 4' in msg and 'pid 3' in msg
  with h5py.File(info, 'r+') as f:
    f['info_test'][2, 3] = 3
  # A tracklet whose frames are missing.
  for p in paths['test', 2]:
    p.unlink()
  msg = _index_error(release)
  assert 'line 3 of list_sequence/list_seq_test.txt' in msg and '0003_0001_2_*.jpg' in msg
  # No info file.
  info.unlink()
  msg = _index_error(release)
  assert str(info) in msg and 'does not exist' in msg
