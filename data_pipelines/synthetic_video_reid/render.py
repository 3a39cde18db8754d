"""Procedural renderer of articulated pedestrians seen by synthetic cameras.

Pure NumPy (plus Pillow for JPEG encoding); no TensorFlow and no JAX here, so the
generator can run in worker processes cheaply and be tested on its own.

The generative model
--------------------
An *identity* (:class:`Identity`) is an :class:`Appearance` plus a :class:`Gait`.

* Appearance: skin tone, hair colour and style, headwear; a top with a primary and
  a secondary colour drawn from a small, neutral-heavy clothing palette (so many
  people share colours) and a pattern (solid, horizontal stripes, chest band,
  open-jacket front panel, colour-blocked upper half, chest logo); long or short
  sleeves; trousers, shorts or a skirt; shoe colour; an accessory (backpack,
  shoulder bag, handbag or none); body proportions (height, girth, leg/torso
  ratio, head size, limb thickness).
* Gait: cycle frequency (cycles per frame), stride (thigh swing amplitude), arm
  swing amplitude, knee flexion, elbow bend and torso lean.

The figure is a side view of head, torso, pelvis, two arms (upper arm, forearm)
and two legs (thigh, shin, foot), each a capsule posed by the gait phase, which
advances by ``2 pi frequency`` per frame. Legs are anti-phase, each arm is
anti-phase to its leg, the knee bends in the swing phase, and the body bobs so
that the lower foot stays on the ground. Capsules are rasterised as distance
fields on the pixel grid of all frames at once, with one pixel of antialiasing,
and composited back to front (far limbs are shaded darker).

A *camera* (:class:`Camera`) has a colour cast (per-channel gains), brightness,
gamma, saturation, a vertical illumination gradient, sensor noise, an optional
defocus, its own scene (wall and floor colours and clutter rectangles / blobs),
the person scale and foot level of its detector crops, horizontal squeeze,
bounding-box jitter, and probabilities of motion blur and occlusion.

A *tracklet* is rendered from (identity, camera, number of frames, rng): random
walking direction and initial phase, a window of the camera's scene that scrolls
slowly opposite to the walking direction (the crop follows the person), per-frame
bounding-box jitter (translation and scale), occluders (a passing pole, a box
hiding the legs, or a passer-by) over a run of frames, horizontal motion blur on
some frames, then the camera's colour transform and noise. Everything random is
drawn from the ``rng`` passed in, in a fixed order, so the result is a pure
function of the arguments.
"""

from __future__ import annotations

import dataclasses
import io
import math
from typing import Sequence

import numpy as np

RGB = tuple[float, float, float]

# ---------------------------------------------------------------------------
# Palettes.
# ---------------------------------------------------------------------------

