"""Tests of the MARS TFDS builder: split index on the real info/ files, a fabricated tree."""

import io
import os
import pathlib
import shutil

import numpy as np
from PIL import Image
import pytest
import scipy.io
import tensorflow_datasets as tfds

import data_pipelines.mars  # pylint: disable=unused-import  # registers 'mars'
from data_pipelines import datasets
from data_pipelines import record_index
from data_pipelines import release_files
from data_pipelines import video_reid_common as common
from data_pipelines.mars import mars_dataset_builder as mars
import prepared_records

# The real MARS-evaluation info/ files: a folder holding mars_info/, named by
# JAXREID_REFERENCE_DIR (the test that reads them is skipped without it).
REFERENCE = pathlib.Path(os.environ.get('JAXREID_REFERENCE_DIR', '/nonexistent')) / 'mars_info'


def _name(pid, cam, trk, frm):
  return f'{mars.pid_folder(pid)}C{cam}T{trk:04d}F{frm:03d}.jpg'


def _write_names(path, names):
  # info_mars.m writes '%s\r\n': CRLF line ends.
  path.write_bytes(''.join(n + '\r\n' for n in names).encode('ascii'))


# --- the real info/ files --------------------------------------------------------------------


def test_split_index_on_real_info_files(tmp_path):
  """Published counts from the real track tables, with name lists derived from them."""
  if not REFERENCE.is_dir():
    pytest.skip('the real MARS info/ files: set JAXREID_REFERENCE_DIR to a folder holding mars_info/')
  info = tmp_path / 'info'
  info.mkdir()
  for f in ('tracks_train_info.mat', 'tracks_test_info.mat', 'query_IDX.mat'):
    shutil.copy(REFERENCE / f, info / f)
  next_trk = {}
  for split, var in (('train', 'track_train_info'), ('test', 'track_test_info')):
    table = scipy.io.loadmat(info / f'tracks_{split}_info.mat')[var]
    names = []
    for start, end, pid, cam in table.tolist():
      assert start == len(names) + 1  # rows are contiguous
      trk = next_trk[pid] = next_trk.get(pid, 0) + 1
      names.extend(_name(pid, cam, trk, f) for f in range(1, end - start + 2))
    _write_names(info / f'{split}_name.txt', names)

  index = mars.mars_split_index(mars.read_mars_info(info))
  train, query, gallery = index['train'], index['query'], index['gallery']
  gallery_torchreid = [t for t in gallery if t.pid != mars.JUNK_PID]
  stats = {s: common.split_stats(t) for s, t in index.items()}
  stats['gallery_without_junk'] = common.split_stats(gallery_torchreid)
  # Queries without a cross-camera match in the torchreid gallery (queries excluded, junk dropped).
  g_pid = np.array([t.pid for t in gallery_torchreid])
  g_cam = np.array([t.camid for t in gallery_torchreid])
  no_match = sum(not np.any((g_pid == q.pid) & (g_cam != q.camid)) for q in query)
  for split, s in stats.items():
    print(f'MARS {split}: {s}')
  print(f'MARS queries without a cross-camera match in the torchreid gallery: {no_match}')

  assert stats['train'] == {'tracklets': 8298, 'ids': 625, 'frames': 509914, 'cameras': 6}
  assert stats['query']['tracklets'] == 1980 and stats['query']['ids'] == 626
  assert stats['gallery']['tracklets'] == 10200  # junk kept
  assert stats['gallery_without_junk']['tracklets'] == 9330
  assert stats['gallery_without_junk']['ids'] == 621  # incl. distractors (pid 0)
  assert sum(t.pid == mars.JUNK_PID for t in gallery) == 870
  assert sum(t.pid == mars.DISTRACTOR_PID for t in gallery) == 3248
  assert {t.camid for t in train + query + gallery} == set(range(6))
  assert no_match == 140
  assert not {t.pid for t in train} & {t.pid for t in query + gallery}
  # Junk frames live in bbox_test/00-1/.
  assert gallery[0].pid == -1 and gallery[0].frames[0] == '00-1/00-1C1T0001F001.jpg'


