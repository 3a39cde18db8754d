"""Fault injection on the data side: corrupt frame bodies, changed releases, stale prepared copies.

Each test damages a fabricated release (the trees of test_mars_builder.py and
test_ilids_vid_builder.py, frames of 8 x 4 pixels) the way a real copy or
download does, and checks the one-line message and that nothing prepared before
was lost or changed.
"""

import hashlib
import importlib
import io
import json
import logging
import os
import pathlib
import pkgutil
import shutil

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import datasets
from data_pipelines import decoding
from data_pipelines import folders
from data_pipelines import pipeline
from data_pipelines import provenance
from data_pipelines import release_files
import experiments.configs
import prepared_records
from test_ilids_vid_builder import make_tree as make_ilids_tree
from test_mars_builder import TEST, TRAIN, _jpeg, _name, make_tree

# Row 9 of the fabricated MARS test table: person 9, camera 4, frames F001..F004; the
# last of the 6 gallery tracklets (rows 1, 2, 3, 5, 8, 9; rows 4, 6, 7 are queries).
BAD_FRAME = _name(9, 4, 1, 2)


def _corrupt_body(jpeg: bytes) -> bytes:
  """``jpeg`` with a second SOF marker written over the start of its entropy-coded data.

  The file keeps its length, its SOI/EOI markers and its headers: only the body
  is damaged, as a flipped run of bytes in a bad copy would.
  """
  sos = jpeg.index(b'\xff\xda')
  body = sos + 2 + int.from_bytes(jpeg[sos + 2:sos + 4], 'big')  # after the SOS header
  return jpeg[:body] + b'\xff\xc0\x00\x02' + jpeg[body + 4:]


def _snapshot(data_dir) -> dict:
  """{relative path: (size, sha256)} of every file under ``data_dir``."""
  root = pathlib.Path(data_dir)
  return {str(p.relative_to(root)): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
          for p in sorted(root.rglob('*')) if p.is_file()}


def _prepare_mars(tmp_path, manual='manual', **kwargs):
  return datasets.prepare('mars', data_dir=str(tmp_path / 'data'),
                          manual_dir=str(tmp_path / manual), **kwargs)


def _refused(tmp_path, *fragments, manual='manual', **kwargs) -> str:
  """Runs a preparation that must be refused; checks the message and that nothing changed."""
  before = _snapshot(tmp_path / 'data')
  with pytest.raises(ValueError) as e:
    _prepare_mars(tmp_path, manual, **kwargs)
  message = str(e.value)
  assert '\n' not in message, message
  for fragment in fragments:
    assert str(fragment) in message, message
  assert _snapshot(tmp_path / 'data') == before  # the prepared copy is untouched
  return message


# --- frames decoded once at preparation -----------------------------------------------------


def test_corrupt_jpeg_body_fails_preparation_naming_file_and_tracklet(tmp_path):
  files = make_tree(tmp_path / 'manual')
  bad, good = files[BAD_FRAME], files[BAD_FRAME].read_bytes()
  damaged = _corrupt_body(good)
  # The damage the marker check cannot see, and that TensorFlow's decoder fails on.
  assert damaged[:2] == b'\xff\xd8' and damaged[-2:] == b'\xff\xd9' and len(damaged) == len(good)
  with pytest.raises(tf.errors.InvalidArgumentError):
    tf.io.decode_jpeg(damaged, channels=3)
  bad.write_bytes(damaged)

  with pytest.raises(release_files.ReleaseError) as e:
    _prepare_mars(tmp_path)
  message = str(e.value)
  for fragment in (bad, 'Decoding it failed', "frame 2 of 4 of tracklet 5 of split 'gallery'",
                   'person 9, camera 4', 'Extract that file again', 'prepare again'):
    assert str(fragment) in message, message
  assert '\n' not in message
  # Not stored: no prepared copy, no half-written one.
  dataset_dir = tmp_path / 'data' / 'mars'
  assert not dataset_dir.exists() or not os.listdir(dataset_dir)

  bad.write_bytes(good)  # repaired: now it prepares, with the original bytes stored
  builder = _prepare_mars(tmp_path)
  records = prepared_records.records(builder, 'gallery')
  assert records[5]['frames'][1] == good


