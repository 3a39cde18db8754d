"""Tests of the PRID-2011 TFDS builder on small trees in the release's layout.

The main test uses the real ``splits_prid2011.json`` (10 splits of 89 + 89 of 178
persons; the file torchreid uses) when a copy is at hand, as
``prid2011/splits_prid2011.json`` under ``$JAXREID_REFERENCE_DIR`` (or a
developers' reference folder next to the checkout); it is skipped, saying so,
where that file is absent. The other tests fabricate their own split file.
"""

import io
import json
import os
import pathlib

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import data_pipelines.prid2011  # pylint: disable=unused-import  # registers
from data_pipelines import release_files
import prepared_records
from data_pipelines.prid2011 import Builder

NAME = 'prid2011'
SPLITS_FILE = 'splits_prid2011.json'
MULTI = pathlib.Path('prid_2011/multi_shot')


def _reference_json():
  """The real split file, in the folder JAXREID_REFERENCE_DIR names (None without it)."""
  folder = os.environ.get('JAXREID_REFERENCE_DIR')
  path = pathlib.Path(folder) / 'prid2011' / SPLITS_FILE if folder else None
  return path if path is not None and path.is_file() else None


REAL_JSON = _reference_json()


def _png(pid, cam, frame):
  """A tiny PNG whose pixels encode (pid, cam, frame); 4 x 2 (H x W)."""
  pixels = np.zeros((4, 2, 3), np.uint8)
  pixels[..., 0], pixels[..., 1], pixels[..., 2] = pid % 256, pid // 256 + 10 * cam, frame
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, format='PNG')
  return buf.getvalue()


def num_frames(pid, cam):
  """Frames of person ``pid`` in camera ``cam`` ('a' or 'b')."""
  return 1 + (pid + (cam == 'b')) % 3 + (9 if pid % 17 == 0 else 0)  # 1..3, some with 10..12


def make_tree(base, cam_a, cam_b, splits=None):
  """``base/prid_2011/multi_shot/cam_{a,b}/person_NNNN/NNNN.png`` (+ single_shot stills)
  for the person numbers ``cam_a`` / ``cam_b``, frames written in reverse order;
  ``splits`` (a list of {'test', 'train'} dicts) as ``base/splits_prid2011.json``."""
  base = pathlib.Path(base)
  for cam, pids in (('a', cam_a), ('b', cam_b)):
    for pid in pids:
      d = base / MULTI / f'cam_{cam}' / f'person_{pid:04d}'
      d.mkdir(parents=True)
      for frame in range(num_frames(pid, cam), 0, -1):
        (d / f'{frame:04d}.png').write_bytes(_png(pid, cam == 'b', frame))
      still = base / 'prid_2011/single_shot' / f'cam_{cam}' / f'person_{pid:04d}.png'
      still.parent.mkdir(parents=True, exist_ok=True)
      still.write_bytes(_png(pid, cam == 'b', 0))
  if splits is not None:
    (base / SPLITS_FILE).write_text(json.dumps(splits, indent=4))
  return base


def prepare(manual_dir, data_dir, config='split_0'):
  return prepared_records.prepare(NAME, manual_dir, data_dir, config)


def _pid(name):
  return int(name.split('_')[1])


def test_registered_configs(tmp_path):
  assert tfds.builder_cls(NAME) is Builder
  assert [c.name for c in Builder.BUILDER_CONFIGS] == [f'split_{i}' for i in range(10)]
  assert [c.split_index for c in Builder.BUILDER_CONFIGS] == list(range(10))
  assert Builder(data_dir=str(tmp_path)).builder_config.name == 'split_0'
  assert SPLITS_FILE in Builder.MANUAL_DOWNLOAD_INSTRUCTIONS


# --- the real split file ---------------------------------------------------------------