# Clothing colours with sampling weights: mostly neutral, as in real crowds, so
# that many identities share their dominant colours.
CLOTH_PALETTE: dict[str, RGB] = {
    'black': (0.07, 0.07, 0.08),
    'charcoal': (0.22, 0.22, 0.24),
    'gray': (0.48, 0.48, 0.49),
    'light_gray': (0.72, 0.72, 0.70),
    'white': (0.92, 0.92, 0.89),
    'navy': (0.10, 0.13, 0.30),
    'denim': (0.24, 0.34, 0.54),
    'beige': (0.78, 0.70, 0.54),
    'brown': (0.40, 0.26, 0.16),
    'olive': (0.36, 0.39, 0.20),
    'red': (0.74, 0.12, 0.12),
    'maroon': (0.44, 0.08, 0.12),
    'green': (0.16, 0.50, 0.26),
    'blue': (0.16, 0.32, 0.76),
    'yellow': (0.90, 0.80, 0.22),
    'orange': (0.90, 0.50, 0.16),
    'pink': (0.90, 0.56, 0.66),
    'purple': (0.40, 0.20, 0.56),
    'teal': (0.10, 0.48, 0.50),
}
CLOTH_WEIGHTS: dict[str, float] = {
    'black': 3.0, 'charcoal': 2.0, 'gray': 2.0, 'light_gray': 1.2, 'white': 2.0,
    'navy': 1.6, 'denim': 1.4, 'beige': 1.2, 'brown': 1.0, 'olive': 0.7,
    'red': 0.8, 'maroon': 0.6, 'green': 0.6, 'blue': 0.7, 'yellow': 0.4,
    'orange': 0.4, 'pink': 0.4, 'purple': 0.4, 'teal': 0.4,
}
BOTTOM_WEIGHTS: dict[str, float] = {
    'black': 3.0, 'charcoal': 1.5, 'gray': 1.2, 'navy': 1.2, 'denim': 3.0,
    'beige': 1.2, 'brown': 0.8, 'olive': 0.5, 'white': 0.4, 'light_gray': 0.5,
    'maroon': 0.2, 'red': 0.2, 'blue': 0.3,
}
SKIN_TONES: tuple[RGB, ...] = (
    (0.96, 0.80, 0.69), (0.88, 0.68, 0.54), (0.76, 0.57, 0.43),
    (0.58, 0.40, 0.28), (0.38, 0.26, 0.18),
)
HAIR_COLOURS: tuple[RGB, ...] = (
    (0.05, 0.04, 0.04), (0.20, 0.13, 0.08), (0.42, 0.28, 0.15),
    (0.80, 0.68, 0.42), (0.62, 0.62, 0.62), (0.55, 0.18, 0.08),
)
SHOE_COLOURS: tuple[RGB, ...] = (
    (0.06, 0.06, 0.06), (0.90, 0.90, 0.88), (0.35, 0.22, 0.12),
    (0.45, 0.45, 0.47), (0.70, 0.14, 0.12),
)

TOP_PATTERNS = ('solid', 'hstripes', 'band', 'front_panel', 'two_tone', 'logo')
TOP_PATTERN_WEIGHTS = (0.26, 0.18, 0.14, 0.14, 0.14, 0.14)
SLEEVES = ('long', 'short')
BOTTOM_TYPES = ('trousers', 'shorts', 'skirt')
BOTTOM_TYPE_WEIGHTS = (0.66, 0.18, 0.16)
HAIR_STYLES = ('short', 'long', 'bald')
HAIR_STYLE_WEIGHTS = (0.58, 0.32, 0.10)
HEADWEAR = ('none', 'cap', 'beanie')
HEADWEAR_WEIGHTS = (0.72, 0.16, 0.12)
ACCESSORIES = ('none', 'backpack', 'shoulder_bag', 'handbag')
ACCESSORY_WEIGHTS = (0.40, 0.26, 0.20, 0.14)


# ---------------------------------------------------------------------------
# Parameters.
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Appearance:
  """Everything about a person that does not move: clothes, colours, shape."""

  skin: RGB
  hair_colour: RGB
  hair_style: str
  headwear: str
  headwear_colour: RGB
  top_colour: RGB
  top_colour2: RGB
  top_pattern: str
  stripe_count: int
  sleeves: str
  bottom_colour: RGB
  bottom_type: str
  shoe_colour: RGB
  accessory: str
  accessory_colour: RGB
  height: float  # overall height factor within the crop
  girth: float  # torso width factor
  leg_ratio: float  # leg length factor (torso gets the rest)
  head_size: float
  limb_width: float


@dataclasses.dataclass(frozen=True)
class Gait:
  """How a person walks."""

  frequency: float  # gait cycles per frame
  stride: float  # thigh swing amplitude (radians)
  arm_swing: float  # upper-arm swing amplitude (radians)
  knee_flex: float  # extra knee bend in the swing phase (radians)
  elbow_bend: float  # resting elbow bend (radians)
  lean: float  # forward torso lean (radians)


@dataclasses.dataclass(frozen=True)
class Identity:
  appearance: Appearance
  gait: Gait


@dataclasses.dataclass(frozen=True)
class SceneItem:
  """A clutter item of a camera's scene, in scene units (crop height = 1)."""

  kind: str  # 'rect' or 'blob'
  x0: float
  y0: float
  x1: float
  y1: float
  colour: RGB