# --- a fabricated tree -------------------------------------------------------------------------

# (pid, cam, trk, frame numbers in name-list order); junk '00-1' and distractors '0000' included.
TRAIN = [
    (1, 1, 1, [1, 2, 3]),
    (1, 2, 2, [1, 2]),             # 2-frame tracklet
    (3, 1, 1, [5, 6, 7, 8]),       # frames that do not start at 1
    (3, 3, 2, [1, 2, 3]),
]
TEST = [
    (-1, 1, 1, [1, 2]),            # junk
    (0, 2, 1, [1, 2, 3]),          # distractors
    (0, 3, 2, [1, 2]),
    (5, 1, 1, [3, 1, 2]),          # query; listed out of frame order
    (5, 2, 2, [1, 2, 3]),          # cross-camera match
    (7, 1, 1, [1, 2, 3]),          # query
    (7, 2, 2, [2, 3, 4]),          # query; its only cross-camera match is the other query
    (7, 1, 3, [10, 11]),           # same pid and camera as the first pid-7 query
    (9, 4, 1, [1, 2, 3, 4]),       # gallery-only identity
]
QUERY_ROWS = [4, 6, 7]  # 1-based rows of TEST


def _jpeg(seed):
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (8, 4, 3), np.uint8)).save(buf, 'JPEG', quality=90)
  return buf.getvalue()


def make_tree(root, nested_train=True):
  """A MARS release: bbox_train (nested bbox_train/bbox_train), bbox_test, info/ (CRLF)."""
  root = pathlib.Path(root)
  files = {}
  seed = 0
  for split, rows in (('train', TRAIN), ('test', TEST)):
    image_dir = root / f'bbox_{split}'
    if split == 'train' and nested_train:
      image_dir = image_dir / 'bbox_train'
    names, table = [], []
    for pid, cam, trk, frames in rows:
      start = len(names) + 1
      for frm in frames:
        name = _name(pid, cam, trk, frm)
        path = image_dir / mars.pid_folder(pid) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        seed += 1
        path.write_bytes(_jpeg(seed))
        files[name] = path
        names.append(name)
      table.append([start, len(names), pid, cam])
    (root / 'info').mkdir(parents=True, exist_ok=True)
    _write_names(root / 'info' / f'{split}_name.txt', names)
    scipy.io.savemat(root / 'info' / f'tracks_{split}_info.mat',
                     {f'track_{split}_info': np.array(table, np.int32)})
  scipy.io.savemat(root / 'info' / 'query_IDX.mat',
                   {'query_IDX': np.array([QUERY_ROWS], np.uint16)})
  return files


def _prepare(data_dir, manual_dir):
  return prepared_records.prepare('mars', manual_dir, data_dir)


def test_prepare_fabricated_tree(tmp_path, monkeypatch):
  files = make_tree(tmp_path / 'manual')
  # Through the registry, as the training pipeline prepares it (the entry the lead adds).
  monkeypatch.setitem(datasets.DATASETS, 'mars', 'data_pipelines.mars')
  builder = datasets.prepare('mars', data_dir=str(tmp_path / 'data'),
                             manual_dir=str(tmp_path / 'manual'))
  assert builder.info.file_format.value == 'array_record'
  expected = {
      'train': TRAIN,
      'query': [TEST[r - 1] for r in QUERY_ROWS],
      'gallery': [row for i, row in enumerate(TEST, 1) if i not in QUERY_ROWS],
  }
  for split, rows in expected.items():
    records = prepared_records.records(builder, split)
    source = prepared_records.raw_source(builder, split)
    assert len(records) == len(rows)
    for rec, (pid, cam, trk, frames) in zip(records, rows):
      assert (rec['pid'], rec['camid'], rec['num_frames']) == (pid, cam - 1, len(frames))
      # The original JPEG bytes, in frame-number order.
      want = [files[_name(pid, cam, trk, f)].read_bytes() for f in sorted(frames)]
      assert rec['frames'] == want
    index = record_index.scan(source, split)  # what the training pipeline reads
    assert list(index.pid) == [r[0] for r in rows]
  assert builder.info.metadata['split_stats']['gallery']['tracklets'] == 6
  # Decoding through TFDS works too (frames of any size, 3 channels).
  example = builder.as_data_source('query')[0]
  assert example['frames'][0].shape == (8, 4, 3) and example['pid'] == 5