@pytest.fixture(scope='module')
def real(tmp_path_factory):
  if REAL_JSON is None:
    pytest.skip(f'{SPLITS_FILE} not found (set JAXREID_REFERENCE_DIR to a folder '
                f'holding prid2011/{SPLITS_FILE})')
  splits = json.loads(REAL_JSON.read_text())
  listed = sorted({_pid(n) for s in splits for k in ('test', 'train') for n in s[k]})
  assert len(listed) == 178
  # Persons not in the split file: shared persons excluded by the protocol (6, 19),
  # cam_a-only (300) and cam_b-only (201, 202, 700) persons.
  manual = tmp_path_factory.mktemp('manual')
  make_tree(manual, cam_a=listed + [6, 19, 300], cam_b=listed + [6, 19, 201, 202, 700])
  (manual / SPLITS_FILE).write_bytes(REAL_JSON.read_bytes())
  data_dir = tmp_path_factory.mktemp('tfds')
  return splits, manual, {i: prepare(manual, data_dir, f'split_{i}') for i in (0, 3)}


@pytest.mark.parametrize('split_index', [0, 3])
def test_real_split_file(real, split_index):
  splits, manual, builders = real
  builder = builders[split_index]
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  test = sorted(_pid(n) for n in splits[split_index]['test'])
  train = sorted(_pid(n) for n in splits[split_index]['train'])
  assert len(test) == len(train) == 89
  ex = {s: prepared_records.records(builder, s) for s in ('train', 'query', 'gallery')}
  assert {s: len(e) for s, e in ex.items()} == {'train': 178, 'query': 89, 'gallery': 89}
  assert {s: builder.info.splits[s].num_examples for s in ex} == {
      'train': 178, 'query': 89, 'gallery': 89}
  assert [(e['pid'], e['camid']) for e in ex['train']] == [(p, c) for p in train for c in (0, 1)]
  assert [(e['pid'], e['camid']) for e in ex['query']] == [(p, 0) for p in test]
  assert [(e['pid'], e['camid']) for e in ex['gallery']] == [(p, 1) for p in test]
  assert builder.info.metadata['test_persons'] == sorted(splits[split_index]['test'])
  for split, examples in ex.items():
    assert [e['tracklet'] for e in examples] == list(range(len(examples)))
    for e in examples:
      cam = 'ab'[e['camid']]
      n = num_frames(e['pid'], cam)
      assert e['num_frames'] == len(e['frames']) == n
      # The original PNG bytes, in frame-number order (written in reverse order).
      d = manual / MULTI / f'cam_{cam}' / f'person_{e["pid"]:04d}'
      assert e['frames'] == [(d / f'{f:04d}.png').read_bytes() for f in range(1, n + 1)]


def test_real_split_file_decodes(real):
  builder = real[2][0]
  e = builder.as_data_source('gallery')[5]
  assert e['camid'] == 1 and len(e['frames']) == e['num_frames']
  assert e['frames'][-1].shape == (4, 2, 3) and e['frames'][-1][0, 0, 2] == e['num_frames']


# --- small fabricated split file ---------------------------------------------------------

PERSONS = (1, 2, 4, 9)
SMALL_SPLITS = [{'test': [f'person_{p:04d}' for p in sorted(test)],
                 'train': [f'person_{p:04d}' for p in sorted(set(PERSONS) - set(test))]}
                for test in [(1, 2), (4, 9), (1, 4), (2, 9), (1, 9),
                             (2, 4), (1, 2), (4, 9), (2, 4), (1, 9)]]


def test_torchreid_layout_with_split_file_in_manual_root(tmp_path):
  """Release in manual_dir/prid2011/ (torchreid's folder), split file in manual_dir."""
  manual = tmp_path / 'manual'
  make_tree(manual / 'prid2011', cam_a=PERSONS + (5,), cam_b=PERSONS + (7,))
  (manual / SPLITS_FILE).write_text(json.dumps(SMALL_SPLITS))
  (manual / 'ilids-vid').mkdir()  # another dataset sharing the manual folder
  builder = prepare(manual, tmp_path / 'tfds', 'split_3')
  ex = {s: prepared_records.records(builder, s) for s in ('train', 'query', 'gallery')}
  assert [(e['pid'], e['camid']) for e in ex['train']] == [(1, 0), (1, 1), (4, 0), (4, 1)]
  assert [e['pid'] for e in ex['query']] == [e['pid'] for e in ex['gallery']] == [2, 9]


