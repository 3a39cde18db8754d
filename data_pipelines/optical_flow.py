"""Dense optical flow of clips, for CRF's motion channels ([CRF] section 2.1;
keys in docs/references.md).

CRF takes McLaughlin et al.'s input: colour frames plus two optical-flow
channels. McLaughlin computed them offline with MATLAB's
``vision.OpticalFlow('Lucas-Kanade')`` on grey frames (computeOpticalFlow.m in
niallmcl/Recurrent-Convolutional-Video-ReID). MATLAB is not available here and
OpenCV has no dense Lucas-Kanade (``calcOpticalFlowPyrLK`` tracks sparse
points) and, in opencv-python-headless, no TV-L1 (that lives in the contrib
``optflow`` module). We use Farneback's dense method
(``cv2.calcOpticalFlowFarneback``): like Lucas-Kanade it is a local,
gradient-type estimate (a quadratic polynomial fitted in a window around each
pixel, instead of a linear one), dense, sub-pixel, and it runs at thousands of
64 x 48 frame pairs per second on one core, fast enough to compute inside
tf.data for every sampled clip instead of storing flow next to the frames.
DIS (``cv2.DISOpticalFlow``) is faster still but less accurate on sub-pixel
motion of the small crops re-ID uses (tests/test_optical_flow.py measures the
translations Farneback recovers).

Conventions:
  * ``flow[t]`` is the motion from stored frame i to frame i + 1, where i is
    the frame at clip position t, in pixels of the frames it was computed on,
    as (dx, dy): ``next[y + dy, x + dx] ~ prev[y, x]`` (OpenCV's convention).
  * A tracklet's last frame has no next frame; it repeats the flow of the pair
    before it (frames n-2 -> n-1). McLaughlin's script runs MATLAB's flow
    object forward over the sequence, so there frame t gets the flow of
    (t-1 -> t) and the *first* frame is the odd one out (it is compared with
    the object's initial reference); here the forward convention of the
    issue, and the odd frame, the last, gets its neighbour's estimate rather
    than a made-up zero field. One-frame tracklets get zero flow.
  * Computed on grey frames (``cv2.COLOR_RGB2GRAY``: 0.299 R + 0.587 G +
    0.114 B, MATLAB's ``rgb2gray`` weights), on the frames resized to the
    network input and before any augmentation; the pipeline then flips and
    crops frames and flow together (``augment.augment_flow``).

What McLaughlin does to flow before it reaches the network (for the record;
the model's ``normalization='mclaughlin'`` reproduces the last two steps):
each component + 127, clipped to [0, 255], written as the R (vertical: MATLAB's
``imag``) and G (horizontal: ``real``) channels of an 8-bit PNG, so flow is
rounded to whole pixels and clipped at +-127; loaded back as value / 255,
resized to 64 x 48 (values not rescaled); per frame and channel
``(x - mean) / sqrt(std)`` (the 4th root of the variance); after the random
crop, the frame's mean over all 5 channels subtracted. Here flow stays float
pixels (no rounding, no clipping) and the model normalizes it on device.
"""

import cv2
import numpy as np

# Farneback's parameters for person crops of 32..256 pixels: a 0.5 pyramid of
# 3 levels (motion of a few pixels at 64 x 32 is then under a pixel at the
# top), a 9-pixel averaging window, 3 iterations, polynomial neighbourhood 5
# with sigma 1.1 (OpenCV's recommended pair).
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=9, iterations=3, poly_n=5,
                 poly_sigma=1.1, flags=0)


def to_gray(frame: np.ndarray) -> np.ndarray:
  """(H, W, 3) uint8 RGB -> (H, W) uint8 grey."""
  return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def pair_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
  """Dense flow from `prev` to `nxt`, (H, W, 2) float32 (dx, dy) in pixels.

  Args:
    prev, nxt: (H, W, 3) uint8 RGB or (H, W) uint8 grey frames.
  """
  if prev.ndim == 3:
    prev, nxt = to_gray(prev), to_gray(nxt)
  return cv2.calcOpticalFlowFarneback(prev, nxt, None, **FARNEBACK).astype(np.float32)


def flow_between(first: np.ndarray, second: np.ndarray) -> np.ndarray:
  """Flow of each frame pair: (T, H, W, 3) uint8 twice -> (T, H, W, 2) float32.

  Pairs of identical frames (a one-frame tracklet) get exactly zero flow.
  """
  first, second = np.asarray(first), np.asarray(second)
  out = np.zeros(first.shape[:3] + (2,), np.float32)
  for t in range(len(first)):
    if not np.array_equal(first[t], second[t]):
      out[t] = pair_flow(first[t], second[t])
  return out


def partner_frames(num_frames: int, frames: np.ndarray):
  """The stored frame pair whose flow each clip frame gets.

  Frame i of an n-frame tracklet gets the flow (i -> i + 1); the last frame
  repeats the one before (n-2 -> n-1); a one-frame tracklet pairs frame 0 with
  itself (zero flow).

  Args:
    num_frames: n, frames in the tracklet.
    frames: (T,) frame indices of the clip.
  Returns:
    (first, second), (T,) int64 frame indices each.
  """
  n = int(num_frames)
  frames = np.asarray(frames, np.int64)
  if n == 1:
    return np.zeros_like(frames), np.zeros_like(frames)
  first = np.minimum(frames, n - 2)
  return first, first + 1


def clip_flow(frames: np.ndarray) -> np.ndarray:
  """Flow of a clip of consecutive frames, (T, H, W, 3) uint8 -> (T, H, W, 2):
  frame t gets (t -> t + 1), the last frame repeats (T-2 -> T-1)."""
  first, second = partner_frames(len(frames), np.arange(len(frames)))
  frames = np.asarray(frames)
  return flow_between(frames[first], frames[second])
