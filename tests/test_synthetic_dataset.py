"""Tests of the synthetic video re-ID dataset (TFDS builder, split plan, renderer)."""

import dataclasses
import io

import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

import data_pipelines.synthetic_video_reid  # pylint: disable=unused-import  # registers
from data_pipelines.synthetic_video_reid import canvas, generative_model, render
from data_pipelines.synthetic_video_reid import splits
from data_pipelines.synthetic_video_reid import Builder
from data_pipelines.synthetic_video_reid import SyntheticConfig

NAME = 'synthetic_video_reid'


class _RawJpeg(tfds.decode.SkipDecoding):
  """SkipDecoding for data sources.

  In TFDS 4.9.10 `tfds.decode.SkipDecoding` has no `decode_batch_example_np`, which
  `as_data_source` needs for a `Sequence` feature (AttributeError); this adds it.
  """

  def decode_batch_example_np(self, serialized_example):
    return serialized_example


def _tiny_config(**overrides):
  tiny = next(c for c in Builder.BUILDER_CONFIGS if c.name == 'tiny')
  return SyntheticConfig(name=f'tiny_custom_{len(overrides)}',
                         params=dataclasses.replace(tiny.params, **overrides))


def _read(builder, split):
  source = builder.as_data_source(split, decoders={'frames': _RawJpeg()})
  return [source[i] for i in range(len(source))]


@pytest.fixture(scope='module')
def prepared(tmp_path_factory):
  """The tiny config prepared twice (both file_format spellings) + another seed."""
  # Spelling 1: download_and_prepare(file_format=...).
  a = tfds.builder(f'{NAME}/tiny', data_dir=str(tmp_path_factory.mktemp('a')))
  a.download_and_prepare(file_format='array_record')
  # Spelling 2: the builder constructor's file_format.
  b = tfds.builder(f'{NAME}/tiny', data_dir=str(tmp_path_factory.mktemp('b')),
                   file_format='array_record')
  b.download_and_prepare()
  # A user-defined config (other seed), without editing code.
  c = tfds.builder(NAME, config=_tiny_config(seed=1),
                   data_dir=str(tmp_path_factory.mktemp('c')), file_format='array_record')
  c.download_and_prepare()
  return a, b, c


def test_registered():
  assert tfds.builder_cls(NAME) is Builder
  assert {c.name for c in Builder.BUILDER_CONFIGS} == {'default', 'tiny', 'full_size'}


