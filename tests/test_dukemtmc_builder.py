"""Tests of the DukeMTMC-VideoReID TFDS builder on a fabricated release tree."""

import io
import pathlib
import random
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import data_pipelines.dukemtmc_video_reid  # pylint: disable=unused-import  # registers
from data_pipelines import record_index
from data_pipelines import release_files
from data_pipelines.dukemtmc_video_reid import dukemtmc_video_reid_dataset_builder as duke
import prepared_records

# split -> [(pid, tracklet folder, camera, F numbers, naming)], in the order the builder
# must emit them (person folders, then tracklet folders, sorted).
TREE = {
    'train': [
        (1, '0001', 1, [1, 2, 3], 'new'),
        (1, '0003', 6, [99, 100, 101, 102], 'new'),
        (5, '0001', 2, [2, 3, 4], 'new'),             # starts at F0002: keeps all 3 frames
        (5, '0002', 2, [9, 10, 11, 12], 'old'),       # old naming 0005C2F0009X...
    ],
    'query': [
        (2, '0001', 1, [1, 2, 3], 'new'),
        (4, '0002', 3, [1, 2], 'new'),
    ],
    'gallery': [
        (2, '0002', 1, [1, 2], 'new'),                # same pid and camera as its query
        (2, '0003', 2, [1, 2, 3], 'new'),             # cross-camera match
        (4, '0001', 5, [1, 2, 3], 'old'),
        (100, '0001', 7, [1, 2], 'distractor'),       # gallery-only distractor identity (D tag)
    ],
}


def _jpeg(seed):
  rng = np.random.default_rng(seed)
  buf = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (8, 4, 3), np.uint8)).save(buf, 'JPEG', quality=90)
  return buf.getvalue()


def _name(pid, cam, frm, naming):
  if naming == 'old':
    return f'{pid:04d}C{cam}F{frm:04d}X{10000 + 12 * frm:05d}.jpg'
  tag = 'D' if naming == 'distractor' else 'X'
  return f'{pid:04d}_C{cam}_F{frm:04d}_{tag}{10000 + 12 * frm:05d}.jpg'


def make_tree(release):
  """Writes the tree under ``release`` (= .../DukeMTMC-VideoReID); {(split, i): [paths]}."""
  release = pathlib.Path(release)
  paths, seed = {}, 0
  rng = random.Random(0)
  for split, rows in TREE.items():
    for i, (pid, trk, cam, frames, naming) in enumerate(rows):
      folder = release / split / f'{pid:04d}' / trk
      folder.mkdir(parents=True)
      paths[split, i] = [folder / _name(pid, cam, f, naming) for f in frames]
      for path in rng.sample(paths[split, i], len(frames)):  # written in shuffled order
        seed += 1
        path.write_bytes(_jpeg(seed))
  (release / 'train' / '.DS_Store').write_bytes(b'junk')  # ignored
  return paths


def _prepare(tmp_path, manual_dir):
  return prepared_records.prepare('dukemtmc_video_reid', manual_dir, tmp_path / 'data')


def test_prepare_fabricated_tree(tmp_path):
  paths = make_tree(tmp_path / 'manual' / 'DukeMTMC-VideoReID')
  builder = _prepare(tmp_path, tmp_path / 'manual')
  for split, rows in TREE.items():
    records = prepared_records.records(builder, split)
    assert len(records) == len(rows)
    for i, (record, (pid, _, cam, frames, _)) in enumerate(zip(records, rows)):
      assert (record['pid'], record['camid'], record['num_frames']) == (pid, cam - 1, len(frames))
      # Original bytes, F order, every frame (the F0002 tracklet keeps 3).
      assert record['frames'] == [p.read_bytes() for p in paths[split, i]]
    source = prepared_records.raw_source(builder, split)
    index = record_index.scan(source, split)
    assert list(index.num_frames) == [len(r[3]) for r in rows]
  assert builder.info.metadata['split_stats']['train'] == {
      'tracklets': 4, 'ids': 2, 'frames': 14, 'cameras': 3}


def test_release_root_spellings(tmp_path):
  make_tree(tmp_path / 'DukeMTMC-VideoReID')
  release = tmp_path / 'DukeMTMC-VideoReID'
  assert duke.find_root(tmp_path) == release
  assert duke.find_root(release) == release
  nested = tmp_path / 'other' / 'dukemtmc-vidreid'
  nested.mkdir(parents=True)
  shutil.move(release, nested / 'DukeMTMC-VideoReID')
  assert duke.find_root(tmp_path / 'other') == nested / 'DukeMTMC-VideoReID'
  wrapped = tmp_path / 'wrap' / 'DukeMTMC-VideoReID'
  shutil.move(nested / 'DukeMTMC-VideoReID', wrapped)
  with pytest.raises(release_files.ReleaseError) as e:
    duke.find_root(tmp_path)  # extracted a level too deep: not accepted, but pointed at
  assert 'one level deeper' in str(e.value)
  assert f'point manual_dir at {wrapped}' in str(e.value)


def _error(tmp_path):
  with pytest.raises(release_files.ReleaseError) as e:
    _prepare(tmp_path, tmp_path / 'manual')
  assert not tfds.builder_cls('dukemtmc_video_reid')(data_dir=str(tmp_path / 'data')).is_prepared()
  return str(e.value)


def test_missing_split_folder(tmp_path):
  make_tree(tmp_path / 'manual' / 'DukeMTMC-VideoReID')
  shutil.rmtree(tmp_path / 'manual' / 'DukeMTMC-VideoReID' / 'gallery')
  msg = _error(tmp_path)
  assert 'gallery' in msg and 'DukeMTMC-VideoReID.zip' in msg


def test_bad_tracklets(tmp_path):
  paths = make_tree(tmp_path / 'manual' / 'DukeMTMC-VideoReID')
  first = paths['query', 0][0]
  # A frame from another camera in the tracklet.
  other_cam = first.with_name(_name(2, 4, 7, 'new'))
  other_cam.write_bytes(first.read_bytes())
  msg = _error(tmp_path)
  assert str(first.parent) in msg and 'one camera' in msg and '[1, 4]' in msg
  other_cam.unlink()
  # The same frame twice (old and new naming).
  dup = first.with_name(_name(2, 1, 1, 'old'))
  dup.write_bytes(first.read_bytes())
  msg = _error(tmp_path)
  assert 'same frame number 1' in msg
  dup.unlink()
  # A file name that is not a Duke frame name.
  odd = first.with_name('frame_0001.jpg')
  odd.write_bytes(first.read_bytes())
  msg = _error(tmp_path)
  assert 'frame_0001.jpg' in msg and 'DukeMTMC-VideoReID frame name' in msg
  odd.unlink()
  # A truncated frame.
  bad = paths['gallery', 3][1]
  bad.write_bytes(bad.read_bytes()[:100])
  msg = _error(tmp_path)
  assert str(bad) in msg and 'truncated' in msg