@dataclasses.dataclass(frozen=True)
class Camera:
  """A camera: its colour response, scene, detector crops and nuisances."""

  gains: RGB  # per-channel colour cast
  brightness: float
  gamma: float
  saturation: float
  vertical_gradient: float  # illumination change from top to bottom of a crop
  noise_std: float  # sensor noise, in [0, 1] intensity units
  defocus: bool  # blur every frame with a [1, 2, 1] / 4 kernel
  person_scale: float  # person height / crop height
  foot_level: float  # foot position / crop height
  squeeze: float  # horizontal scale of the person (detector aspect)
  jitter: float  # bounding-box jitter (std of translation, pixels at H=64)
  blur_prob: float  # probability of motion blur per frame
  occlusion_prob: float  # probability that a tracklet has an occluder
  walls: tuple[SceneItem, ...]  # wall segments covering the scene width
  floors: tuple[SceneItem, ...]  # floor segments covering the scene width
  horizon: float  # wall/floor boundary / crop height
  scene_width: float  # scene width in crop heights (wraps around)
  clutter: tuple[SceneItem, ...]


def _choice(rng: np.random.Generator, options: Sequence, weights=None):
  if weights is None:
    return options[int(rng.integers(len(options)))]
  p = np.asarray(weights, np.float64)
  return options[int(rng.choice(len(options), p=p / p.sum()))]


def _colour(rng: np.random.Generator, weights: dict[str, float],
            exclude: RGB | None = None) -> RGB:
  names = [n for n in weights if CLOTH_PALETTE[n] != exclude]
  name = _choice(rng, names, [weights[n] for n in names])
  base = np.asarray(CLOTH_PALETTE[name])
  # A little per-person variation of the same nominal colour.
  c = np.clip(base + rng.normal(0.0, 0.025, 3), 0.0, 1.0)
  return tuple(round(float(v), 4) for v in c)


def sample_gait(rng: np.random.Generator) -> Gait:
  return Gait(
      frequency=round(float(rng.uniform(0.045, 0.125)), 4),
      stride=round(float(rng.uniform(0.22, 0.60)), 4),
      arm_swing=round(float(rng.uniform(0.05, 0.75)), 4),
      knee_flex=round(float(rng.uniform(0.25, 0.85)), 4),
      elbow_bend=round(float(rng.uniform(0.05, 0.55)), 4),
      lean=round(float(rng.uniform(-0.03, 0.14)), 4),
  )


def sample_appearance(rng: np.random.Generator) -> Appearance:
  top = _colour(rng, CLOTH_WEIGHTS)
  top2 = _colour(rng, CLOTH_WEIGHTS, exclude=None)
  # Make sure the secondary colour is visibly different from the primary.
  for _ in range(8):
    if np.abs(np.subtract(top, top2)).sum() > 0.45:
      break
    top2 = _colour(rng, CLOTH_WEIGHTS)
  return Appearance(
      skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
      hair_colour=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
      hair_style=_choice(rng, HAIR_STYLES, HAIR_STYLE_WEIGHTS),
      headwear=_choice(rng, HEADWEAR, HEADWEAR_WEIGHTS),
      headwear_colour=_colour(rng, CLOTH_WEIGHTS),
      top_colour=top,
      top_colour2=top2,
      top_pattern=_choice(rng, TOP_PATTERNS, TOP_PATTERN_WEIGHTS),
      stripe_count=int(rng.integers(3, 6)),
      sleeves=_choice(rng, SLEEVES),
      bottom_colour=_colour(rng, BOTTOM_WEIGHTS),
      bottom_type=_choice(rng, BOTTOM_TYPES, BOTTOM_TYPE_WEIGHTS),
      shoe_colour=SHOE_COLOURS[int(rng.integers(len(SHOE_COLOURS)))],
      accessory=_choice(rng, ACCESSORIES, ACCESSORY_WEIGHTS),
      accessory_colour=_colour(rng, CLOTH_WEIGHTS),
      height=round(float(rng.uniform(0.92, 1.05)), 4),
      girth=round(float(rng.uniform(0.78, 1.28)), 4),
      leg_ratio=round(float(rng.uniform(0.88, 1.12)), 4),
      head_size=round(float(rng.uniform(0.86, 1.16)), 4),
      limb_width=round(float(rng.uniform(0.8, 1.25)), 4),
  )


