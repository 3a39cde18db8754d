"""Tests of the `tracklet_folders` builder (your own tracklets) on fabricated trees.

Frames are real 16 x 8 JPEG and PNG files; every expectation below is written
out by hand from TREE (names sorted: pid, camid; frame numbers sorted as numbers).
"""

import io
import json
import logging
import os
import pathlib
import random
import shutil

import numpy as np
from PIL import Image
import pytest

from data_pipelines import datasets
from data_pipelines import provenance
from data_pipelines import release_files
import prepared_records

# split -> [(person, camera, tracklet, frame numbers in their names, format)], in the
# order the builder must emit them (person, camera, tracklet names sorted).
TREE = {
    'train': [
        ('ann', 'cam_a', 't1', [1, 2, 3], 'jpeg'),
        ('ann', 'cam_b', 't1', [4, 5, 6, 7], 'png'),
        ('bob', 'cam_a', 't1', [9, 10, 2], 'jpeg'),  # numeric order 2, 9, 10
        ('bob', 'cam_a', 't2', [1, 2, 3, 4, 5], 'jpeg'),
        ('cy', 'cam_b', 'x', [7, 8, 9], 'png'),
        ('dee', 'cam_a', 'run', [100, 20, 3], 'jpeg'),
        ('dee', 'cam_b', 'run', [1, 2, 3], 'jpeg'),
    ],
    'query': [
        ('eve', 'cam_a', 'q', [1, 2, 3], 'jpeg'),
        ('fay', 'cam_b', 'q', [5, 6, 7, 8], 'png'),
    ],
    'gallery': [
        ('eve', 'cam_b', 'g', [1, 2, 3, 4], 'jpeg'),
        ('fay', 'cam_a', 'g1', [1, 2, 3], 'jpeg'),
        ('fay', 'cam_b', 'g2', [1, 2, 3], 'png'),  # same camera as fay's query
    ],
}
# By hand: persons ann..fay are pids 0..5, cam_a / cam_b are camids 0 / 1.
PIDS = {'train': [0, 0, 1, 1, 2, 3, 3], 'query': [4, 5], 'gallery': [4, 5, 5]}
CAMIDS = {'train': [0, 1, 0, 0, 1, 0, 1], 'query': [0, 1], 'gallery': [1, 0, 1]}
ORDER = {('train', 2): [2, 9, 10], ('train', 5): [3, 20, 100]}  # the shuffled ones, sorted


def _image(seed: int, fmt: str) -> bytes:
  pixels = np.random.default_rng(seed).integers(0, 256, (16, 8, 3), np.uint8)
  buf = io.BytesIO()
  Image.fromarray(pixels).save(buf, fmt.upper())
  return buf.getvalue()


def _suffix(fmt):
  return '.png' if fmt == 'png' else '.jpg'


def make_tree(root) -> dict:
  """Writes TREE as folders under ``root``; {(split, i): [frame paths in frame order]}."""
  root, paths, seed = pathlib.Path(root), {}, 0
  for split, rows in TREE.items():
    for i, (person, camera, tracklet, numbers, fmt) in enumerate(rows):
      folder = root / split / person / camera / tracklet
      folder.mkdir(parents=True)
      for n in numbers:
        seed += 1
        (folder / f'frame_{n}{_suffix(fmt)}').write_bytes(_image(seed, fmt))
      paths[split, i] = [folder / f'frame_{n}{_suffix(fmt)}' for n in sorted(numbers)]
  (root / 'train' / '.DS_Store').write_bytes(b'junk')  # hidden: ignored
  (root / 'train' / 'ann' / 'cam_a' / 't1' / 'notes.txt').write_text('not a frame')
  return paths


def make_manifest(root) -> dict:
  """TREE as frames in one flat folder plus ``manifest.csv`` (rows shuffled, half absolute)."""
  root, paths, rows, seed = pathlib.Path(root), {}, [], 0
  pool = root / 'pool'
  pool.mkdir(parents=True)
  for split, tracklets in TREE.items():
    for i, (person, camera, tracklet, numbers, fmt) in enumerate(tracklets):
      names = {n: f'{split}-{person}-{camera}-{tracklet}-{n:03d}{_suffix(fmt)}' for n in numbers}
      for n in numbers:
        seed += 1
        (pool / names[n]).write_bytes(_image(seed, fmt))
        where = str(pool / names[n]) if seed % 2 else f'pool/{names[n]}'
        rows.append(f'{camera},{tracklet},{where},{person},{split}')  # columns in another order
      paths[split, i] = [pool / names[n] for n in sorted(numbers)]
  random.Random(0).shuffle(rows)
  rows.insert(3, '')  # a blank row is skipped
  (root / 'manifest.csv').write_text('camera,tracklet,frame_path,person,split\n'
                                     + '\n'.join(rows) + '\n')
  return paths


