"""Which tracklets and frames make up each batch: pure NumPy, no TensorFlow.

The train batch of step `s` is a pure function of (seed, s) (docs/design.md,
"Data contract"): every process computes the same global plan and keeps its own rows,
so a resumed run, or a run on a different number of processes, sees exactly
the same global batches.
"""

import dataclasses

import numpy as np

TRAIN_SAMPLERS = ('consecutive', 'restricted', 'evenly')
EVAL_SAMPLERS = ('all', 'evenly', 'full_chunks', 'sequence')  # see eval_chunks


@dataclasses.dataclass(frozen=True)
class SplitIndex:
  """Per-tracklet metadata of one split, in tracklet order.

  Attributes:
    position: (N,) record position in the stored split (array_record order
      differs from tracklet order).
    pid: (N,) dataset person ids.
    camid: (N,) cameras.
    num_frames: (N,) frames per tracklet.
    extras: further per-tracklet (N,) arrays, e.g. {'gait_twin': bool}.
  """
  position: np.ndarray
  pid: np.ndarray
  camid: np.ndarray
  num_frames: np.ndarray
  extras: dict = dataclasses.field(default_factory=dict)

  def __len__(self):
    return len(self.pid)


@dataclasses.dataclass(frozen=True)
class BatchPlan:
  """The rows of one batch: tracklet indices, frame indices, labels, aug seeds."""
  tracklets: np.ndarray  # (B,) indices into the SplitIndex
  frames: np.ndarray  # (B, T) frame indices within each tracklet
  labels: np.ndarray  # (B,) training labels 0..num_ids-1
  aug_seeds: np.ndarray  # (B, 2) int32 seeds for stateless augmentation

  def rows(self, start: int, stop: int) -> 'BatchPlan':
    return BatchPlan(self.tracklets[start:stop], self.frames[start:stop],
                     self.labels[start:stop], self.aug_seeds[start:stop])


def sample_clip(num_frames: int, clip_len: int, method: str, rng: np.random.Generator):
  """Frame indices (clip_len,) of one training clip.

  Methods:
    consecutive: a random window of consecutive frames, looped when the
      tracklet is shorter than the clip.
    restricted: the tracklet cut into `clip_len` equal chunks, one random frame
      from each (restricted random sampling, Li et al. 2018).
    evenly: torchreid's rule: N' = N - N % T frames, every (N // T)-th; short
      tracklets repeat their last frame (deterministic).
  """
  n, t = int(num_frames), int(clip_len)
  if method == 'consecutive':
    start = rng.integers(0, max(n - t, 0) + 1)
    return (start + np.arange(t)) % n
  if method == 'restricted':
    edges = np.floor(np.linspace(0, n, t + 1)).astype(np.int64)
    lo, hi = edges[:-1], np.maximum(edges[1:], edges[:-1] + 1)  # chunk [lo, hi)
    return np.minimum(lo + np.floor(rng.random(t) * (hi - lo)).astype(np.int64), n - 1)
  if method == 'evenly':
    return evenly_spaced(n, t)
  raise ValueError(f'Unknown clip sampler {method!r}; valid choices: {", ".join(TRAIN_SAMPLERS)}.')


def evenly_spaced(num_frames: int, clip_len: int):
  """torchreid's 'evenly' indices (``VideoDataset.__getitem__`` in
  torchreid/data/datasets/dataset.py, KaiyangZhou/deep-person-reid)."""
  n, t = int(num_frames), int(clip_len)
  if n >= t:
    step = (n - n % t) // t
    return np.arange(t) * step
  return np.concatenate([np.arange(n), np.full(t - n, n - 1)])


def _order_by_camera(tracklets, cams, rng):
  """Shuffles `tracklets` and interleaves cameras, so the first K taken cover as
  many cameras as the identity has (cross-camera positives for the triplet)."""
  perm = rng.permutation(len(tracklets))
  tracklets, cams = tracklets[perm], cams[perm]
  # Rank of each tracklet within its camera: take all rank-0s first, then rank-1s...
  rank_in_cam = np.zeros(len(cams), np.int64)
  for c in np.unique(cams):
    rank_in_cam[cams == c] = np.arange((cams == c).sum())
  return tracklets[np.argsort(rank_in_cam, kind='stable')]