def test_corrupt_png_body_fails_preparation(tmp_path):
  root = make_ilids_tree(tmp_path / 'manual')
  bad = root / 'i-LIDS-VID/sequences/cam2/person101/cam2_person101_12345.png'
  good = bad.read_bytes()
  idat = good.index(b'IDAT') + 4
  damaged = good[:idat] + bytes(b ^ 0x55 for b in good[idat:idat + 6]) + good[idat + 6:]
  assert damaged.endswith(release_files.PNG_IEND)
  assert damaged.startswith(release_files.PNG_SIGNATURE)
  with pytest.raises(tf.errors.InvalidArgumentError):
    tf.io.decode_png(damaged, channels=3)
  bad.write_bytes(damaged)
  builder = tfds.builder_cls('ilids_vid')(config='split_0', data_dir=str(tmp_path / 'tfds'),
                                         file_format='array_record')
  with pytest.raises(release_files.ReleaseError) as e:
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
  message = str(e.value)
  for fragment in (bad, 'Decoding it failed', 'frame 1 of 1', 'person 101, camera 2'):
    assert str(fragment) in message, message


def test_check_uses_the_pipeline_decoder():
  assert pipeline._decode_image is decoding.decode_image  # pylint: disable=protected-access
  good = _jpeg(1)
  png = io.BytesIO()
  Image.fromarray(np.zeros((4, 2, 3), np.uint8)).save(png, 'PNG')
  tiff = io.BytesIO()
  Image.fromarray(np.zeros((4, 2, 3), np.uint8)).save(tiff, 'TIFF')
  cases = {'jpeg': good, 'corrupt jpeg': _corrupt_body(good), 'png': png.getvalue(),
           'truncated png': png.getvalue()[:30], 'tiff': tiff.getvalue(), 'empty': b''}
  for name, data in cases.items():
    # Reference: TensorFlow's generic decoder, called directly.
    try:
      tf.io.decode_image(data, channels=3, expand_animations=False)
      decodes = True
    except tf.errors.InvalidArgumentError:
      decodes = False
    reason = decoding.decode_error(data)
    assert (reason is None) == decodes, (name, reason)
    assert reason is None or ('\n' not in reason and '{{' not in reason and '[Op:' not in reason)
  assert decodes is False and 'empty' in decoding.decode_error(b'').lower()


# --- a prepared copy knows its source ---------------------------------------------------------


def test_fingerprint_counts_size_and_newest_mtime(tmp_path):
  (tmp_path / 'a' / 'b').mkdir(parents=True)
  (tmp_path / 'a' / '.hidden').mkdir()
  files = {tmp_path / 'a' / '1.jpg': (10, 1_000_000_000_000_000_123),
           tmp_path / 'a' / 'b' / '2.jpg': (3, 2_000_000_000_000_000_456),  # 2e9 s
           tmp_path / 'split.mat': (7, 1_500_000_000_000_000_000)}
  for path, (size, mtime_ns) in files.items():
    path.write_bytes(b'x' * size)
    os.utime(path, ns=(mtime_ns, mtime_ns))
  (tmp_path / 'a' / '.DS_Store').write_bytes(b'x' * 100)  # hidden: no builder reads it
  (tmp_path / 'a' / '.hidden' / '3.jpg').write_bytes(b'x' * 100)
  fp = provenance.fingerprint([tmp_path / 'a', tmp_path / 'split.mat', tmp_path / 'missing'])
  assert fp == {'files': 3, 'bytes': 20, 'newest_mtime_ns': 2_000_000_000_000_000_456}
  assert provenance.describe_fingerprint(fp) == (
      '3 files, 20 bytes, newest modified 2033-05-18 03:33:20.000000 UTC')


def test_prepared_copy_records_its_source(tmp_path):
  make_tree(tmp_path / 'manual')
  builder = _prepare_mars(tmp_path)
  with open(os.path.join(builder.data_path, 'metadata.json')) as f:
    record = json.load(f)[provenance.SOURCE_KEY]
  manual = tmp_path / 'manual'
  assert record['manual_dir'] == str(manual)
  assert record['paths'] == sorted(str(manual / p) for p in
                                   ('info', 'bbox_train/bbox_train', 'bbox_test'))
  frames = [p for p in manual.rglob('*') if p.is_file()]  # the 5 info files and the frames
  assert record['files'] == len(frames) == 5 + sum(len(row[3]) for row in TRAIN + TEST)
  assert record['bytes'] == sum(p.stat().st_size for p in frames)
  assert record['newest_mtime_ns'] == max(p.stat().st_mtime_ns for p in frames)
  assert datasets.provenance_problem(builder, str(manual)) is None
  assert _prepare_mars(tmp_path).data_path == builder.data_path  # reused, not rebuilt


