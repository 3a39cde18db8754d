"""Tests of the iLIDS-VID TFDS builder on small trees in the release's layout."""

import io
import os
import pathlib

import numpy as np
from PIL import Image
import pytest
from scipy import io as scipy_io
import tensorflow_datasets as tfds

import data_pipelines.ilids_vid  # pylint: disable=unused-import  # registers
from data_pipelines import release_files
import prepared_records
from data_pipelines.ilids_vid import Builder

NAME = 'ilids_vid'
# Non-contiguous person numbers drawn from 1..319, as in the release.
PERSONS = (3, 17, 42, 101, 250, 319)
# Frame numbers: 5-digit original video frame numbers (not 1-based), per camera.
FRAMES = {
    (3, 1): (317, 318, 319, 320, 321, 322, 323, 324), (3, 2): (480, 481),
    (17, 1): (62552, 62553), (17, 2): (9, 10, 11),
    (42, 1): (100,), (42, 2): (5000, 5001),
    (101, 1): (7, 8, 9), (101, 2): (12345,),
    (250, 1): (99998, 99999), (250, 2): (2, 3),
    (319, 1): (40, 41, 42), (319, 2): (777, 778),
}
SEQ = pathlib.Path('i-LIDS-VID/sequences')
MAT = pathlib.Path('train-test people splits/train_test_splits_ilidsvid.mat')


def _png(pid, cam, frame):
  """A tiny PNG whose pixels encode (pid, cam, frame); 4 x 2 (H x W)."""
  pixels = np.zeros((4, 2, 3), np.uint8)
  pixels[..., 0] = pid % 256
  pixels[..., 1] = cam * 50 + frame % 50
  pixels[..., 2] = frame // 50 % 256
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format='PNG')
  return buf.getvalue()


def _ls_set(n, seed=0):
  rng = np.random.default_rng(seed)
  return np.stack([rng.permutation(n) + 1 for _ in range(10)]).astype(np.float64)


def make_tree(root, persons=PERSONS, ls_set=None):
  """The release layout under ``root``; frames written in reverse frame order."""
  root = pathlib.Path(root)
  for pid in persons:
    for cam in (1, 2):
      d = root / SEQ / f'cam{cam}' / f'person{pid:03d}'
      d.mkdir(parents=True)
      for frame in reversed(FRAMES[pid, cam]):
        (d / f'cam{cam}_person{pid:03d}_{frame:05d}.png').write_bytes(_png(pid, cam, frame))
      still = root / 'i-LIDS-VID/images' / f'cam{cam}' / f'person{pid:03d}'  # unused stills
      still.mkdir(parents=True)
      (still / f'cam{cam}_person{pid:03d}.png').write_bytes(_png(pid, cam, 0))
  (root / MAT).parent.mkdir(parents=True)
  scipy_io.savemat(root / MAT, {'ls_set': _ls_set(len(persons)) if ls_set is None else ls_set})
  return root


def prepare(manual_dir, data_dir, config='split_0'):
  return prepared_records.prepare(NAME, manual_dir, data_dir, config)


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """split_0 from a tree directly in manual_dir; split_7 from one in manual_dir/ilids-vid/."""
  flat = make_tree(tmp_path_factory.mktemp('manual_flat'))
  nested_manual = tmp_path_factory.mktemp('manual_nested')
  make_tree(nested_manual / 'ilids-vid')
  (nested_manual / 'mars').mkdir()  # another dataset sharing the manual folder
  data_dir = tmp_path_factory.mktemp('tfds')
  return {0: (prepare(flat, data_dir, 'split_0'), flat),
          7: (prepare(nested_manual, data_dir, 'split_7'), nested_manual / 'ilids-vid')}


def test_registered_configs(tmp_path):
  assert tfds.builder_cls(NAME) is Builder
  assert [c.name for c in Builder.BUILDER_CONFIGS] == [f'split_{i}' for i in range(10)]
  assert [c.split_index for c in Builder.BUILDER_CONFIGS] == list(range(10))
  assert Builder(data_dir=str(tmp_path)).builder_config.name == 'split_0'
  assert 'iLIDS-VID.tar' in Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


