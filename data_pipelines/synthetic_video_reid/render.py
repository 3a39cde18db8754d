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

import io
import math

import numpy as np

from data_pipelines.synthetic_video_reid import canvas
from data_pipelines.synthetic_video_reid.generative_model import (
    CLOTH_WEIGHTS, Camera, Identity, choose, muted_colour, sample_colour)


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
  occ_kind = choose(rng, ('pole', 'box', 'passerby'))
  occ_span = rng.uniform(0.35, 1.0)
  occ_start = rng.uniform(0.0, 1.0)
  occ_colour = np.asarray(sample_colour(rng, CLOTH_WEIGHTS) if rng.random() < 0.5 else muted_colour(rng),
                          np.float32)
  occ_geom = rng.uniform(0.0, 1.0, 4)
  blur_frames = rng.random(T) < camera.blur_prob
  blur_k = 3 + 2 * rng.integers(0, 2, T)
  junk_geom = rng.uniform(0.0, 1.0, 3)
  noise = rng.standard_normal((T, H, W, 3), dtype=np.float32)

  # --- geometry ------------------------------------------------------------
  phase = phase0 + 2 * np.pi * gait.frequency * np.arange(T)
  P = canvas.pose(app, gait, phase)
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
  strip = canvas.scene_strip(camera, scene_x + xmin / H, H + 2 * pad, strip_w)
  bg = np.empty((T, H, W, 3), np.float32)
  for t in range(T):
    xo = int(round(x_off[t])) - xmin
    yo = pad + int(round(-jit_xy[t, 1] * 0.5))
    bg[t] = strip[yo:yo + H, xo:xo + W]
  cv = canvas.Canvas(bg)

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
      img[sel] = canvas.box_blur_x(img[sel], int(round(k * unit)) | 1)
  if camera.defocus:
    img = canvas.defocus(img)

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
