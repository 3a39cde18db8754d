r"""Colour-histogram reference descriptor for a video re-ID dataset.

A hand-crafted, training-free baseline that measures how much of a dataset can be
solved by colour statistics alone. Every tracklet is described by a colour
histogram averaged over all its frames, queries rank the gallery by a histogram
distance, and the torchreid protocol scores the ranking (gallery items with the
query's pid and camera removed, queries without a remaining match skipped, AP =
mean precision at the hits, CMC).

Variants (all computed; the strongest is the reference):
  rgb_joint    joint 8x8x8 RGB histogram, L1-normalised, square root (Hellinger),
               Euclidean distance.
  hsv_chi2     16 bins for each of H, S, V, each L1-normalised, chi-square.
  hsv_stripes  6 horizontal stripes x joint 8x4x4 HSV histogram (ELF-like spatial
               layout), each stripe L1-normalised, Hellinger distance.
  hsv_center   as hsv_stripes on the central half of the crop width, where the
               person is.
  gw_center    hsv_center after grey-world colour constancy per tracklet (each
               channel divided by its mean over the tracklet), which undoes
               camera colour casts and brightness.

Usage:
  python -m experiments.color_histogram_baseline [--data_dir=DIR] \
      [--dataset=synthetic_video_reid] [--config_name=default]
"""

from __future__ import annotations

import time
from typing import Callable

from absl import app
from absl import flags
from absl import logging
import numpy as np

from data_pipelines import datasets
from jaxreid.evaluation import ranking

_DATASET = flags.DEFINE_string('dataset', 'synthetic_video_reid', 'TFDS dataset name.')
_CONFIG = flags.DEFINE_string('config_name', 'default', 'TFDS builder config name.')
_DATA_DIR = flags.DEFINE_string('data_dir', None, 'TFDS data_dir (default: TFDS default).')
_VARIANTS = flags.DEFINE_list('variants', ['rgb_joint', 'hsv_chi2', 'hsv_stripes', 'hsv_center', 'gw_center'],
                              'Descriptor variants to evaluate.')

def _rank(distmat, q_pids, g_pids, q_camids, g_camids):
  """The torchreid protocol, with the same ranking code as model evaluation."""
  res = ranking.evaluate_rank(np.asarray(distmat, np.float32), q_pids, g_pids, q_camids,
                              g_camids, max_rank=50, protocol='torchreid')
  return {'cmc': np.asarray(res['cmc']), 'mAP': float(res['mAP']),
          'num_valid_queries': res['num_valid_queries']}


# ---------------------------------------------------------------------------
# Descriptors. Each maps uint8 frames (T, H, W, 3) to a non-negative vector.
# ---------------------------------------------------------------------------


def rgb_to_hsv(frames: np.ndarray) -> np.ndarray:
  """uint8 RGB (..., 3) -> float HSV in [0, 1)^3 (vectorised)."""
  x = frames.astype(np.float32) / 255.0
  r, g, b = x[..., 0], x[..., 1], x[..., 2]
  mx, mn = x.max(-1), x.min(-1)
  d = mx - mn
  safe = np.where(d > 0, d, 1.0)
  h = np.where(mx == r, ((g - b) / safe) % 6.0,
               np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) / 6.0
  h = np.where(d > 0, h, 0.0)
  s = np.where(mx > 0, d / np.where(mx > 0, mx, 1.0), 0.0)
  return np.stack([h % 1.0, s, mx], -1)


def _bins(v: np.ndarray, n: int) -> np.ndarray:
  return np.minimum((v * n).astype(np.int64), n - 1)


def _joint_hist(idx: np.ndarray, n: int) -> np.ndarray:
  h = np.bincount(idx.ravel(), minlength=n).astype(np.float64)
  return h / max(h.sum(), 1.0)


def rgb_joint(frames):
  q = frames.astype(np.int64) // 32
  return np.sqrt(_joint_hist(q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2], 512))


def hsv_chi2(frames):
  hsv = rgb_to_hsv(frames)
  return np.concatenate([_joint_hist(_bins(hsv[..., c], 16), 16) for c in range(3)]) / 3.0


def _hsv_stripes(frames, stripes=6):
  hsv = rgb_to_hsv(frames)
  idx = _bins(hsv[..., 0], 8) * 16 + _bins(hsv[..., 1], 4) * 4 + _bins(hsv[..., 2], 4)
  parts = np.array_split(idx, stripes, axis=1)
  return np.sqrt(np.concatenate([_joint_hist(p, 128) for p in parts]) / stripes)


def hsv_stripes(frames):
  return _hsv_stripes(frames)