@pytest.mark.parametrize('split_index', [0, 7])
def test_splits_follow_ls_set(prepared, split_index):
  builder, root = prepared[split_index]
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  row = _ls_set(len(PERSONS))[split_index].astype(int) - 1   # 1-based -> 0-based
  dirs = sorted(f'person{p:03d}' for p in PERSONS)            # sorted cam1 folders
  test = sorted(int(dirs[i][6:]) for i in row[:3])            # first half: test
  train = sorted(int(dirs[i][6:]) for i in row[3:])
  assert builder.info.metadata['test_persons'] == [f'person{p:03d}' for p in test]
  ex = {s: prepared_records.records(builder, s) for s in ('train', 'query', 'gallery')}
  assert [(e['pid'], e['camid']) for e in ex['train']] == [(p, c) for p in train for c in (0, 1)]
  assert [(e['pid'], e['camid']) for e in ex['query']] == [(p, 0) for p in test]
  assert [(e['pid'], e['camid']) for e in ex['gallery']] == [(p, 1) for p in test]
  for split, examples in ex.items():
    assert [e['tracklet'] for e in examples] == list(range(len(examples)))
    assert builder.info.splits[split].num_examples == len(examples)
    for e in examples:
      numbers = FRAMES[e['pid'], e['camid'] + 1]
      assert e['num_frames'] == len(e['frames']) == len(numbers)
      # Original PNG bytes, in frame-number order (written to disk in reverse order).
      d = root / SEQ / f'cam{e["camid"] + 1}' / f'person{e["pid"]:03d}'
      files = [(d / f'cam{e["camid"] + 1}_person{e["pid"]:03d}_{n:05d}.png').read_bytes()
               for n in sorted(numbers)]
      assert e['frames'] == files


def test_pipeline_reads_it(prepared):
  """The contract of data_pipelines/pipeline.py: its split index accepts the splits."""
  from data_pipelines import record_index  # pylint: disable=g-import-not-at-top
  builder, _ = prepared[0]
  for split, n in (('train', 6), ('query', 3), ('gallery', 3)):
    source = builder.as_data_source(
        split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    index = record_index.scan(source, split)
    assert len(index) == n and (index.num_frames > 0).all()


def test_decoded_frames(prepared):
  builder, _ = prepared[0]
  source = builder.as_data_source('query')
  e = source[0]
  assert len(e['frames']) == e['num_frames']
  assert e['frames'][0].shape == (4, 2, 3) and e['frames'][0].dtype == np.uint8
  assert e['frames'][0][0, 0, 0] == e['pid'] % 256


# --- bad input -------------------------------------------------------------------------


def _expect_failure(manual_dir, data_dir, exc, *fragments):
  return prepared_records.expect_refusal(NAME, manual_dir, data_dir, exc, *fragments)


def test_missing_manual_dir(tmp_path):
  _expect_failure(tmp_path / 'nothing_here', tmp_path / 'tfds', AssertionError,
                  'nothing_here', 'does not exist or is empty', 'iLIDS-VID.tar')


def test_not_extracted(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'iLIDS-VID.tar').write_bytes(b'not really a tar')
  _expect_failure(manual, tmp_path / 'tfds', release_files.ReleaseError,
                  manual, 'i-LIDS-VID/sequences', 'iLIDS-VID.tar', 'not extracted')


def test_extracted_two_levels_deep(tmp_path):
  make_tree(tmp_path / 'manual' / 'data' / 'ilids-vid')
  _expect_failure(tmp_path / 'manual', tmp_path / 'tfds', release_files.ReleaseError,
                  'expected the iLIDS-VID release', 'data/',
                  f'Found the release in {tmp_path / "manual" / "data" / "ilids-vid"}',
                  'Extract the original iLIDS-VID.tar')


def test_missing_split_file(tmp_path):
  root = make_tree(tmp_path / 'manual')
  (root / MAT).unlink()
  _expect_failure(root, tmp_path / 'tfds', FileNotFoundError, root / MAT, 'ls_set')


def test_split_file_does_not_fit_tree(tmp_path):
  root = make_tree(tmp_path / 'manual', ls_set=_ls_set(7))
  _expect_failure(root, tmp_path / 'tfds', ValueError, root / MAT, '(10, 7)', '(10, 6)')


def test_person_missing_in_cam2(tmp_path):
  root = make_tree(tmp_path / 'manual')
  missing = root / SEQ / 'cam2' / 'person042'
  for f in missing.iterdir():
    f.unlink()
  missing.rmdir()
  _expect_failure(root, tmp_path / 'tfds', FileNotFoundError, missing, 'cam2 sequence')


def test_frame_of_wrong_camera(tmp_path):
  root = make_tree(tmp_path / 'manual')
  d = root / SEQ / 'cam2' / 'person017'
  os.rename(d / 'cam2_person017_00010.png', d / 'cam1_person017_00010.png')
  _expect_failure(root, tmp_path / 'tfds', ValueError, d / 'cam1_person017_00010.png',
                  'differs from its folder')


def test_truncated_frame_leaves_nothing_and_recovers(tmp_path, monkeypatch):
  root = make_tree(tmp_path / 'manual')
  # Gallery is written after train and query: the failure happens mid-prepare.
  pid = sorted(PERSONS)[int(_ls_set(6)[0][0]) - 1]
  bad = sorted((root / SEQ / 'cam2' / f'person{pid:03d}').iterdir())[-1]
  builder = prepared_records.refused_mid_preparation_then_prepared(
      NAME, root, tmp_path / 'tfds', bad, bad.read_bytes()[:bad.stat().st_size // 2],
      monkeypatch, 'complete PNG', 'IEND')
  assert builder.info.splits['gallery'].num_examples == 3