def _prepare(tmp_path, root, **kwargs):
  return datasets.prepare('tracklet_folders', data_dir=str(tmp_path / 'data'),
                          manual_dir=str(root), **kwargs)


def _check_prepared(builder, paths):
  for split, rows in TREE.items():
    records = prepared_records.records(builder, split)
    assert [r['pid'] for r in records] == PIDS[split]
    assert [r['camid'] for r in records] == CAMIDS[split]
    for i, (record, (person, camera, tracklet, numbers, _)) in enumerate(zip(records, rows)):
      assert record['num_frames'] == len(numbers)
      # The original bytes, in frame-number order.
      assert record['frames'] == [p.read_bytes() for p in paths[split, i]]
      names = [record[k] for k in
               ('person_name', 'camera_name', 'tracklet_name')]
      assert names == [person, camera, tracklet]
  assert builder.info.metadata['person_names'] == ['ann', 'bob', 'cy', 'dee', 'eve', 'fay']
  assert builder.info.metadata['camera_names'] == ['cam_a', 'cam_b']
  assert builder.info.metadata['split_stats']['train'] == {
      'tracklets': 7, 'ids': 4, 'frames': 24, 'cameras': 2}


def test_prepare_tree(tmp_path):
  paths = make_tree(tmp_path / 'mine')
  assert [p.name for p in paths['train', 2]] == [f'frame_{n}.jpg' for n in ORDER['train', 2]]
  builder = _prepare(tmp_path, tmp_path / 'mine')
  _check_prepared(builder, paths)
  assert builder.info.metadata['layout'] == 'tree'


def test_prepare_manifest(tmp_path):
  paths = make_manifest(tmp_path / 'mine')
  builder = _prepare(tmp_path, tmp_path / 'mine')
  _check_prepared(builder, paths)  # the same dataset as the tree
  assert builder.info.metadata['layout'] == 'manifest'
  source = builder.info.metadata[provenance.SOURCE_KEY]
  assert source['paths'] == sorted(str(tmp_path / 'mine' / p) for p in ('manifest.csv', 'pool'))


def _refused(tmp_path, root, error=release_files.ReleaseError) -> str:
  """The one-line message of a preparation that fails, after checking nothing was stored."""
  with pytest.raises(error) as e:
    _prepare(tmp_path, root)
  message = str(e.value)
  assert '\n' not in message, message
  assert not list((tmp_path / 'data').rglob('*array_record*'))
  assert not datasets.get_builder('tracklet_folders', data_dir=str(tmp_path / 'data')
                                  ).is_prepared()
  return message


def test_bad_trees(tmp_path):
  root = tmp_path / 'mine'
  paths = make_tree(root)
  empty = root / 'train' / 'bob' / 'cam_a' / 'later'
  empty.mkdir()
  message = _refused(tmp_path, root)
  assert message.startswith(f'{empty}: expected a tracklet folder holding its frames')
  assert 'It holds none' in message
  empty.rmdir()

  frame = paths['query', 0][1]
  good = frame.read_bytes()
  sos = good.index(b'\xff\xda')  # a second SOF marker over the start of the entropy-coded body
  body = sos + 2 + int.from_bytes(good[sos + 2:sos + 4], 'big')
  frame.write_bytes(good[:body] + b'\xff\xc0\x00\x02' + good[body + 4:])
  message = _refused(tmp_path, root)
  assert message.startswith(f'{frame}: expected a JPEG or PNG frame that decodes')
  assert "frame 2 of 3 of tracklet 0 of split 'query'" in message
  frame.write_bytes(good)

  png = paths['gallery', 2][0]
  png.write_bytes(png.read_bytes()[:40])  # truncated
  message = _refused(tmp_path, root)
  assert message.startswith(f'{png}: expected a complete PNG file') and 'truncated' in message
  png.unlink()

  shutil.rmtree(root / 'gallery')
  message = _refused(tmp_path, root)
  assert message.startswith(f'{root / "gallery"}: expected the gallery folder')
  assert 'does not exist' in message

  (root / 'gallery').mkdir()  # an empty split
  message = _refused(tmp_path, root)
  assert message.startswith(f'{root / "gallery"}: expected person folders') and 'none' in message

  (root / 'gallery' / 'eve' / 'cam_b').mkdir(parents=True)
  shutil.copy(paths['query', 0][0], root / 'gallery' / 'eve' / 'cam_b' / 'frame_1.jpg')
  message = _refused(tmp_path, root)  # frames one level too high
  assert message.startswith(f'{root / "gallery" / "eve" / "cam_b"}: expected tracklet folders')
  assert 'a level of the tree is missing' in message
  shutil.rmtree(root / 'gallery' / 'eve')

  shutil.move(root / 'train' / 'cy', root / 'gallery' / 'cy')
  shutil.copytree(root / 'gallery' / 'cy', root / 'train' / 'cy')
  message = _refused(tmp_path, root)
  assert "1 of the 4 training persons are in query/gallery too (e.g. 'cy')" in message


