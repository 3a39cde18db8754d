"""Optical flow for CRF: Farneback recovers known translations of a textured
image; mirroring a clip mirrors its flow and negates dx; the pipeline's flow is
the flow of the stored frames, flipped and shifted exactly with them."""

import numpy as np
import pytest
import tensorflow as tf
from scipy import ndimage

from data_pipelines import augment, datasets, optical_flow, pipeline


def _texture(height=64, width=48, margin=16, seed=0):
  """A smooth random texture (float, 0..255) larger than the frame by `margin`."""
  rng = np.random.default_rng(seed)
  big = ndimage.gaussian_filter(rng.random((height + 2 * margin, width + 2 * margin)), 1.5)
  return 255.0 * (big - big.min()) / (big.max() - big.min())


def _frame(texture, dx, dy, height=64, width=48, margin=16):
  """The texture moved by (dx, dy) pixels (spline interpolation), cropped, as
  an RGB uint8 frame: frame(x + dx, y + dy) = texture(x, y)."""
  moved = ndimage.shift(texture, (dy, dx), order=3, mode='reflect')
  grey = np.clip(np.round(moved[margin:margin + height, margin:margin + width]), 0, 255)
  return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)


@pytest.mark.parametrize('dx, dy', [(2.0, 0.0), (0.0, -1.0), (-3.0, 2.0), (1.5, 0.5),
                                    (-0.25, 0.75)])
def test_recovers_integer_and_subpixel_translations(dx, dy):
  texture = _texture()
  flow = optical_flow.pair_flow(_frame(texture, 0, 0), _frame(texture, dx, dy))
  assert flow.shape == (64, 48, 2) and flow.dtype == np.float32
  interior = flow[8:-8, 8:-8].reshape(-1, 2)  # away from the borders
  np.testing.assert_allclose(np.median(interior, axis=0), [dx, dy], atol=0.1)
  # Every interior pixel within a pixel of the truth.
  assert np.abs(interior - [dx, dy]).max() < 1.0


def test_clip_flow_pairs_each_frame_with_the_next_and_repeats_the_last():
  texture = _texture()
  steps = [(0, 0), (1, 0), (1, 1), (3, 1)]  # positions: moves (1, 0), (0, 1), (2, 0)
  clip = np.stack([_frame(texture, x, y) for x, y in steps])
  flow = optical_flow.clip_flow(clip)
  medians = np.median(flow[:, 8:-8, 8:-8].reshape(4, -1, 2), axis=1)
  np.testing.assert_allclose(medians, [[1, 0], [0, 1], [2, 0], [2, 0]], atol=0.1)
  np.testing.assert_array_equal(flow[3], flow[2])


def test_partner_frames():
  first, second = optical_flow.partner_frames(5, np.array([0, 3, 4, 4, 2]))
  assert first.tolist() == [0, 3, 3, 3, 2] and second.tolist() == [1, 4, 4, 4, 3]
  first, second = optical_flow.partner_frames(1, np.array([0, 0]))
  assert first.tolist() == second.tolist() == [0, 0]
  still = np.zeros((2, 8, 8, 3), np.uint8)
  assert not optical_flow.flow_between(still, still).any()


def test_flow_of_mirrored_clip_is_mirrored_with_dx_negated():
  texture = _texture()
  clip = np.stack([_frame(texture, 0, 0), _frame(texture, 1.5, -0.5)])
  flow = optical_flow.clip_flow(clip)[0]
  mirrored = optical_flow.clip_flow(clip[:, :, ::-1])[0]
  expected = flow[:, ::-1] * np.array([-1.0, 1.0], np.float32)
  np.testing.assert_allclose(mirrored[8:-8, 8:-8], expected[8:-8, 8:-8], atol=0.05)
  np.testing.assert_allclose(np.median(mirrored[8:-8, 8:-8].reshape(-1, 2), axis=0),
                             [-1.5, -0.5], atol=0.1)