def sample_identity(rng: np.random.Generator) -> Identity:
  """Samples a random identity (appearance, then gait) from ``rng``."""
  appearance = sample_appearance(rng)
  gait = sample_gait(rng)
  return Identity(appearance=appearance, gait=gait)


def make_gait_twin(identity: Identity, rng: np.random.Generator) -> Identity:
  """Returns a person that looks exactly like ``identity`` but walks differently.

  The twin's cadence differs by a factor 1.45-1.8 (faster or slower), its stride
  by at least 0.15 rad and its arm swing by at least 0.3 rad, so the two differ
  clearly in motion while every appearance parameter is shared.
  """
  g = identity.gait
  ratio = rng.uniform(1.45, 1.8)
  freq = g.frequency * ratio if g.frequency * ratio <= 0.15 else g.frequency / ratio
  d = rng.uniform(0.15, 0.3)
  up = bool(rng.random() < 0.5)
  if g.stride - d < 0.12:
    up = True
  elif g.stride + d > 0.9:
    up = False
  stride = g.stride + d if up else g.stride - d
  d = rng.uniform(0.3, 0.5)
  up = bool(rng.random() < 0.5)
  if g.arm_swing - d < 0.0:
    up = True
  elif g.arm_swing + d > 1.0:
    up = False
  arm = g.arm_swing + d if up else g.arm_swing - d
  gait = Gait(
      frequency=round(float(freq), 4),
      stride=round(float(stride), 4),
      arm_swing=round(float(arm), 4),
      knee_flex=round(float(rng.uniform(0.25, 0.85)), 4),
      elbow_bend=round(float(rng.uniform(0.05, 0.55)), 4),
      lean=round(float(rng.uniform(-0.03, 0.14)), 4),
  )
  return Identity(appearance=identity.appearance, gait=gait)


def _muted(rng: np.random.Generator) -> RGB:
  c = rng.uniform(0.15, 0.85, 3)
  g = c.mean()
  c = g + rng.uniform(0.2, 0.6) * (c - g)
  return tuple(round(float(v), 4) for v in c)


def sample_camera(rng: np.random.Generator) -> Camera:
  """Samples a random camera (colour response, scene, crop geometry)."""
  gains = np.exp(rng.normal(0.0, 0.04, 3))
  gains = gains / gains.mean()
  scene_width = 12.0

  def segments(min_w, max_w):
    out, x = [], 0.0
    while x < scene_width:
      w = min(rng.uniform(min_w, max_w), scene_width - x)
      out.append(SceneItem('rect', round(float(x), 4), 0.0, round(float(x + w), 4), 1.0,
                           _muted(rng)))
      x += w
    return tuple(out)

  walls = segments(0.4, 2.0)
  floors = segments(1.0, 4.0)
  items = []
  for _ in range(int(rng.integers(28, 44))):
    kind = 'rect' if rng.random() < 0.7 else 'blob'
    x0 = rng.uniform(0, scene_width)
    w = rng.uniform(0.05, 0.6) if rng.random() < 0.7 else rng.uniform(0.02, 0.08)
    y0 = rng.uniform(-0.2, 0.8)
    h = rng.uniform(0.1, 0.9)
    colour = (_colour(rng, CLOTH_WEIGHTS) if rng.random() < 0.5 else _muted(rng))
    items.append(SceneItem(kind, round(float(x0), 4), round(float(y0), 4),
                           round(float(x0 + w), 4), round(float(y0 + h), 4), colour))
  return Camera(
      gains=tuple(round(float(v), 4) for v in gains),
      brightness=round(float(rng.uniform(0.88, 1.12)), 4),
      gamma=round(float(rng.uniform(0.94, 1.06)), 4),
      saturation=round(float(rng.uniform(0.82, 1.12)), 4),
      vertical_gradient=round(float(rng.uniform(-0.15, 0.15)), 4),
      noise_std=round(float(rng.uniform(0.01, 0.035)), 4),
      defocus=bool(rng.random() < 0.3),
      person_scale=round(float(rng.uniform(0.76, 0.9)), 4),
      foot_level=round(float(rng.uniform(0.93, 0.98)), 4),
      squeeze=round(float(rng.uniform(0.88, 1.12)), 4),
      jitter=round(float(rng.uniform(0.4, 1.4)), 4),
      blur_prob=round(float(rng.uniform(0.0, 0.3)), 4),
      occlusion_prob=round(float(rng.uniform(0.1, 0.45)), 4),
      walls=walls,
      floors=floors,
      horizon=round(float(rng.uniform(0.5, 0.8)), 4),
      scene_width=scene_width,
      clutter=tuple(items),
  )


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