def hsv_center(frames):
  w = frames.shape[2]
  return _hsv_stripes(frames[:, :, w // 4: w - w // 4])


def grey_world(frames):
  """Per-tracklet grey-world colour constancy: equal channel means, fixed level."""
  f = frames.astype(np.float32)
  mean = f.reshape(-1, 3).mean(0)
  return np.clip(f * (110.0 / np.maximum(mean, 1.0)), 0, 255).astype(np.uint8)


def gw_center(frames):
  return hsv_center(grey_world(frames))


def euclidean(q, g):
  d = (q * q).sum(1)[:, None] + (g * g).sum(1)[None] - 2.0 * q @ g.T
  return np.maximum(d, 0.0)


def chi_square(q, g):
  out = np.empty((len(q), len(g)))
  for i in range(len(q)):
    s = q[i][None] + g
    out[i] = 0.5 * (((q[i][None] - g) ** 2) / np.where(s > 0, s, 1.0)).sum(1)
  return out


VARIANTS: dict[str, tuple[Callable, Callable]] = {
    'rgb_joint': (rgb_joint, euclidean),
    'hsv_chi2': (hsv_chi2, chi_square),
    'hsv_stripes': (hsv_stripes, euclidean),  # sqrt histograms: Hellinger
    'hsv_center': (hsv_center, euclidean),
    'gw_center': (gw_center, euclidean),
}


# ---------------------------------------------------------------------------
# Data.
# ---------------------------------------------------------------------------


def _decode_jpeg(data: bytes) -> np.ndarray:
  import io  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  with Image.open(io.BytesIO(data)) as im:
    return np.asarray(im.convert('RGB'))


def load_split(builder, split: str):
  """Yields (frames uint8 (T, H, W, 3), pid, camid, gait_twin) for every tracklet."""
  source = builder.as_data_source(split)  # TFDS decodes every frame
  for i in range(len(source)):
    ex = source[i]
    yield (np.stack(ex['frames']), int(ex['pid']), int(ex['camid']),
           bool(ex.get('gait_twin', False)))


def describe(builder, split: str, variants):
  feats = {v: [] for v in variants}
  pids, camids, twins = [], [], []
  for frames, pid, camid, twin in load_split(builder, split):
    for v in variants:
      feats[v].append(VARIANTS[v][0](frames))
    pids.append(pid)
    camids.append(camid)
    twins.append(twin)
  return ({v: np.stack(f) for v, f in feats.items()}, np.asarray(pids, np.int32),
          np.asarray(camids, np.int32), np.asarray(twins, bool))


def main(argv):
  del argv
  variants = _VARIANTS.value
  for v in variants:
    if v not in VARIANTS:
      raise app.UsageError(f'unknown variant {v}; choose from {sorted(VARIANTS)}')
  t0 = time.time()
  builder = datasets.prepare(_DATASET.value, _CONFIG.value, data_dir=_DATA_DIR.value or '')
  logging.info('dataset ready in %.1fs', time.time() - t0)
  t0 = time.time()
  qf, q_pids, q_cams, q_twin = describe(builder, 'query', variants)
  gf, g_pids, g_cams, _ = describe(builder, 'gallery', variants)
  # As model evaluation under the torchreid protocol: junk (pid -1) tracklets
  # are dropped from the gallery, as torchreid's loaders drop them.
  keep = g_pids != -1
  gf, g_pids, g_cams = {v: f[keep] for v, f in gf.items()}, g_pids[keep], g_cams[keep]
  print(f'{_DATASET.value}/{_CONFIG.value}: {len(q_pids)} queries '
        f'({int(q_twin.sum())} of gait-twin identities), {len(g_pids)} gallery tracklets; '
        f'descriptors in {time.time() - t0:.1f}s; torchreid protocol')
  print(f'{"variant":<12} {"rank-1":>7} {"rank-5":>7} {"rank-10":>7} {"mAP":>7} '
        f'{"twin r1":>8} {"valid q":>8}')
  for v in variants:
    dist = VARIANTS[v][1](qf[v], gf[v])
    res = _rank(dist, q_pids, g_pids, q_cams, g_cams)
    cmc = res['cmc']
    twin_r1 = float('nan')
    if q_twin.any():
      tw = _rank(dist[q_twin], q_pids[q_twin], g_pids, q_cams[q_twin], g_cams)
      twin_r1 = tw['cmc'][0]
    print(f'{v:<12} {100 * cmc[0]:7.1f} {100 * cmc[4]:7.1f} {100 * cmc[9]:7.1f} '
          f'{100 * res["mAP"]:7.1f} {100 * twin_r1:8.1f} {res["num_valid_queries"]:8d}')


if __name__ == '__main__':
  app.run(main)
