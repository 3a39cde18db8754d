"""The generative model of the synthetic dataset: who walks, and which camera sees them.

Pure NumPy. An *identity* (:class:`Identity`) is an :class:`Appearance` plus a
:class:`Gait`; a *camera* is a :class:`Camera`. ``sample_*`` draw them from a
``numpy.random.Generator`` in a fixed order, so each is a pure function of the
generator's state; ``make_gait_twin`` gives an identity that looks the same and
walks differently. What each parameter means, and how a tracklet is rendered
from them, is in ``render``'s module docstring.
"""

from __future__ import annotations

import dataclasses
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


def choose(rng: np.random.Generator, options: Sequence, weights=None):
  if weights is None:
    return options[int(rng.integers(len(options)))]
  p = np.asarray(weights, np.float64)
  return options[int(rng.choice(len(options), p=p / p.sum()))]


def sample_colour(rng: np.random.Generator, weights: dict[str, float],
            exclude: RGB | None = None) -> RGB:
  names = [n for n in weights if CLOTH_PALETTE[n] != exclude]
  name = choose(rng, names, [weights[n] for n in names])
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
  top = sample_colour(rng, CLOTH_WEIGHTS)
  top2 = sample_colour(rng, CLOTH_WEIGHTS, exclude=None)
  # Make sure the secondary colour is visibly different from the primary.
  for _ in range(8):
    if np.abs(np.subtract(top, top2)).sum() > 0.45:
      break
    top2 = sample_colour(rng, CLOTH_WEIGHTS)
  return Appearance(
      skin=SKIN_TONES[int(rng.integers(len(SKIN_TONES)))],
      hair_colour=HAIR_COLOURS[int(rng.integers(len(HAIR_COLOURS)))],
      hair_style=choose(rng, HAIR_STYLES, HAIR_STYLE_WEIGHTS),
      headwear=choose(rng, HEADWEAR, HEADWEAR_WEIGHTS),
      headwear_colour=sample_colour(rng, CLOTH_WEIGHTS),
      top_colour=top,
      top_colour2=top2,
      top_pattern=choose(rng, TOP_PATTERNS, TOP_PATTERN_WEIGHTS),
      stripe_count=int(rng.integers(3, 6)),
      sleeves=choose(rng, SLEEVES),
      bottom_colour=sample_colour(rng, BOTTOM_WEIGHTS),
      bottom_type=choose(rng, BOTTOM_TYPES, BOTTOM_TYPE_WEIGHTS),
      shoe_colour=SHOE_COLOURS[int(rng.integers(len(SHOE_COLOURS)))],
      accessory=choose(rng, ACCESSORIES, ACCESSORY_WEIGHTS),
      accessory_colour=sample_colour(rng, CLOTH_WEIGHTS),
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


def _step_away(value: float, d: float, lo: float, hi: float, rng: np.random.Generator) -> float:
  """``value + d`` or ``value - d``, the sign drawn at random unless one side leaves [lo, hi]."""
  up = bool(rng.random() < 0.5)
  if value - d < lo:
    up = True
  elif value + d > hi:
    up = False
  return value + d if up else value - d


def make_gait_twin(identity: Identity, rng: np.random.Generator) -> Identity:
  """Returns a person that looks exactly like ``identity`` but walks differently.

  The twin's cadence differs by a factor 1.45-1.8 (faster or slower), its stride
  by at least 0.15 rad and its arm swing by at least 0.3 rad, so the two differ
  clearly in motion while every appearance parameter is shared.
  """
  g = identity.gait
  ratio = rng.uniform(1.45, 1.8)
  freq = g.frequency * ratio if g.frequency * ratio <= 0.15 else g.frequency / ratio
  stride = _step_away(g.stride, rng.uniform(0.15, 0.3), 0.12, 0.9, rng)
  arm = _step_away(g.arm_swing, rng.uniform(0.3, 0.5), 0.0, 1.0, rng)
  gait = Gait(
      frequency=round(float(freq), 4),
      stride=round(float(stride), 4),
      arm_swing=round(float(arm), 4),
      knee_flex=round(float(rng.uniform(0.25, 0.85)), 4),
      elbow_bend=round(float(rng.uniform(0.05, 0.55)), 4),
      lean=round(float(rng.uniform(-0.03, 0.14)), 4),
  )
  return Identity(appearance=identity.appearance, gait=gait)


def muted_colour(rng: np.random.Generator) -> RGB:
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
                           muted_colour(rng)))
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
    colour = (sample_colour(rng, CLOTH_WEIGHTS) if rng.random() < 0.5 else muted_colour(rng))
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
