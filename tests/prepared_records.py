"""Test helpers: prepare a TFDS builder from a fabricated release tree, and read its records back raw."""

import pathlib

import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import release_files


def prepare(name: str, manual_dir, data_dir, config=None):
  """Prepares builder `name` (ArrayRecord) from `manual_dir`, as a user would with TFDS alone."""
  builder = tfds.builder_cls(name)(config=config, data_dir=str(data_dir),
                                  file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def raw_source(builder, split: str):
  """The split's serialized tf.train.Example records, by position."""
  return builder.as_data_source(split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)


def records(builder, split: str) -> list:
  """The split's records in tracklet order, as dicts: 'frames' the stored bytes of every
  frame, each other feature its one value (an int, or a str for text features).

  Parsed with tf.train.Example, not with the builder's own features, so a test compares
  what was stored with the release's files independently of the decoding code.
  """
  source = raw_source(builder, split)
  by_tracklet = {}
  for pos in range(len(source)):
    feature = tf.train.Example.FromString(source[pos]).features.feature
    record = {key: (feature[key].int64_list.value[0] if feature[key].int64_list.value
                    else feature[key].bytes_list.value[0].decode())
              for key in feature if key != 'frames'}
    record['frames'] = list(feature['frames'].bytes_list.value)
    by_tracklet[record['tracklet']] = record
  assert sorted(by_tracklet) == list(range(len(source))), 'tracklet ids are not 0..n-1'
  return [by_tracklet[i] for i in range(len(source))]


def expect_refusal(name: str, manual_dir, data_dir, exc, *fragments, config='split_0') -> str:
  """Preparing fails with `exc` whose message holds every fragment, and writes no file.

  Nothing prepared, nothing half-written: no file under <data_dir>/<name>/<config>/
  (TFDS keeps its own builder-level .config/metadata.json beside the configs).
  """
  with pytest.raises(exc) as info:
    prepare(name, manual_dir, data_dir, config)
  message = str(info.value)
  for fragment in fragments:
    assert str(fragment) in message, message
  config_dir = pathlib.Path(data_dir) / name / config
  leftovers = [p for p in config_dir.rglob('*') if p.is_file()] if config_dir.exists() else []
  assert not leftovers, leftovers
  return message


def refused_mid_preparation_then_prepared(name: str, manual_dir, data_dir, bad: pathlib.Path,
                                          broken: bytes, monkeypatch, *fragments):
  """Frame `bad`, holding `broken` bytes, stops preparation after the train split was written.

  Checks the refusal names what is wrong (`fragments`), that TFDS had already written
  records when it came and that nothing counts as prepared; then restores the frame and
  returns the builder prepared again from the same folders.
  """
  good = bad.read_bytes()
  bad.write_bytes(broken)
  written_before_failure = []
  real_read_frame = release_files.read_frame

  def spy(path, encoding_format):
    if pathlib.Path(path) == bad:  # what TFDS had written when the bad frame came
      written_before_failure.extend(p.name for p in pathlib.Path(data_dir).rglob('*.array_record*'))
    return real_read_frame(path, encoding_format)

  monkeypatch.setattr(release_files, 'read_frame', spy)
  expect_refusal(name, manual_dir, data_dir, ValueError, bad, *fragments)
  assert any('train' in n for n in written_before_failure), written_before_failure
  assert not tfds.builder_cls(name)(data_dir=str(data_dir)).is_prepared()
  bad.write_bytes(good)
  monkeypatch.undo()
  return prepare(name, manual_dir, data_dir)