def test_bad_manifests(tmp_path):
  root = tmp_path / 'mine'
  make_manifest(root)
  manifest = root / 'manifest.csv'
  lines = manifest.read_text().splitlines()
  missing = root / 'pool' / 'gone_7.jpg'
  manifest.write_text('\n'.join(lines[:5] + ['cam_a,t1,pool/gone_7.jpg,ann,train'] + lines[5:]))
  message = _refused(tmp_path, root)
  assert message.startswith(f'{manifest}, row 6: expected a frame_path naming an existing file')
  assert f'{missing} does not exist' in message

  manifest.write_text('\n'.join(line for line in lines if not line.endswith(',query')))
  message = _refused(tmp_path, root)
  assert message.startswith(f'{manifest}: expected tracklets of each of the splits')
  assert 'none of query' in message

  manifest.write_text('\n'.join([lines[0].replace('person', 'who')] + lines[1:]))
  message = _refused(tmp_path, root)
  assert message.startswith(f'{manifest}, row 1: expected a header row naming the columns '
                            'split,frame_path,person,camera,tracklet')
  assert 'It lacks person' in message


def test_query_without_cross_camera_gallery_is_a_warning(tmp_path, caplog):
  root = tmp_path / 'mine'
  make_tree(root)
  shutil.rmtree(root / 'gallery' / 'eve')  # eve's query now has no match; fay's still has one
  with caplog.at_level(logging.WARNING):
    builder = _prepare(tmp_path, root)
  assert builder.is_prepared()
  warnings = [r.getMessage() for r in caplog.records if 'query tracklets' in r.getMessage()]
  assert len(warnings) == 1
  assert ('1 of the 2 query tracklets (1 of the 2 query persons) have no gallery tracklet of '
          'their person in another camera') in warnings[0]


def test_changed_tree_is_refused_until_reprepare(tmp_path):
  root = tmp_path / 'mine'
  paths = make_tree(root)
  _prepare(tmp_path, root)
  shutil.copy(paths['train', 0][0], root / 'train' / 'ann' / 'cam_a' / 't1' / 'frame_4.jpg')
  with pytest.raises(ValueError) as e:
    _prepare(tmp_path, root)
  message = str(e.value)
  assert '\n' not in message
  for fragment in ('tracklet_folders: the prepared copy', 'the release changed since',
                   '--config.reprepare=True'):
    assert fragment in message, message
  with pytest.raises(ValueError, match='the release changed since'):
    _prepare(tmp_path, root)  # again: never silently adopted
  builder = _prepare(tmp_path, root, reprepare=True)
  assert prepared_records.records(builder, 'train')[0]['num_frames'] == 4
  assert _prepare(tmp_path, root).is_prepared()  # current again: reused

  # Relabelling by renaming a folder keeps every file's size and time: still a change.
  (root / 'train' / 'cy').rename(root / 'train' / 'cid')
  with pytest.raises(ValueError, match='the release changed since'):
    _prepare(tmp_path, root)
  builder = _prepare(tmp_path, root, reprepare=True)
  assert builder.info.metadata['person_names'][2] == 'cid'


@pytest.mark.slow
def test_train_and_evaluate_on_own_tracklets(tmp_path):
  from experiments import train  # pylint: disable=g-import-not-at-top
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  make_tree(tmp_path / 'mine')
  config = tiny.get_config()
  config.dataset, config.dataset_config = 'tracklet_folders', ''
  config.manual_dir, config.data_dir = str(tmp_path / 'mine'), str(tmp_path / 'data')
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(config, workdir)
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    saved = json.load(f)
  assert saved['step'] == config.num_train_steps
  assert saved['num_query'] == results['num_query'] == 2
  assert saved['num_gallery'] == 3
  assert saved['num_valid_queries'] == 2  # both have a gallery tracklet in another camera
  assert 0.0 <= saved['rank1'] <= saved['rank5'] <= 1.0
