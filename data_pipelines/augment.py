"""Clip-consistent augmentation in TensorFlow: one random draw per clip, applied
to every frame, so motion between frames is not destroyed (torchreid flips
frames independently: ``VideoDataset.__getitem__`` in
torchreid/data/datasets/dataset.py, KaiyangZhou/deep-person-reid).

All randomness is stateless and seeded by the batch plan, so augmentation is a
pure function of (seed, step) like the rest of the batch. Frames stay uint8;
normalization happens on device.
"""

import tensorflow as tf

# Random erasing fills with the ImageNet mean colour: zero after normalization.
_MEAN_RGB = (124, 116, 104)


def _seed(seed, i):
  return tf.random.experimental.stateless_fold_in(seed, i)


def resize_clip(frames, height: int, width: int):
  """(T, h, w, 3) uint8 -> (T, height, width, 3) uint8, bilinear, skipped when equal."""
  shape = tf.shape(frames)
  def resize():
    x = tf.image.resize(tf.cast(frames, tf.float32), (height, width), antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
  out = tf.cond(tf.logical_and(tf.equal(shape[1], height), tf.equal(shape[2], width)),
                lambda: frames, resize)
  return tf.ensure_shape(out, [None, height, width, 3])


def random_flip(frames, seed):
  """Horizontal flip of the whole clip with probability 1/2."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)


def pad_and_crop(frames, seed, pad: int):
  """Zero-pad every frame by `pad` pixels, then crop back at one random offset."""
  if not pad:
    return frames
  height, width = frames.shape[1], frames.shape[2]
  padded = tf.pad(frames, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
  offset = tf.random.stateless_uniform([2], seed, 0, 2 * pad + 1, dtype=tf.int32)
  cropped = padded[:, offset[0]:offset[0] + height, offset[1]:offset[1] + width, :]
  return tf.ensure_shape(cropped, frames.shape)


def random_erasing(frames, seed, probability: float, area=(0.02, 0.4), aspect=(0.3, 3.3)):
  """Random erasing (Zhong et al. 2020): the same rectangle in every frame."""
  if not probability:
    return frames
  height, width = frames.shape[1], frames.shape[2]
  u = tf.random.stateless_uniform([5], seed)
  target = (area[0] + u[0] * (area[1] - area[0])) * height * width
  log_ratio = tf.math.log(aspect[0]) + u[1] * (tf.math.log(aspect[1]) - tf.math.log(aspect[0]))
  ratio = tf.exp(log_ratio)
  h = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(target * ratio)), tf.int32), 1, height)
  w = tf.clip_by_value(tf.cast(tf.round(tf.sqrt(target / ratio)), tf.int32), 1, width)
  top = tf.cast(u[2] * tf.cast(height - h + 1, tf.float32), tf.int32)
  left = tf.cast(u[3] * tf.cast(width - w + 1, tf.float32), tf.int32)
  rows = tf.range(height)[:, None]
  cols = tf.range(width)[None, :]
  inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)  # (H, W)
  inside = tf.logical_and(inside, u[4] < probability)[None, :, :, None]
  fill = tf.constant(_MEAN_RGB, tf.uint8)[None, None, None, :]
  return tf.where(inside, fill, frames)


def color_jitter(frames, seed, brightness: float = 0.0, contrast: float = 0.0,
                 saturation: float = 0.0, hue: float = 0.0):
  """torchvision's ColorJitter with one draw per clip, in a fixed order
  (brightness, contrast, saturation, hue; torchvision shuffles the order).

  Factors are uniform in [1 - x, 1 + x] (hue: a shift uniform in [-hue, hue]
  of the hue circle, hue <= 0.5). Brightness scales the pixels; contrast
  blends each frame with the mean of its grey levels; saturation blends with
  the grey image.
  """
  if not (brightness or contrast or saturation or hue):
    return frames
  u = tf.random.stateless_uniform([4], seed, -1.0, 1.0)
  x = tf.cast(frames, tf.float32) / 255.0  # (T, H, W, 3)
  if brightness:
    x = tf.clip_by_value(x * (1.0 + brightness * u[0]), 0.0, 1.0)
  if contrast:
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(x), axis=[1, 2, 3], keepdims=True)
    x = tf.clip_by_value(mean + (x - mean) * (1.0 + contrast * u[1]), 0.0, 1.0)
  if saturation:
    x = tf.clip_by_value(tf.image.adjust_saturation(x, 1.0 + saturation * u[2]), 0.0, 1.0)
  if hue:
    x = tf.image.adjust_hue(x, hue * u[3])
  return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


def augment_clip(frames, seed, *, flip: bool, pad: int, erasing: float,
                 jitter=None):
  """Applies the configured augmentations to a (T, H, W, 3) uint8 clip.

  `jitter` is None or {'brightness', 'contrast', 'saturation', 'hue'}.
  """
  if flip:
    frames = random_flip(frames, _seed(seed, 0))
  frames = pad_and_crop(frames, _seed(seed, 1), pad)
  if jitter:
    frames = color_jitter(frames, _seed(seed, 3), **jitter)
  frames = random_erasing(frames, _seed(seed, 2), erasing)
  return frames


def flip_flow(flow, seed):
  """`random_flip` of a (T, H, W, 2) flow clip with the same draw: mirrored
  along W with the horizontal component dx negated (motion to the right
  becomes motion to the left)."""
  flip = tf.random.stateless_uniform([], seed) < 0.5
  return tf.cond(flip, lambda: tf.reverse(flow, axis=[2]) * tf.constant([-1.0, 1.0], flow.dtype),
                 lambda: flow)


def augment_flow(flow, seed, *, flip: bool, pad: int):
  """The geometric part of `augment_clip` (flip, pad + crop) applied to the
  clip's (T, H, W, 2) float32 optical flow with the frames' own draws (same
  `seed`), so flow stays aligned with its frames; zero padding is zero motion.
  Colour jitter and random erasing do not touch flow, which is computed on the
  clean frames before them."""
  if flip:
    flow = flip_flow(flow, _seed(seed, 0))
  return pad_and_crop(flow, _seed(seed, 1), pad)