@pytest.mark.parametrize('seed', [(1, 2), (3, 4), (5, 6), (7, 8)])
def test_augmented_flow_is_flipped_and_shifted_exactly_with_its_frames(seed):
  """Flow whose channels are copies of two colour channels must come out of
  the augmentation equal to them (dx negated when the clip was flipped)."""
  rng = np.random.default_rng(0)
  frames = rng.integers(1, 256, (3, 12, 8, 3)).astype(np.uint8)
  flow = frames[..., :2].astype(np.float32)
  seed = tf.constant(seed, tf.int32)
  out_frames = augment.augment_clip(tf.constant(frames), seed, flip=True, pad=2, erasing=0.0)
  out_flow = augment.augment_flow(tf.constant(flow), seed, flip=True, pad=2).numpy()
  out_frames = out_frames.numpy().astype(np.float32)
  flipped = bool(tf.random.stateless_uniform([], augment._seed(seed, 0)) < 0.5)
  sign = -1.0 if flipped else 1.0
  np.testing.assert_array_equal(out_flow[..., 0], sign * out_frames[..., 0])
  np.testing.assert_array_equal(out_flow[..., 1], out_frames[..., 1])
  # Without the shift, a flipped clip's flow is exactly the mirrored, negated flow.
  no_pad = augment.augment_flow(tf.constant(flow), seed, flip=True, pad=0).numpy()
  expected = flow[:, :, ::-1] * np.array([-1.0, 1.0], np.float32) if flipped else flow
  np.testing.assert_array_equal(no_pad, expected)


@pytest.fixture(scope='module')
def flow_config(tiny_data_dir):
  from experiments.configs import tiny
  config = tiny.get_config()
  config.data_dir = tiny_data_dir
  config.use_flow = True
  config.train_sampler = 'restricted'  # non-consecutive frames: pairs come from storage
  config.augment.pad, config.augment.random_erasing = 0, 0.0
  return config


def test_pipeline_flow_is_the_flow_of_the_stored_frames(flow_config):
  config = flow_config.copy_and_resolve_references()
  config.augment.flip = False
  data = pipeline.ReIDData(config)
  batch = next(data.train_batches(1))
  plan = data.plan(1)
  assert batch['flow'].shape == batch['frames'].shape[:4] + (2,)
  assert batch['flow'].dtype == np.float32
  stored = datasets.get_builder('synthetic_video_reid', 'tiny', config.data_dir
                                ).as_data_source('train')
  for row in (0, 5):
    t = plan.tracklets[row]
    example = stored[int(data.index['train'].position[t])]
    frames = np.asarray(example['frames'])  # stored 64 x 32 = the network size here
    first, second = optical_flow.partner_frames(len(frames), plan.frames[row])
    np.testing.assert_array_equal(batch['frames'][row], frames[plan.frames[row]])
    np.testing.assert_allclose(batch['flow'][row],
                               optical_flow.flow_between(frames[first], frames[second]),
                               atol=1e-5)


def test_pipeline_flips_flow_with_the_frames(flow_config):
  plain_config = flow_config.copy_and_resolve_references()
  plain_config.augment.flip = False
  plain = next(pipeline.ReIDData(plain_config).train_batches(2))
  flipped = next(pipeline.ReIDData(flow_config).train_batches(2))
  mirrored_flow = plain['flow'][:, :, :, ::-1] * np.array([-1.0, 1.0], np.float32)
  seen = set()
  for row in range(len(plain['pid'])):
    was_flipped = np.array_equal(flipped['frames'][row], plain['frames'][row][:, :, ::-1])
    seen.add(was_flipped)
    expected = mirrored_flow[row] if was_flipped else plain['flow'][row]
    np.testing.assert_array_equal(flipped['flow'][row], expected)
  assert seen == {True, False}  # both cases occurred


def test_eval_batches_carry_flow(flow_config):
  data = pipeline.ReIDData(flow_config)
  batch = next(data.eval_batches('query'))
  assert batch['flow'].shape == batch['frames'].shape[:4] + (2,)
  assert not batch['flow'][~batch['mask']].any()  # padding rows are zero