def _expect_failure(manual_dir, data_dir, exc, *fragments):
  return prepared_records.expect_refusal(NAME, manual_dir, data_dir, exc, *fragments)


def test_missing_manual_dir(tmp_path):
  _expect_failure(tmp_path / 'nothing_here', tmp_path / 'tfds', AssertionError,
                  'nothing_here', 'does not exist or is empty', SPLITS_FILE)


def test_not_extracted(tmp_path):
  manual = tmp_path / 'manual'
  manual.mkdir()
  (manual / 'prid_2011.zip').write_bytes(b'PK not really')
  (manual / SPLITS_FILE).write_text(json.dumps(SMALL_SPLITS))
  _expect_failure(manual, tmp_path / 'tfds', release_files.ReleaseError,
                  'expected the PRID-2011 release', manual, 'prid_2011/multi_shot', 'prid_2011.zip', 'not extracted')


def test_missing_split_file(tmp_path):
  manual = make_tree(tmp_path / 'manual', PERSONS, PERSONS)
  _expect_failure(manual, tmp_path / 'tfds', FileNotFoundError,
                  manual / SPLITS_FILE, 'Missing split file', 'torchreid')


def test_malformed_split_file(tmp_path):
  manual = make_tree(tmp_path / 'manual', PERSONS, PERSONS, splits=SMALL_SPLITS[:3])
  _expect_failure(manual, tmp_path / 'tfds', ValueError, manual / SPLITS_FILE,
                  'expected a JSON list of 10', 'Got 3 entries')


def test_listed_person_missing_in_cam_b(tmp_path):
  manual = make_tree(tmp_path / 'manual', PERSONS, (1, 2, 9), splits=SMALL_SPLITS)
  _expect_failure(manual, tmp_path / 'tfds', FileNotFoundError,
                  manual / MULTI / 'cam_b' / 'person_0004', 'lists person_0004 (split 0, train)',
                  'cam_b sequence')


def test_listed_person_missing_everywhere(tmp_path):
  manual = make_tree(tmp_path / 'manual', (1, 2, 4), (1, 2, 4), splits=SMALL_SPLITS)
  _expect_failure(manual, tmp_path / 'tfds', FileNotFoundError,
                  manual / MULTI / 'cam_a' / 'person_0009', 'lists person_0009')


def test_empty_tracklet_folder(tmp_path):
  manual = make_tree(tmp_path / 'manual', PERSONS, PERSONS, splits=SMALL_SPLITS)
  d = manual / MULTI / 'cam_a' / 'person_0002'
  for f in d.iterdir():
    f.unlink()
  _expect_failure(manual, tmp_path / 'tfds', release_files.ReleaseError, d,
                  'frames of one tracklet', 'It holds none')


def test_truncated_frame_leaves_nothing_and_recovers(tmp_path, monkeypatch):
  manual = make_tree(tmp_path / 'manual', PERSONS, PERSONS, splits=SMALL_SPLITS)
  bad = manual / MULTI / 'cam_b' / 'person_0002' / '0001.png'  # gallery: written last
  builder = prepared_records.refused_mid_preparation_then_prepared(
      NAME, manual, tmp_path / 'tfds', bad, bad.read_bytes()[:-5], monkeypatch,
      'complete PNG', 'IEND')
  assert builder.info.splits['gallery'].num_examples == 2


def test_not_a_png(tmp_path):
  manual = make_tree(tmp_path / 'manual', PERSONS, PERSONS, splits=SMALL_SPLITS)
  bad = manual / MULTI / 'cam_a' / 'person_0004' / '0001.png'
  bad.write_bytes(b'\xff\xd8\xff\xe0 a JPEG named .png')
  _expect_failure(manual, tmp_path / 'tfds', ValueError, bad, 'PNG signature')