def plan_pk_batch(index: SplitIndex, labels: np.ndarray, *, seed: int, step: int,
                  num_identities: int, num_instances: int, clip_len: int,
                  clip_sampler: str, partners=None) -> BatchPlan:
  """The global PK batch of `step`: P identities x K tracklets x T frames.

  Rows are grouped by identity (row p*K + k is the k-th tracklet of the p-th
  identity). An identity with fewer than K tracklets repeats them.

  Args:
    index: the train split.
    labels: (N,) training label of each tracklet, 0..num_ids-1.
    seed, step: the batch is a pure function of these.
    num_identities: P, at most the number of training identities.
    num_instances: K.
    clip_len: T.
    clip_sampler: see `sample_clip`.
    partners: optional (num_ids,) label drawn together with each label (-1:
      none; symmetric pairs): see `choose_identities`.
  """
  num_ids = int(labels.max()) + 1
  if num_identities > num_ids:
    raise ValueError(f'config.num_identities = {num_identities} exceeds the {num_ids} '
                     'training identities of the dataset.')
  rng = np.random.default_rng([seed, step])
  by_label = _tracklets_by_label(labels)
  if partners is None:
    chosen = rng.choice(num_ids, size=num_identities, replace=False)
  else:
    chosen = choose_identities(rng.permutation(num_ids), partners, num_identities)
  tracklets = []
  for label in chosen:
    own = _order_by_camera(by_label[label], index.camid[by_label[label]], rng)
    reps = -(-num_instances // len(own))  # ceil
    tracklets.append(np.tile(own, reps)[:num_instances])
  tracklets = np.concatenate(tracklets)
  frames = np.stack([sample_clip(index.num_frames[t], clip_len, clip_sampler, rng)
                     for t in tracklets])
  aug_seeds = rng.integers(0, 2**31 - 1, size=(len(tracklets), 2), dtype=np.int64)
  return BatchPlan(tracklets, frames, labels[tracklets].astype(np.int32),
                   aug_seeds.astype(np.int32))


def choose_identities(order, partners, num_identities: int) -> np.ndarray:
  """P identities from a random `order` of all labels, pairs kept together.

  Walking `order`: a label without a partner is taken; the lower label of a
  pair brings both (when two places are left); the higher one is skipped (its
  pair comes with the lower). So every identity is drawn about as often as
  without pairing (P / N), and a pair that is drawn is always in one batch.
  """
  chosen = []
  for label in order:
    partner = int(partners[label])
    if partner < 0:
      chosen.append(int(label))
    elif label < partner and len(chosen) + 2 <= num_identities:
      chosen += [int(label), partner]
    if len(chosen) == num_identities:
      break
  if len(chosen) < num_identities:  # one place left and only pairs remain: split one
    chosen += [int(x) for x in order if int(x) not in chosen][:num_identities - len(chosen)]
  return np.asarray(chosen)


def _tracklets_by_label(labels):
  order = np.argsort(labels, kind='stable')
  bounds = np.searchsorted(labels[order], np.arange(labels.max() + 2))
  return [order[bounds[i]:bounds[i + 1]] for i in range(labels.max() + 1)]


def process_rows(global_batch: int, process_index: int, process_count: int):
  """The [start, stop) rows of the global batch that this process builds."""
  if global_batch % process_count:
    raise ValueError(f'The global batch of {global_batch} clips cannot be split evenly '
                     f'over {process_count} processes.')
  local = global_batch // process_count
  return process_index * local, (process_index + 1) * local


def eval_chunks(num_frames: int, clip_len: int, method: str = 'all', max_chunks: int = 0):
  """Frame indices of the eval clips of one tracklet, (num_chunks, T).

  Methods:
    all: every frame, in consecutive chunks of T; the last chunk is padded by
      cycling its own frames (not the tracklet's first ones).
    evenly: one clip of T evenly spaced frames (torchreid's default).
    full_chunks: the M3D paper's test protocol: floor(L / T) consecutive,
      non-overlapping clips of T frames ('all' without its padded last chunk);
      a tracklet shorter than T gives one clip cycling its frames.
    sequence: the chunks of 'all', for whole-sequence features: the model's
      per-frame part runs on them, its temporal part once over the tracklet's
      real frames (``real_frames``; ``jaxreid.evaluation.sequence_features``).
  `max_chunks` > 0 keeps only the first chunks ('all' and 'full_chunks').
  """
  n, t = int(num_frames), int(clip_len)
  if method == 'evenly':
    return evenly_spaced(n, t)[None]
  if method == 'full_chunks':
    count = max(1, n // t)
    if max_chunks:
      count = min(count, max_chunks)
    return np.arange(count * t).reshape(count, t) % n
  if method not in ('all', 'sequence'):
    raise ValueError(f"Unknown eval sampler {method!r}; valid choices: "
                     f"{', '.join(EVAL_SAMPLERS)}.")
  chunks = []
  for start in range(0, n, t):
    own = n - start  # frames left for this chunk
    chunks.append(start + np.arange(t) % own)
    if max_chunks and len(chunks) == max_chunks:
      break
  return np.stack(chunks)


def real_frames(num_frames: int, chunk) -> int:
  """How many leading frames of an 'all' / 'sequence' chunk are the
  tracklet's own (the rest cycle them): min(T, frames left from its start)."""
  return min(len(chunk), int(num_frames) - int(chunk[0]))


BATCH_SAMPLERS = ('pk', 'pairs')


def plan_pair_batch(index: SplitIndex, labels: np.ndarray, *, seed: int, step: int,
                    num_pairs: int, clip_len: int, clip_sampler: str) -> BatchPlan:
  """The global batch of `step` as siamese pairs ([CRF] section 2.6, docs/references.md).

  Rows (2i, 2i + 1) form pair i. Even pairs are positive, odd pairs negative,
  so every batch holds as many of each (the paper: "the equal number of
  positive and negative pairs in each iteration"; McLaughlin alternates them,
  one pair per iteration). A positive pair is two tracklets of one identity
  from two different cameras (cameras drawn at random among the identity's,
  then a tracklet from each), or, for an identity seen by one camera only, two
  of its tracklets (the same one twice, with its own clip each, if it has
  one). A negative pair is two different identities, each a random tracklet
  from any camera ("different person under random camera"). Labels stay the
  training identities, so a pair is positive exactly when its labels agree.

  Args:
    index: the train split.
    labels: (N,) training label of each tracklet, 0..num_ids-1 (at least 2 ids).
    seed, step: the batch is a pure function of these.
    num_pairs: pairs per global batch, even (half positive, half negative).
    clip_len: T.
    clip_sampler: see `sample_clip`.
  """
  if num_pairs < 2 or num_pairs % 2:
    raise ValueError(f'config.num_pairs = {num_pairs}: expected an even number >= 2 '
                     '(half positive and half negative pairs).')
  num_ids = int(labels.max()) + 1
  if num_ids < 2:
    raise ValueError('The pair sampler needs at least 2 training identities for negative pairs.')
  rng = np.random.default_rng([seed, step])
  by_label = _tracklets_by_label(labels)
  tracklets = []
  for pair in range(num_pairs):
    if pair % 2 == 0:  # positive
      own = by_label[rng.integers(num_ids)]
      cams = np.unique(index.camid[own])
      if len(cams) >= 2:
        cam_a, cam_b = rng.choice(cams, size=2, replace=False)
        tracklets += [rng.choice(own[index.camid[own] == cam_a]),
                      rng.choice(own[index.camid[own] == cam_b])]
      else:
        tracklets += list(rng.choice(own, size=2, replace=len(own) < 2))
    else:  # negative
      id_a, id_b = rng.choice(num_ids, size=2, replace=False)
      tracklets += [rng.choice(by_label[id_a]), rng.choice(by_label[id_b])]
  tracklets = np.asarray(tracklets, np.int64)
  frames = np.stack([sample_clip(index.num_frames[t], clip_len, clip_sampler, rng)
                     for t in tracklets])
  aug_seeds = rng.integers(0, 2**31 - 1, size=(len(tracklets), 2), dtype=np.int64)
  return BatchPlan(tracklets, frames, labels[tracklets].astype(np.int32),
                   aug_seeds.astype(np.int32))