def test_changed_release_is_refused_until_reprepare(tmp_path):
  files = make_tree(tmp_path / 'manual')
  _prepare_mars(tmp_path)
  repaired = _jpeg(999)  # the user re-extracts a frame: other bytes, size, mtime
  files[_name(3, 1, 1, 6)].write_bytes(repaired)
  message = _refused(tmp_path, 'mars: the prepared copy', tmp_path / 'manual',
                     'the release changed since', 'reprepare=True', '--config.reprepare=True')
  assert f'{len(files) + 5} files' in message  # then and now
  _refused(tmp_path, 'the release changed since')  # again: never silently adopted

  builder = _prepare_mars(tmp_path, reprepare=True)  # rebuilt from the release as it is now
  records = prepared_records.records(builder, 'train')
  assert records[2]['frames'][1] == repaired  # (3, 1, 1, [5, 6, 7, 8]): F006 is frame 2
  assert not any(p.name.startswith('.') for p in (tmp_path / 'data' / 'mars').iterdir())
  after = _snapshot(tmp_path / 'data')
  assert _prepare_mars(tmp_path).is_prepared()  # current again: reused
  assert _snapshot(tmp_path / 'data') == after


def test_changed_manual_dir_is_refused(tmp_path):
  make_tree(tmp_path / 'manual')
  _prepare_mars(tmp_path)
  shutil.copytree(tmp_path / 'manual', tmp_path / 'other_release')
  _refused(tmp_path, f'built from manual_dir {tmp_path / "manual"}',
           f'manual_dir is now {tmp_path / "other_release"}', 'reprepare=True',
           f'set manual_dir back to {tmp_path / "manual"}', manual='other_release')
  # No manual_dir given: the copy is checked against the release it was built from.
  before = _snapshot(tmp_path / 'data')
  datasets.prepare('mars', data_dir=str(tmp_path / 'data'))
  assert _snapshot(tmp_path / 'data') == before
  builder = _prepare_mars(tmp_path, 'other_release', reprepare=True)
  source = builder.info.metadata[provenance.SOURCE_KEY]
  assert source['manual_dir'] == str(tmp_path / 'other_release')


def test_copy_without_source_record_is_refused(tmp_path):
  """A copy prepared before sources were recorded (e.g. with a corrupt frame stored)."""
  make_tree(tmp_path / 'manual')
  builder = _prepare_mars(tmp_path)
  meta_path = os.path.join(builder.data_path, 'metadata.json')
  with open(meta_path) as f:
    meta = json.load(f)
  del meta[provenance.SOURCE_KEY]
  with open(meta_path, 'w') as f:
    json.dump(meta, f)
  _refused(tmp_path, 'does not record what it was built from', 'reprepare=True')
  assert provenance.SOURCE_KEY in _prepare_mars(tmp_path, reprepare=True).info.metadata


def test_failed_reprepare_keeps_the_previous_copy(tmp_path):
  files = make_tree(tmp_path / 'manual')
  builder = _prepare_mars(tmp_path)
  before = _snapshot(tmp_path / 'data')
  files[BAD_FRAME].write_bytes(_corrupt_body(files[BAD_FRAME].read_bytes()))
  with pytest.raises(release_files.ReleaseError, match=BAD_FRAME):
    _prepare_mars(tmp_path, reprepare=True)
  assert _snapshot(tmp_path / 'data') == before  # put back, nothing left aside
  assert builder.is_prepared()
  _refused(tmp_path, 'the release changed since')  # and still not reused silently


