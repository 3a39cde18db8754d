"""Drawing primitives of the synthetic renderer: the walking pose, capsules, scenes, blurs.

Pure NumPy. ``pose`` gives joint positions over gait phases; ``Canvas``
composites antialiased capsules (distance fields on the pixel grid of all
frames at once) back to front; ``scene_strip`` draws a camera's scene; the
blurs model motion blur and defocus.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from data_pipelines.synthetic_video_reid.generative_model import Appearance, Camera, Gait

# ---------------------------------------------------------------------------
# Pose.
# ---------------------------------------------------------------------------


def pose(appearance: Appearance, gait: Gait, phase: np.ndarray) -> dict[str, np.ndarray]:
  """Joint positions for gait phases ``phase`` (T,), in body units.

  Body units: the standing person is 1 tall, x points in the walking direction,
  y points down, y = 0 is the top of the head and the lower foot is at y = 1.
  Returns a dict of (T, 2) arrays plus scalar radii (body units).
  """
  a, g = appearance, gait
  phase = np.asarray(phase, np.float64)
  head_r = 0.062 * a.head_size
  leg_len = 0.47 * a.leg_ratio
  foot_h = 0.022
  hip_y0 = 1.0 - foot_h - leg_len
  thigh = shin = leg_len / 2
  shoulder_y0 = 2 * head_r + 0.035
  torso_len = hip_y0 - shoulder_y0
  upper_arm = 0.165 * (0.5 + 0.5 * a.leg_ratio)
  fore_arm = 0.155 * (0.5 + 0.5 * a.leg_ratio)

  def leg(ph):
    theta = g.stride * np.sin(ph)
    flex = g.knee_flex * np.maximum(np.cos(ph), 0.0)
    knee = np.stack([thigh * np.sin(theta), thigh * np.cos(theta)], -1)
    shin_angle = theta - flex
    ankle = knee + np.stack([shin * np.sin(shin_angle), shin * np.cos(shin_angle)], -1)
    return knee, ankle

  knee_n, ankle_n = leg(phase)
  knee_f, ankle_f = leg(phase + np.pi)
  # Vertical bob: the lower foot touches the ground.
  drop = leg_len - np.maximum(ankle_n[:, 1], ankle_f[:, 1])
  hip = np.stack([np.zeros_like(phase), hip_y0 + drop], -1)
  lean = np.stack([np.full_like(phase, np.sin(g.lean)), np.full_like(phase, -np.cos(g.lean))], -1)
  shoulder = hip + torso_len * lean
  neck = shoulder + 0.02 * lean
  head = neck + (head_r + 0.012) * lean

  def arm(ph):
    alpha = -g.arm_swing * np.sin(ph)
    elbow = np.stack([upper_arm * np.sin(alpha), upper_arm * np.cos(alpha)], -1)
    fa = alpha + g.elbow_bend + 0.6 * np.maximum(alpha, 0.0)
    wrist = elbow + np.stack([fore_arm * np.sin(fa), fore_arm * np.cos(fa)], -1)
    return elbow, wrist

  arm_root = shoulder + np.array([0.0, 0.025])
  elbow_n, wrist_n = arm(phase)
  elbow_f, wrist_f = arm(phase + np.pi)
  foot = np.array([0.07, 0.0])
  return dict(
      head=head, neck=neck, shoulder=shoulder, hip=hip, arm_root=arm_root,
      knee_n=hip + knee_n, ankle_n=hip + ankle_n, toe_n=hip + ankle_n + foot,
      knee_f=hip + knee_f, ankle_f=hip + ankle_f, toe_f=hip + ankle_f + foot,
      elbow_n=arm_root + elbow_n, wrist_n=arm_root + elbow_n + wrist_n,
      elbow_f=arm_root + elbow_f, wrist_f=arm_root + elbow_f + wrist_f,
      head_r=np.float64(head_r), torso_r=np.float64(0.088 * a.girth),
      leg_r=np.float64(0.042 * a.limb_width), arm_r=np.float64(0.030 * a.limb_width),
  )


# ---------------------------------------------------------------------------
# Rasterisation.
# ---------------------------------------------------------------------------


class Canvas:
  """(T, H, W, 3) float32 image with capsule compositing restricted to a row band."""

  def __init__(self, background: np.ndarray):
    self.img = background
    t, h, w, _ = background.shape
    self.h, self.w = h, w
    self.gy = (np.arange(h, dtype=np.float32) + 0.5)[None, :, None]
    self.gx = (np.arange(w, dtype=np.float32) + 0.5)[None, None, :]

  def _rows(self, ys: Sequence[np.ndarray], r: float) -> tuple[int, int]:
    lo = min(float(np.min(y)) for y in ys) - r - 1.0
    hi = max(float(np.max(y)) for y in ys) + r + 1.0
    return max(int(math.floor(lo)), 0), min(int(math.ceil(hi)), self.h)

  def capsule(self, a: np.ndarray, b: np.ndarray, r: float):
    """Coverage, axial position t in [0, 1] and signed normal offset / r.

    a, b: (T, 2) pixel (x, y) end points; r: radius in pixels. Returns
    (rows slice, alpha, t, s) with arrays of shape (T, rows, W), or None when
    the capsule lies outside the crop.
    """
    r0, r1 = self._rows((a[:, 1], b[:, 1]), r)
    if r1 <= r0:
      return None
    gy = self.gy[:, r0:r1]
    ax = a[:, 0, None, None].astype(np.float32)
    ay = a[:, 1, None, None].astype(np.float32)
    dx = (b[:, 0] - a[:, 0])[:, None, None].astype(np.float32)
    dy = (b[:, 1] - a[:, 1])[:, None, None].astype(np.float32)
    l2 = dx * dx + dy * dy + np.float32(1e-6)
    px = self.gx - ax
    py = gy - ay
    t = np.clip((px * dx + py * dy) / l2, 0.0, 1.0)
    qx = px - t * dx
    qy = py - t * dy
    d = np.sqrt(qx * qx + qy * qy)
    alpha = np.clip(np.float32(r + 0.5) - d, 0.0, 1.0)
    s = (px * dy - py * dx) / (np.sqrt(l2) * np.float32(max(r, 1e-3)))
    return slice(r0, r1), alpha, t, s

  def paint(self, rows: slice, alpha: np.ndarray, colour):
    """Composites ``colour`` ((3,) or (T, rows, W, 3)) with coverage ``alpha``."""
    region = self.img[:, rows]
    c = np.asarray(colour, np.float32)
    al = alpha[..., None]
    region += al * (c - region)

  def simple(self, a, b, r, colour):
    res = self.capsule(a, b, r)
    if res is not None:
      rows, alpha, _, _ = res
      self.paint(rows, alpha, colour)


def scene_strip(camera: Camera, x_start: float, height: int, width: int) -> np.ndarray:
  """Renders the camera scene in [x_start, x_start + width / height) (scene units)."""
  ys = (np.arange(height, dtype=np.float32) + 0.5) / height
  xs = x_start + (np.arange(width, dtype=np.float32) + 0.5) / height
  img = np.empty((height, width, 3), np.float32)
  is_floor = (ys >= camera.horizon)[:, None]
  sw = camera.scene_width
  xw = np.mod(xs, sw)
  for wall, floor in ((True, False), (False, True)):
    for seg in (camera.walls if wall else camera.floors):
      mx = (xw >= seg.x0) & (xw < seg.x1)
      m = (is_floor == floor) & mx[None, :]
      img[m] = seg.colour
  img *= (1.0 + 0.25 * (ys - 0.5))[:, None, None]
  for item in camera.clutter:
    # Items wrap around the scene horizontally.
    for shift in (-sw, 0.0, sw):
      x0, x1 = item.x0 + shift, item.x1 + shift
      if x1 < xs[0] or x0 > xs[-1]:
        continue
      if item.kind == 'rect':
        mx = (xs >= x0) & (xs < x1)
        my = (ys >= item.y0) & (ys < item.y1)
        m = my[:, None] & mx[None, :]
      else:
        cx, cy = (x0 + x1) / 2, (item.y0 + item.y1) / 2
        rx, ry = max((x1 - x0) / 2, 1e-3), max((item.y1 - item.y0) / 2, 1e-3)
        m = ((xs[None, :] - cx) / rx) ** 2 + ((ys[:, None] - cy) / ry) ** 2 < 1.0
      img[m] = item.colour
  return img


def box_blur_x(img: np.ndarray, k: int) -> np.ndarray:
  """Horizontal box blur of (..., H, W, 3) with an odd kernel k, edge padded."""
  p = k // 2
  padded = np.concatenate([np.repeat(img[..., :1, :], p, -2), img,
                           np.repeat(img[..., -1:, :], p, -2)], -2)
  c = np.cumsum(padded, axis=-2, dtype=np.float32)
  c = np.concatenate([np.zeros_like(c[..., :1, :]), c], -2)
  return (c[..., k:, :] - c[..., :-k, :]) / k


def defocus(img: np.ndarray) -> np.ndarray:
  """[1, 2, 1] / 4 separable blur over the H and W axes of (T, H, W, 3)."""
  p = np.pad(img, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  v = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
  return 0.25 * v[:, :, :-2] + 0.5 * v[:, :, 1:-1] + 0.25 * v[:, :, 2:]
