"""The hand-made gait statistics of ``experiments/gait_signal.py`` (no absl
flags here, so tests can import it)."""

import dataclasses
import statistics

import numpy as np

LEG_ROWS = 0.4  # the lower 40% of the frame


def motion_energy(frames: np.ndarray) -> float:
  """(n, H, W, 3) uint8 -> the leg region's mean absolute frame difference."""
  grey = frames.astype(np.float32).mean(axis=-1)  # (n, H, W)
  legs = grey[:, int(round(grey.shape[1] * (1 - LEG_ROWS))):]
  return float(np.abs(np.diff(legs, axis=0)).mean())


def mean_colour(frames: np.ndarray) -> np.ndarray:
  return frames.reshape(-1, 3).astype(np.float32).mean(axis=0)


def choice_accuracy(query, own, twin, distance) -> list:
  """1 where the query is closer to `own` than to `twin`, per triplet."""
  return [float(distance(query, a) < distance(query, b)) for a in own for b in twin]


def stored_frames(data):
  """(split, tracklet) -> its frames as stored, every one in order."""
  return lambda split, t: data.tracklet_frames(split, t, int(data.index[split].num_frames[t]))


def rendered_frames(plan, nuisances: bool):
  """(split, tracklet) -> the tracklet rendered again (no JPEG), with or
  without its camera's jitter, noise and blur."""
  from data_pipelines.synthetic_video_reid import render, splits  # pylint: disable=g-import-not-at-top

  def frames(split, t):
    spec = plan.splits[split][t]
    camera = splits.camera_params(plan.params, spec.camid)
    if not nuisances:
      camera = dataclasses.replace(camera, jitter=0.0, noise_std=0.0, blur_prob=0.0)
    p = plan.params
    return render.render_tracklet(
        splits.identity_params(plan, spec.identity), camera, spec.num_frames,
        np.random.default_rng([p.seed, 2, spec.identity, spec.occurrence]), p.height, p.width,
        junk=spec.junk)

  return frames


def measure(index, frames_of, twin_pairs) -> dict:
  """The three accuracies (module docstring) over the query and gallery
  splits of `index` ({split: SplitIndex}), frames from `frames_of(split, t)`."""
  q, g = index['query'], index['gallery']
  twin_pids = {a + 1 for pair in twin_pairs for a in pair}  # test pids are index + 1
  stats = {}
  for split, ix in (('query', q), ('gallery', g)):
    for t in np.flatnonzero(np.isin(ix.pid, list(twin_pids))):
      frames = frames_of(split, int(t))
      stats[split, int(t)] = (motion_energy(frames), mean_colour(frames))
  twin_of = {}
  for a, b in twin_pairs:  # identity indices
    twin_of[a + 1], twin_of[b + 1] = b + 1, a + 1
  motion, colour, ordered = [], [], []
  scalar = lambda x, y: abs(x - y)
  vector = lambda x, y: float(np.linalg.norm(x - y))
  for i in np.flatnonzero(np.isin(q.pid, list(twin_of))):
    pid, cam = int(q.pid[i]), int(q.camid[i])
    own = [t for t in range(len(g.pid)) if g.pid[t] == pid and g.camid[t] != cam]
    twin = [t for t in range(len(g.pid)) if g.pid[t] == twin_of[pid] and g.camid[t] != cam]
    if not own or not twin:
      continue
    motion += choice_accuracy(stats['query', i][0], [stats['gallery', t][0] for t in own],
                              [stats['gallery', t][0] for t in twin], scalar)
    colour += choice_accuracy(stats['query', i][1], [stats['gallery', t][1] for t in own],
                              [stats['gallery', t][1] for t in twin], vector)
  for a, b in twin_pairs:
    energy = lambda pid: [stats['gallery', t][0] for t in range(len(g.pid)) if g.pid[t] == pid]
    ea, eb = energy(a + 1), energy(b + 1)
    if ea and eb:
      ordered.append(float(all(x < y for x in ea for y in eb) or all(x > y for x in ea
                                                                      for y in eb)))
  return {'twin_pairs': len(twin_pairs), 'triplets': len(motion),
          'motion_energy_choice_accuracy': statistics.mean(motion),
          'mean_colour_choice_accuracy': statistics.mean(colour),
          'pairs_fully_ordered_by_motion_energy': statistics.mean(ordered)}


def periods(gaits_of_tracklets, twin_gaits, clip_lens=(8, 16)) -> dict:
  """What a clip of T frames can show of the twins' gaits, from the
  generator's own parameters (no pixels).

  Args:
    gaits_of_tracklets: the `Gait` of every test tracklet of a twin identity.
    twin_gaits: (Gait, Gait) per twin pair.
  Returns:
    the gait period (1 / frequency, in frames) over those tracklets: min,
    median, max; per T the share of tracklets whose period is longer than T
    (a clip of T frames shows less than one cycle) and the median cycles a
    clip shows; and the pairs whose thigh swing speed (stride x frequency, the
    angular speed of the legs) is within a factor 1.3, which a per-frame
    motion amount cannot tell apart.
  """
  period = np.array([1.0 / g.frequency for g in gaits_of_tracklets])
  speed_ratio = [max(a.stride * a.frequency, b.stride * b.frequency) /
                 min(a.stride * a.frequency, b.stride * b.frequency) for a, b in twin_gaits]
  return {'tracklets': len(period), 'period_min': float(period.min()),
          'period_median': float(np.median(period)), 'period_max': float(period.max()),
          'clip': {int(t): {'share_under_one_cycle': float(np.mean(period > t)),
                            'median_cycles': float(np.median(t / period))} for t in clip_lens},
          'pairs': len(speed_ratio),
          'pairs_with_swing_speed_within_1.3x': int(np.sum(np.array(speed_ratio) < 1.3))}
