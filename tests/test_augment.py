"""Clip-consistent augmentation: one draw per clip, the same on every frame,
reproducible from the seed."""

import numpy as np
import pytest
import tensorflow as tf

from data_pipelines import augment


def _clip(t=3, h=8, w=6, seed=0):
  rng = np.random.default_rng(seed)
  base = rng.integers(20, 200, (h, w, 3))
  # Frame k = base + 10 k: frames differ, but by a constant.
  return np.stack([base + 10 * k for k in range(t)]).astype(np.uint8)


def _frames_differ_by_constant(out):
  diffs = out.astype(int) - out[:1].astype(int)
  return all(np.unique(d).size == 1 for d in diffs)


@pytest.mark.parametrize('seed', range(6))
def test_flip_crop_erase_are_the_same_on_every_frame(seed):
  clip = _clip()
  out = augment.augment_clip(tf.constant(clip), tf.constant([seed, 7]), flip=True, pad=2,
                             erasing=1.0).numpy()
  assert out.shape == clip.shape
  # Flip and crop move every frame the same way; where the erased box and the
  # padding are, every frame holds the same fill.
  fill = np.all(out == out[:1], axis=(0, 3))  # (H, W): pixels equal in all frames
  moving = out[:, ~fill].astype(int)  # (T, N, 3)
  assert (moving - moving[:1] == (np.arange(3) * 10)[:, None, None]).all()
  assert fill.any()  # erasing with probability 1 left a box (or padding)


def test_flip_is_all_or_nothing_and_reproducible():
  clip = _clip()
  outs = [augment.random_flip(tf.constant(clip), tf.constant([s, 1])).numpy() for s in range(8)]
  for out in outs:
    assert np.array_equal(out, clip) or np.array_equal(out, clip[:, :, ::-1])
  assert any(np.array_equal(o, clip) for o in outs) and not all(
      np.array_equal(o, clip) for o in outs)
  again = augment.random_flip(tf.constant(clip), tf.constant([3, 1])).numpy()
  np.testing.assert_array_equal(again, outs[3])


def test_color_jitter_one_draw_per_clip():
  frame = _clip(t=1)[0]
  clip = np.stack([frame] * 4)
  out = augment.color_jitter(tf.constant(clip), tf.constant([5, 5]), 0.4, 0.4, 0.4, 0.1).numpy()
  assert (out == out[:1]).all() and not np.array_equal(out, clip)


def test_brightness_scales_pixels():
  clip = np.full((2, 4, 4, 3), 100, np.uint8)
  seed = tf.constant([1, 2])
  factor = 1.0 + 0.5 * tf.random.stateless_uniform([4], seed, -1.0, 1.0).numpy()[0]
  out = augment.color_jitter(tf.constant(clip), seed, brightness=0.5).numpy()
  np.testing.assert_array_equal(out, np.round(np.clip(100 / 255 * factor, 0, 1) * 255))


def test_no_jitter_is_identity():
  clip = _clip()
  np.testing.assert_array_equal(augment.color_jitter(tf.constant(clip), tf.constant([0, 0])), clip)