class _Canvas:
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


def _scene_strip(camera: Camera, x_start: float, height: int, width: int) -> np.ndarray:
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


def _box_blur_x(img: np.ndarray, k: int) -> np.ndarray:
  """Horizontal box blur of (..., H, W, 3) with an odd kernel k, edge padded."""
  p = k // 2
  padded = np.concatenate([np.repeat(img[..., :1, :], p, -2), img,
                           np.repeat(img[..., -1:, :], p, -2)], -2)
  c = np.cumsum(padded, axis=-2, dtype=np.float32)
  c = np.concatenate([np.zeros_like(c[..., :1, :]), c], -2)
  return (c[..., k:, :] - c[..., :-k, :]) / k


def _defocus(img: np.ndarray) -> np.ndarray:
  """[1, 2, 1] / 4 separable blur over the H and W axes of (T, H, W, 3)."""
  p = np.pad(img, ((0, 0), (1, 1), (1, 1), (0, 0)), mode='edge')
  v = 0.25 * p[:, :-2] + 0.5 * p[:, 1:-1] + 0.25 * p[:, 2:]
  return 0.25 * v[:, :, :-2] + 0.5 * v[:, :, 1:-1] + 0.25 * v[:, :, 2:]


def render_tracklet(identity: Identity, camera: Camera, num_frames: int,
                    rng: np.random.Generator, height: int = 64, width: int = 32,
                    *, junk: bool = False, phase0: float | None = None,
                    facing: int | None = None) -> np.ndarray:
  """Renders a tracklet: uint8 array (num_frames, height, width, 3), RGB.

  Args:
    identity: who walks.
    camera: which camera sees them.
    num_frames: tracklet length T.
    rng: the source of all tracklet-level randomness (direction, phase, scene
      window, jitter, occlusion, blur, noise), consumed in a fixed order.
    height, width: crop size.
    junk: render a bad detection (person mostly outside the crop, tiny or mostly
      occluded), as the junk tracklets of MARS.
    phase0, facing: override the sampled initial phase / walking direction
      (+1 right, -1 left); the rng is consumed identically either way.
  """
  app, gait = identity.appearance, identity.gait
  T, H, W = int(num_frames), int(height), int(width)
  unit = H / 64.0  # pixel distances are specified at H = 64

  # --- tracklet-level randomness, always drawn in this order ---------------
  facing_draw = 1 if rng.random() < 0.5 else -1
  phase_draw = rng.uniform(0.0, 2 * np.pi)
  facing = facing_draw if facing is None else int(facing)
  phase0 = phase_draw if phase0 is None else float(phase0)
  light = rng.uniform(0.94, 1.06)
  scene_x = rng.uniform(0.0, camera.scene_width)
  scale_bias = rng.uniform(0.96, 1.04)
  jit_xy = rng.normal(0.0, camera.jitter * unit, (T, 2))
  jit_s = rng.normal(0.0, 0.025, T)
  occ_draw = rng.random()
  occ_kind = _choice(rng, ('pole', 'box', 'passerby'))
  occ_span = rng.uniform(0.35, 1.0)
  occ_start = rng.uniform(0.0, 1.0)
  occ_colour = np.asarray(_colour(rng, CLOTH_WEIGHTS) if rng.random() < 0.5 else _muted(rng),
                          np.float32)
  occ_geom = rng.uniform(0.0, 1.0, 4)
  blur_frames = rng.random(T) < camera.blur_prob
  blur_k = 3 + 2 * rng.integers(0, 2, T)
  junk_geom = rng.uniform(0.0, 1.0, 3)
  noise = rng.standard_normal((T, H, W, 3), dtype=np.float32)

  # --- geometry ------------------------------------------------------------
  phase = phase0 + 2 * np.pi * gait.frequency * np.arange(T)
  P = pose(app, gait, phase)
  S = camera.person_scale * H * app.height * scale_bias * (1.0 + jit_s)  # (T,)
  sx = S * camera.squeeze
  cx = W / 2 + jit_xy[:, 0]
  foot_y = camera.foot_level * H + jit_xy[:, 1]
  if junk:
    mode = int(junk_geom[0] * 3)
    if mode == 0:  # shifted half out of the crop
      cx = cx + (0.5 + 0.35 * junk_geom[1]) * W * (1 if junk_geom[2] < 0.5 else -1)
    elif mode == 1:  # far too small (a detection of a distant person)
      S = S * 0.45
      sx = sx * 0.45
      foot_y = foot_y - 0.2 * H * junk_geom[1]
    else:  # only the lower body
      foot_y = foot_y + 0.55 * H
    occ_draw = 0.0  # and always occluded as well

  def to_px(p):
    return np.stack([cx + facing * p[:, 0] * sx, foot_y - (1.0 - p[:, 1]) * S], -1)

  J = {k: to_px(v) for k, v in P.items() if np.ndim(v) == 2}
  Sm = float(np.mean(S))
  head_r, torso_r = float(P['head_r']) * Sm, float(P['torso_r']) * Sm * camera.squeeze
  leg_r, arm_r = float(P['leg_r']) * Sm, float(P['arm_r']) * Sm

  # --- background: a window of the camera's scene, scrolling ----------------
  step_len = 2 * 0.47 * app.leg_ratio * np.sin(gait.stride)
  speed_px = 2 * step_len * gait.frequency * Sm * 0.35  # parallax-reduced
  scroll = -facing * speed_px * np.arange(T)
  pad = int(math.ceil(4 * camera.jitter * unit)) + 2
  x_off = scroll - jit_xy[:, 0]
  xmin = int(math.floor(x_off.min())) - pad
  strip_w = int(math.ceil(x_off.max())) + pad - xmin + W
  strip = _scene_strip(camera, scene_x + xmin / H, H + 2 * pad, strip_w)
  bg = np.empty((T, H, W, 3), np.float32)
  for t in range(T):
    xo = int(round(x_off[t])) - xmin
    yo = pad + int(round(-jit_xy[t, 1] * 0.5))
    bg[t] = strip[yo:yo + H, xo:xo + W]
  cv = _Canvas(bg)

  # --- the figure, back to front ------------------------------------------
  skin = np.asarray(app.skin, np.float32)
  top1 = np.asarray(app.top_colour, np.float32)
  top2 = np.asarray(app.top_colour2, np.float32)
  bottom = np.asarray(app.bottom_colour, np.float32)
  shoe = np.asarray(app.shoe_colour, np.float32)
  acc = np.asarray(app.accessory_colour, np.float32)
  hair = np.asarray(app.hair_colour, np.float32)

  def draw_arm(side: str, shade: float):
    root, elbow, wrist = J['arm_root'], J['elbow_' + side], J['wrist_' + side]
    sleeve = top1 * shade
    res = cv.capsule(root, elbow, arm_r)
    if res is not None:
      rows, alpha, t, _ = res
      if app.sleeves == 'short':
        col = np.where((t < 0.55)[..., None], sleeve, skin * shade)
        cv.paint(rows, alpha, col)
      else:
        cv.paint(rows, alpha, sleeve)
    cv.simple(elbow, wrist, arm_r * 0.92, sleeve if app.sleeves == 'long' else skin * shade)
    cv.simple(wrist, wrist, arm_r * 1.05, skin * shade)

  def draw_leg(side: str, shade: float):
    hip, knee, ankle, toe = J['hip'], J['knee_' + side], J['ankle_' + side], J['toe_' + side]
    leg_col = bottom * shade if app.bottom_type == 'trousers' else skin * shade
    res = cv.capsule(hip, knee, leg_r)
    if res is not None:
      rows, alpha, t, _ = res
      if app.bottom_type == 'shorts':
        cv.paint(rows, alpha, np.where((t < 0.6)[..., None], bottom * shade, skin * shade))
      else:
        cv.paint(rows, alpha, leg_col)
    cv.simple(knee, ankle, leg_r * 0.88, leg_col)
    cv.simple(ankle, toe, leg_r * 0.8, shoe * shade)

  back = np.array([-facing, 0.0])
  draw_arm('f', 0.72)
  draw_leg('f', 0.78)
  if app.accessory == 'backpack':
    off = back * (torso_r + 0.3 * torso_r)
    a = J['shoulder'] + off + np.array([0.0, 0.12 * Sm])
    b = J['shoulder'] + off + np.array([0.0, 0.26 * Sm])
    cv.simple(a, b, torso_r * 0.75, acc)
  if app.hair_style == 'long' and app.headwear != 'beanie':
    a = J['head'] + back * head_r * 0.5
    b = J['neck'] + back * head_r * 0.6 + np.array([0.0, 0.06 * Sm])
    cv.simple(a, b, head_r * 0.75, hair)
  # Pelvis in the bottom colour, then the torso with its pattern.
  cv.simple(J['hip'] + np.array([0.0, -0.03 * Sm]), J['hip'], torso_r * 0.92, bottom)
  res = cv.capsule(J['shoulder'] + np.array([0.0, 0.01 * Sm]),
                   J['hip'] + np.array([0.0, -0.05 * Sm]), torso_r)
  if res is not None:
    rows, alpha, t, s = res
    front = s * facing  # positive on the chest side
    pat = app.top_pattern
    if pat == 'solid':
      m = None
    elif pat == 'hstripes':
      m = (np.floor(t * (2 * app.stripe_count - 1)) % 2) == 1
    elif pat == 'band':
      m = (t > 0.32) & (t < 0.58)
    elif pat == 'front_panel':
      m = front > 0.2
    elif pat == 'two_tone':
      m = t < 0.48
    else:  # logo
      m = (t > 0.18) & (t < 0.46) & (front > -0.2) & (front < 0.75)
    cv.paint(rows, alpha, top1 if m is None else np.where(m[..., None], top2, top1))
  if app.bottom_type == 'skirt':
    # A trapezoid from the hip to just below the knee.
    hx, hy = J['hip'][:, 0], J['hip'][:, 1]
    hem = hy + 0.2 * Sm
    r0, r1 = cv._rows((hy - 0.02 * Sm, hem), 0.0)
    if r1 > r0:
      gy = cv.gy[:, r0:r1]
      frac = np.clip((gy - hy[:, None, None]) / (0.2 * Sm), 0.0, 1.0)
      half = torso_r * (0.95 + 0.8 * frac)
      a_x = np.clip(half - np.abs(cv.gx - hx[:, None, None]) + 0.5, 0.0, 1.0)
      a_y = (np.clip(gy - (hy[:, None, None] - 0.02 * Sm) + 0.5, 0.0, 1.0) *
             np.clip(hem[:, None, None] - gy + 0.5, 0.0, 1.0))
      cv.paint(slice(r0, r1), (a_x * a_y).astype(np.float32), bottom)
  draw_leg('n', 1.0)
  if app.accessory == 'shoulder_bag':
    strap_a = J['shoulder'] - back * torso_r * 0.5
    strap_b = J['hip'] + back * torso_r * 0.9 + np.array([0.0, -0.02 * Sm])
    cv.simple(strap_a, strap_b, max(0.45, 0.012 * Sm), acc * 0.8)
    cv.simple(strap_b, strap_b + np.array([0.0, 0.04 * Sm]), 0.055 * Sm, acc)
  draw_arm('n', 1.0)
  if app.accessory == 'handbag':
    w = J['wrist_n'] + np.array([0.0, 0.03 * Sm])
    cv.simple(w, w + np.array([0.0, 0.03 * Sm]), 0.045 * Sm, acc)
  # Head, hair, headwear.
  res = cv.capsule(J['head'], J['head'], head_r)
  if res is not None:
    rows, alpha, _, _ = res
    if app.hair_style == 'bald' and app.headwear == 'none':
      col = skin
    else:
      rel_y = cv.gy[:, rows] - J['head'][:, 1, None, None]
      rel_x = (cv.gx - J['head'][:, 0, None, None]) * facing
      m = (rel_y < -0.15 * head_r) | ((rel_x < -0.25 * head_r) & (rel_y < 0.5 * head_r))
      if app.hair_style == 'bald':
        m = np.zeros_like(m)
      col = np.where(m[..., None], hair, skin)
    cv.paint(rows, alpha, col)
  if app.headwear != 'none':
    hc = np.asarray(app.headwear_colour, np.float32)
    top_of_head = J['head'] + np.array([0.0, -0.45 * head_r])
    if app.headwear == 'cap':
      cv.simple(top_of_head - back * 0.3 * head_r, top_of_head + back * 0.3 * head_r,
                head_r * 0.7, hc)
      brim = J['head'] + np.array([0.0, -0.15 * head_r])
      cv.simple(brim, brim - back * 1.5 * head_r, max(0.5, 0.18 * head_r), hc)
    else:  # beanie
      cv.simple(top_of_head, top_of_head + np.array([0.0, -0.15 * head_r]),
                head_r * 0.95, hc)

  img = cv.img
  # --- occlusion ------------------------------------------------------------
  if occ_draw < camera.occlusion_prob:
    n = max(1, int(round(occ_span * T)))
    t0 = int(round(occ_start * (T - n)))
    tt = np.arange(t0, t0 + n)
    prog = (tt - t0) / max(n - 1, 1)
    gx, gy = cv.gx[0], cv.gy[0]  # (1, W), (H, 1)
    if occ_kind == 'pole':
      pw = (3 + 6 * occ_geom[0]) * unit
      x = (-pw + (W + 2 * pw) * prog) if occ_geom[1] < 0.5 else (W + pw - (W + 2 * pw) * prog)
      m = np.clip(pw / 2 + 0.5 - np.abs(gx[None] - x[:, None, None]), 0, 1)
      m = np.broadcast_to(m, (n, H, W))
    elif occ_kind == 'box':
      top = H * (0.5 + 0.3 * occ_geom[0])
      m = np.clip(gy - top + 0.5, 0, 1)[None] * np.ones((n, 1, W), np.float32)
    else:  # a passer-by: a big dark-ish ellipse sliding across
      rx, ry = W * (0.35 + 0.25 * occ_geom[0]), H * (0.45 + 0.2 * occ_geom[1])
      x = (-rx + (W + 2 * rx) * prog) if occ_geom[2] < 0.5 else (W + rx - (W + 2 * rx) * prog)
      y = H * (0.55 + 0.4 * occ_geom[3])
      m = (((gx[None] - x[:, None, None]) / rx) ** 2 + ((gy[None] - y) / ry) ** 2 < 1.0)
    m = np.asarray(m, np.float32)[..., None]
    img[tt] += m * (occ_colour - img[tt])
  if junk:
    # Junk detections are also half covered.
    img[:, : H // 2] = 0.5 * img[:, : H // 2] + 0.5 * occ_colour

  # --- motion blur and defocus --------------------------------------------
  for k in (3, 5):
    sel = np.nonzero(blur_frames & (blur_k == k))[0]
    if sel.size:
      img[sel] = _box_blur_x(img[sel], int(round(k * unit)) | 1)
  if camera.defocus:
    img = _defocus(img)

  # --- camera response -----------------------------------------------------
  vg = (1.0 + camera.vertical_gradient * ((np.arange(H, dtype=np.float32) + 0.5) / H - 0.5))
  img = img * (np.asarray(camera.gains, np.float32) * np.float32(camera.brightness * light))
  img = img * vg[None, :, None, None]
  gray = img.mean(-1, keepdims=True)
  img = gray + np.float32(camera.saturation) * (img - gray)
  img = np.clip(img, 0.0, 1.0) ** np.float32(camera.gamma)
  img = img + np.float32(camera.noise_std) * noise
  return np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> list[bytes]:
  """Encodes (T, H, W, 3) uint8 frames as baseline JPEG (4:4:4), deterministically."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  out = []
  for f in frames:
    buf = io.BytesIO()
    Image.fromarray(f, 'RGB').save(buf, format='JPEG', quality=quality, subsampling=0,
                                   optimize=False)
    out.append(buf.getvalue())
  return out