def test_interrupted_reprepare_puts_the_previous_copy_back(tmp_path):
  make_tree(tmp_path / 'manual')
  builder = _prepare_mars(tmp_path)
  before = _snapshot(tmp_path / 'data')
  data_path = pathlib.Path(builder.data_path)
  # Killed during the rebuild: the old copy is aside, the new one not renamed into place.
  data_path.rename(data_path.parent / f'.{data_path.name}.before_reprepare')
  assert _prepare_mars(tmp_path).is_prepared()
  assert _snapshot(tmp_path / 'data') == before


def test_release_deleted_after_preparing_is_used_with_a_warning(tmp_path, caplog):
  make_tree(tmp_path / 'manual')
  _prepare_mars(tmp_path)
  before = _snapshot(tmp_path / 'data')
  shutil.rmtree(tmp_path / 'manual')
  with caplog.at_level(logging.WARNING):
    builder = _prepare_mars(tmp_path)
  assert builder.is_prepared() and _snapshot(tmp_path / 'data') == before
  assert any('not there any more' in r.getMessage() for r in caplog.records)


def test_synthetic_copy_checked_against_its_generation_params(tmp_path):
  data_dir = str(tmp_path / 'data')
  builder = datasets.prepare('synthetic_video_reid', 'tiny', data_dir=data_dir)
  before = _snapshot(data_dir)
  datasets.prepare('synthetic_video_reid', 'tiny', data_dir=data_dir)  # unchanged: reused
  assert _snapshot(data_dir) == before
  meta_path = os.path.join(builder.data_path, 'metadata.json')
  with open(meta_path) as f:
    meta = json.load(f)
  meta['generation_params']['seed'] += 1  # as if prepared by a config object named 'tiny'
  with open(meta_path, 'w') as f:
    json.dump(meta, f)
  before = _snapshot(data_dir)
  with pytest.raises(ValueError, match="other generation_params than the builder config 'tiny'"):
    datasets.prepare('synthetic_video_reid', 'tiny', data_dir=data_dir)
  assert _snapshot(data_dir) == before
  rebuilt = datasets.prepare('synthetic_video_reid', 'tiny', data_dir=data_dir, reprepare=True)
  assert rebuilt.info.metadata['generation_params']['seed'] == 0


def test_pipeline_passes_reprepare_from_the_config(tmp_path):
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data_dir = str(tmp_path / 'data')
  data = pipeline.ReIDData(config)
  meta_path = os.path.join(data.builder.data_path, 'metadata.json')
  with open(meta_path) as f:
    meta = json.load(f)
  meta['generation_params']['num_junk'] += 1
  with open(meta_path, 'w') as f:
    json.dump(meta, f)
  with pytest.raises(ValueError, match='--config.reprepare=True'):
    pipeline.ReIDData(config)
  config.reprepare = True
  with pytest.raises(ValueError, match='reprepare=True'):  # only process 0 rebuilds
    pipeline.ReIDData(config, process_index=1, process_count=2)
  assert pipeline.ReIDData(config).index['gallery'].pid.size == data.index['gallery'].pid.size


def test_every_config_has_reprepare_off():
  names = [m.name for m in pkgutil.iter_modules(experiments.configs.__path__)]
  assert 'tiny' in names and 'synthetic_baseline' in names
  for name in names:
    module = importlib.import_module(f'experiments.configs.{name}')
    # (trsa_ablation holds helpers only; from_workdir reads a workdir's record)
    if hasattr(module, 'get_config') and name != 'from_workdir':
      assert module.get_config().reprepare is False, name


# --- folders of frames ------------------------------------------------------------------------


def test_tiff_named_png_in_a_folder_is_reported_by_path(tmp_path):
  folder = tmp_path / 'tracklet'
  folder.mkdir()
  Image.fromarray(np.zeros((8, 4, 3), np.uint8)).save(folder / '1.png', 'PNG')
  Image.fromarray(np.zeros((8, 4, 3), np.uint8)).save(folder / '2.png', 'TIFF')
  with Image.open(folder / '2.png') as image:  # PIL opens it: the check PIL made passed it
    image.load()
    assert image.format == 'TIFF'
  with pytest.raises(ValueError) as e:
    folders.FolderTracklets(None, str(tmp_path))
  message = str(e.value)
  assert message.startswith(f'{folder / "2.png"}: unreadable image'), message
  assert 'Unknown image file format' in message and 'convert, replace or remove' in message