# --- bad input ---------------------------------------------------------------------------------


def _prepare_error(root):
  with pytest.raises(release_files.ReleaseError) as e:
    _prepare(root / 'data', root / 'manual')
  return str(e.value)


def test_missing_manual_dir(tmp_path):
  with pytest.raises(AssertionError, match='bbox_train.zip'):  # TFDS's check, our instructions
    _prepare(tmp_path / 'data', tmp_path / 'nowhere')


def test_missing_info_folder_and_files(tmp_path):
  make_tree(tmp_path / 'manual')
  shutil.move(tmp_path / 'manual' / 'info', tmp_path / 'info_elsewhere')
  msg = _prepare_error(tmp_path)
  assert str(tmp_path / 'manual' / 'info') in msg and 'MARS-evaluation' in msg
  shutil.move(tmp_path / 'info_elsewhere', tmp_path / 'manual' / 'info')
  (tmp_path / 'manual' / 'info' / 'query_IDX.mat').unlink()
  msg = _prepare_error(tmp_path)
  assert 'query_IDX.mat' in msg and 'does not exist' in msg


def test_release_one_level_deeper(tmp_path):
  make_tree(tmp_path / 'manual' / 'MARS')
  msg = _prepare_error(tmp_path)
  assert 'one level deeper' in msg and str(tmp_path / 'manual' / 'MARS') in msg


def test_listed_image_missing(tmp_path):
  files = make_tree(tmp_path / 'manual')
  files[_name(9, 4, 1, 3)].unlink()
  msg = _prepare_error(tmp_path)
  assert _name(9, 4, 1, 3) in msg and 'bbox_test.zip' in msg and '1 of the' in msg
  assert not (tmp_path / 'data' / 'mars').exists() or not os.listdir(tmp_path / 'data' / 'mars')


def test_name_list_and_track_table_disagree(tmp_path):
  make_tree(tmp_path / 'manual')
  path = tmp_path / 'manual' / 'info' / 'tracks_test_info.mat'
  table = scipy.io.loadmat(path)['track_test_info']
  table[4, 2] = 6  # row 5 claims pid 6 but its names say 5
  scipy.io.savemat(path, {'track_test_info': table})
  msg = _prepare_error(tmp_path)
  assert 'row 5' in msg and 'person 6' in msg and '0005C2T0002F001.jpg' in msg


def test_truncated_image_leaves_no_prepared_dataset(tmp_path):
  files = make_tree(tmp_path / 'manual')
  bad = files[_name(9, 4, 1, 2)]  # last gallery tracklet: fails after train and query are written
  good = bad.read_bytes()
  bad.write_bytes(good[: len(good) // 2])
  msg = _prepare_error(tmp_path)
  assert str(bad) in msg and 'truncated' in msg and 'FF D9' in msg
  builder = tfds.builder_cls('mars')(data_dir=str(tmp_path / 'data'), file_format='array_record')
  assert not builder.is_prepared()
  dataset_dir = tmp_path / 'data' / 'mars'
  leftovers = os.listdir(dataset_dir) if dataset_dir.exists() else []
  assert leftovers == []  # no '1.0.0', no 'incomplete.*'
  bad.write_bytes(good)
  assert _prepare(tmp_path / 'data', tmp_path / 'manual').is_prepared()