def test_data_source_random_access(prepared):
  builder = prepared[0]
  assert builder.info.file_format == tfds.core.FileFormat.ARRAY_RECORD
  tiny = builder.builder_config
  source = builder.as_data_source('train', decoders={'frames': _RawJpeg()})
  assert len(source) == builder.info.splits['train'].num_examples > 0
  for i in (len(source) - 1, 0, len(source) // 2):  # out of order on purpose
    ex = source[i]
    assert ex['tracklet'] == i
    assert len(ex['frames']) == ex['num_frames']
    assert tiny.params.min_len <= ex['num_frames'] <= tiny.params.max_len
    for f in ex['frames']:
      assert isinstance(f, bytes) and f[:2] == b'\xff\xd8'  # JPEG SOI marker
    frame = np.asarray(Image.open(io.BytesIO(ex['frames'][0])))
    assert frame.shape == (tiny.params.height, tiny.params.width, 3) and frame.dtype == np.uint8
  # Default decoding gives uint8 frames.
  decoded = builder.as_data_source('query')[0]
  assert np.asarray(decoded['frames'][0]).shape == (tiny.params.height, tiny.params.width, 3)


def test_determinism(prepared):
  a, b, c = prepared
  for split in splits.SPLITS:
    ea, eb, ec = _read(a, split), _read(b, split), _read(c, split)
    assert len(ea) == len(eb) > 0
    for x, y in zip(ea, eb):
      assert [bytes(f) for f in x['frames']] == [bytes(f) for f in y['frames']]
      for key in ('pid', 'camid', 'tracklet', 'num_frames', 'gait_twin'):
        assert x[key] == y[key]
    # Another seed: other frames.
    for x, y in zip(ea[:3], ec[:3]):
      assert bytes(x['frames'][0]) != bytes(y['frames'][0])


def test_dataset_matches_plan(prepared):
  builder = prepared[0]
  plan = splits.make_split_plan(builder.builder_config.params)
  for split in splits.SPLITS:
    examples = _read(builder, split)
    assert len(examples) == len(plan.splits[split])
    for ex, spec in zip(examples, plan.splits[split]):
      assert (ex['pid'], ex['camid'], ex['tracklet'], ex['num_frames'], ex['gait_twin']) == (
          spec.pid, spec.camid, spec.tracklet, spec.num_frames, spec.gait_twin)


def test_split_counts_by_hand():
  # 2 cameras, one tracklet per camera: every identity is in both cameras; a test
  # identity has its anchor camera (gallery) and 2 // 2 = 1 query camera.
  p = splits.GenerationParams(num_train_ids=4, num_test_ids=5, num_cameras=2,
                              num_distractors=3, num_junk=2, max_tracklets_per_camera=1,
                              min_len=5, max_len=5, seed=3)
  plan = splits.make_split_plan(p)
  tr, q, g = (plan.splits[s] for s in splits.SPLITS)
  assert len(tr) == 4 * 2 and sum(s.num_frames for s in tr) == 40
  assert len(q) == 5 and sum(s.num_frames for s in q) == 25
  assert len(g) == 5 + 3 + 2 and sum(s.num_frames for s in g) == 50
  assert sorted({s.pid for s in tr}) == [1, 2, 3, 4]
  assert sorted({s.pid for s in q}) == [5, 6, 7, 8, 9]
  assert sorted(s.pid for s in g) == [-1, -1, 0, 0, 0, 5, 6, 7, 8, 9]
  for s in q:  # the gallery tracklet of the same pid is in the other camera
    (match,) = [x for x in g if x.pid == s.pid]
    assert match.camid != s.camid
  assert plan.stats()['query']['with_cross_camera_match'] == 5
  # 3 cameras, all identities in all of them, one tracklet each: 3 // 2 = 1 query.
  p = dataclasses.replace(p, num_cameras=3, min_cameras_per_id=3)
  plan = splits.make_split_plan(p)
  tr, q, g = (plan.splits[s] for s in splits.SPLITS)
  assert (len(tr), len(q), len(g)) == (4 * 3, 5, 5 * 2 + 3 + 2)
  assert all(sorted(x.camid for x in tr if x.pid == pid) == [0, 1, 2] for pid in range(1, 5))
  # Twin pairs: round(0.5 * 4 / 2) = 1 among the train ids, round(0.5 * 5 / 2) = 1 among
  # the test ids; the train pair has 2 identities x 3 tracklets.
  plan = splits.make_split_plan(dataclasses.replace(p, twin_fraction=0.5))
  assert len(plan.twin_pairs) == 2
  assert sum(s.gait_twin for s in plan.splits['train']) == 2 * 3


def test_split_statistics(prepared):
  builder = prepared[0]
  cfg = builder.builder_config.params
  tr, q, g = (_read(builder, s) for s in splits.SPLITS)
  train_pids = {int(e['pid']) for e in tr}
  test_pids = {int(e['pid']) for e in q + g if e['pid'] > 0}
  assert len(train_pids) == cfg.num_train_ids and len(test_pids) == cfg.num_test_ids
  assert train_pids.isdisjoint(test_pids) and min(train_pids) > 0
  assert all(e['pid'] != 0 for e in tr + q) and all(e['pid'] != -1 for e in tr + q)
  assert sum(e['pid'] == 0 for e in g) == cfg.num_distractors
  assert sum(e['pid'] == -1 for e in g) == cfg.num_junk
  cams = {}
  for e in tr + q + g:
    assert 0 <= e['camid'] < cfg.num_cameras
    cams.setdefault(int(e['pid']), set()).add(int(e['camid']))
  assert all(len(cams[pid]) >= 2 for pid in train_pids | test_pids)
  for split in (tr, q, g):
    assert [int(e['tracklet']) for e in split] == list(range(len(split)))

  # Expected query / gallery counts from the per-identity camera assignment and
  # the documented rule (not from the code that builds the lists).
  plan = splits.make_split_plan(cfg)
  exp_q = exp_g = exp_valid = 0
  for i in plan.test_identities:
    a = plan.assignments[i]
    k = len(a.cameras)
    assert 2 <= k <= cfg.num_cameras and len(a.query_cameras) == k // 2
    assert a.anchor not in a.query_cameras
    count = dict(zip(a.cameras, a.counts))
    anchor_query = count[a.anchor] >= 2
    queries = k // 2 + anchor_query
    exp_q += queries
    exp_g += sum(a.counts) - queries
    exp_valid += k // 2
    if anchor_query and (k >= 3 or any(count[c] >= 2 for c in a.query_cameras)):
      exp_valid += 1
  assert len(q) == exp_q
  assert len(g) == exp_g + cfg.num_distractors + cfg.num_junk
  gallery_cams = {}
  for e in g:
    gallery_cams.setdefault(int(e['pid']), set()).add(int(e['camid']))
  valid = sum(bool(gallery_cams.get(int(e['pid']), set()) - {int(e['camid'])}) for e in q)
  assert valid == exp_valid == plan.stats()['query']['with_cross_camera_match']
  assert valid >= 0.8 * len(q)  # most queries have a cross-camera match


def test_default_plan_sizes():
  plan = splits.make_split_plan(splits.GenerationParams())
  stats = plan.stats()
  assert stats['train']['ids'] == 150 and stats['query']['ids'] == 100
  assert stats['gallery']['distractors'] == 60 and stats['gallery']['junk'] == 20
  assert len(plan.twin_pairs) == 15 + 10
  assert stats['query']['with_cross_camera_match'] >= 0.9 * stats['query']['tracklets']


def test_gait_twins(prepared):
  builder = prepared[0]
  plan = splits.make_split_plan(builder.builder_config.params)
  assert plan.twin_pairs
  twin_pids = {int(e['pid']) for s in splits.SPLITS for e in _read(builder, s)
               if e['gait_twin']}
  assert twin_pids == {i + 1 for pair in plan.twin_pairs for i in pair}
  for a_idx, b_idx in plan.twin_pairs:
    a = splits.identity_params(plan, a_idx)
    b = splits.identity_params(plan, b_idx)
    assert a.appearance == b.appearance
    ratio = max(a.gait.frequency, b.gait.frequency) / min(a.gait.frequency, b.gait.frequency)
    assert ratio >= 1.4
    assert abs(a.gait.stride - b.gait.stride) >= 0.15 - 1e-3
    assert abs(a.gait.arm_swing - b.gait.arm_swing) >= 0.3 - 1e-3
  # Same camera, rng, phase and direction: the twins' renders differ only through
  # the gait (A with B's gait renders exactly as B).
  a_idx, b_idx = plan.twin_pairs[0]
  a, b = splits.identity_params(plan, a_idx), splits.identity_params(plan, b_idx)
  cam = splits.camera_params(plan.params, 0)

  def draw(identity):
    return render.render_tracklet(identity, cam, 12, np.random.default_rng(7), 64, 32,
                                  phase0=0.5, facing=1)

  ra, rb = draw(a), draw(b)
  assert not np.array_equal(ra, rb)
  np.testing.assert_array_equal(draw(generative_model.Identity(a.appearance, b.gait)), rb)


def test_render_shapes_and_determinism():
  rng = np.random.default_rng(0)
  ident, cam = generative_model.sample_identity(rng), generative_model.sample_camera(rng)
  for h, w in ((64, 32), (128, 64), (32, 16)):
    x = render.render_tracklet(ident, cam, 5, np.random.default_rng(1), h, w)
    y = render.render_tracklet(ident, cam, 5, np.random.default_rng(1), h, w)
    assert x.shape == (5, h, w, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(x, y)
    assert x.std() > 5  # not blank
  junk = render.render_tracklet(ident, cam, 3, np.random.default_rng(1), junk=True)
  assert junk.shape == (3, 64, 32, 3)
  jpeg = render.encode_jpeg(x)
  assert jpeg == render.encode_jpeg(y) and all(j[:2] == b'\xff\xd8' for j in jpeg)


def test_pose_is_periodic_and_grounded():
  ident = generative_model.sample_identity(np.random.default_rng(5))
  g = ident.gait
  period = 1.0 / g.frequency
  phase = 2 * np.pi * g.frequency * np.array([0.0, period, 0.3 * period])
  p = canvas.pose(ident.appearance, g, phase)
  np.testing.assert_allclose(p['ankle_n'][0], p['ankle_n'][1], atol=1e-9)
  lowest = np.maximum(p['ankle_n'][:, 1], p['ankle_f'][:, 1])
  np.testing.assert_allclose(lowest, lowest[0], atol=1e-9)  # a foot on the ground
