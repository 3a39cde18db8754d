"""Split plan of the synthetic video re-ID dataset (pure Python / NumPy).

:func:`make_split_plan` turns generation parameters into the list of tracklets of
each split (pid, camera, length, identity, twin flag) without rendering anything,
so statistics can be checked cheaply; :func:`render_spec` renders and JPEG-encodes
one planned tracklet.

Identity indices (the render seeds) are laid out as

  [0, num_train_ids)                          training identities, pid = index + 1
  [num_train_ids, + num_test_ids)             test identities,     pid = index + 1
  [.., + num_distractors)                     distractors,         pid = 0
  [.., + num_junk)                            junk detections,     pid = -1

Every training / test identity is seen by ``k`` cameras, ``k`` uniform in
[min_cameras_per_id, num_cameras], with 1..max_tracklets_per_camera tracklets per
camera (uniform). The MARS-like query / gallery split of a test identity seen by
``k`` cameras: a random order of its cameras; the first is its *anchor*, the next
``k // 2`` are its query cameras. The first tracklet of each query camera is a
query, and so is the anchor's first tracklet when the anchor has two or more;
all other tracklets go to the gallery. So every query from a query camera has a
cross-camera match in the gallery (the anchor's tracklets), and an anchor query
has one unless ``k == 2`` and the other camera has a single tracklet; queries
without a match are skipped by the torchreid protocol, as in MARS. The gallery also holds one tracklet of every
distractor (a random person seen once, pid 0) and every junk tracklet (a bad
detection, pid -1).

Gait twins: ``round(twin_fraction * n / 2)`` disjoint pairs are drawn among the
training identities and among the test identities; the second of a pair copies
the first's :class:`~generative_model.Appearance` exactly and gets a clearly different
:class:`~generative_model.Gait` (:func:`generative_model.make_gait_twin`).

Randomness: identity ``i`` is sampled from ``default_rng([seed, 0, i])``, camera
``c`` from ``default_rng([seed, 1, c])``, the ``j``-th tracklet of identity ``i``
is rendered with ``default_rng([seed, 2, i, j])``, identity ``i``'s camera and
length plan comes from ``default_rng([seed, 3, i])``, twin pairs of split ``s``
(0 train, 1 test) from ``default_rng([seed, 4, s])`` and a twin's gait from
``default_rng([seed, 5, i])``. Nothing depends on generation order.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from data_pipelines.synthetic_video_reid import generative_model, render

SPLITS = ('train', 'query', 'gallery')


@dataclasses.dataclass(frozen=True)
class GenerationParams:
  """All knobs of the generator. Defaults are those of the `default` config."""

  num_train_ids: int = 150
  num_test_ids: int = 100
  num_cameras: int = 6
  num_distractors: int = 60
  num_junk: int = 20
  min_cameras_per_id: int = 2
  max_tracklets_per_camera: int = 2
  min_len: int = 8
  max_len: int = 48
  height: int = 64
  width: int = 32
  twin_fraction: float = 0.2
  jpeg_quality: int = 90
  seed: int = 0

  def validate(self) -> None:
    if self.num_cameras < 2:
      raise ValueError('num_cameras must be >= 2')
    if not 2 <= self.min_cameras_per_id <= self.num_cameras:
      raise ValueError('need 2 <= min_cameras_per_id <= num_cameras')
    if self.max_tracklets_per_camera < 1:
      raise ValueError('max_tracklets_per_camera must be >= 1')
    if not 1 <= self.min_len <= self.max_len:
      raise ValueError('need 1 <= min_len <= max_len')
    if not 0.0 <= self.twin_fraction <= 1.0:
      raise ValueError('twin_fraction must be in [0, 1]')
    if self.num_train_ids < 1 or self.num_test_ids < 1:
      raise ValueError('need at least one train and one test identity')


@dataclasses.dataclass(frozen=True)
class TrackletSpec:
  """One planned tracklet."""

  split: str
  tracklet: int  # index within its split (= example key and position)
  pid: int  # dataset person id; 0 distractor, -1 junk
  camid: int
  num_frames: int
  identity: int  # global identity index (render seed)
  occurrence: int  # index of this tracklet among its identity's tracklets
  gait_twin: bool  # the identity has a gait twin
  junk: bool = False


@dataclasses.dataclass(frozen=True)
class Assignment:
  """Cameras of a train / test identity."""

  identity: int
  cameras: tuple[int, ...]  # sorted
  counts: tuple[int, ...]  # tracklets per camera, aligned with `cameras`
  lengths: tuple[tuple[int, ...], ...]  # frames of each tracklet per camera
  anchor: int  # anchor camera (used for test identities)
  query_cameras: tuple[int, ...]  # k // 2 cameras other than the anchor (test)


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  params: GenerationParams
  splits: dict[str, list[TrackletSpec]]
  assignments: dict[int, Assignment]
  twin_pairs: tuple[tuple[int, int], ...]  # (original, twin) identity indices
  train_identities: tuple[int, ...]
  test_identities: tuple[int, ...]
  distractor_identities: tuple[int, ...]
  junk_identities: tuple[int, ...]

  def stats(self) -> dict[str, dict[str, int]]:
    """Per split: tracklets, identities, frames, min/max length, twin tracklets."""
    out = {}
    for name, specs in self.splits.items():
      lengths = [s.num_frames for s in specs]
      out[name] = dict(
          tracklets=len(specs),
          ids=len({s.pid for s in specs if s.pid > 0}),
          distractors=sum(s.pid == 0 for s in specs),
          junk=sum(s.pid == -1 for s in specs),
          frames=int(sum(lengths)),
          min_len=min(lengths) if lengths else 0,
          max_len=max(lengths) if lengths else 0,
          twin_tracklets=sum(s.gait_twin for s in specs),
      )
    q, g = self.splits['query'], self.splits['gallery']
    g_cams = {}
    for s in g:
      g_cams.setdefault(s.pid, set()).add(s.camid)
    out['query']['with_cross_camera_match'] = sum(
        bool(g_cams.get(s.pid, set()) - {s.camid}) for s in q)
    return out


def _twin_pairs(n: int, offset: int, fraction: float, rng: np.random.Generator):
  n_pairs = min(int(round(fraction * n / 2)), n // 2)
  perm = rng.permutation(n)[: 2 * n_pairs] + offset
  return [(int(a), int(b)) for a, b in perm.reshape(-1, 2)]


def _assign(p: GenerationParams, identity: int) -> Assignment:
  rng = np.random.default_rng([p.seed, 3, identity])
  k = int(rng.integers(p.min_cameras_per_id, p.num_cameras + 1))
  cams = tuple(sorted(int(c) for c in rng.choice(p.num_cameras, k, replace=False)))
  counts = tuple(int(c) for c in rng.integers(1, p.max_tracklets_per_camera + 1, k))
  lengths = tuple(tuple(int(x) for x in rng.integers(p.min_len, p.max_len + 1, c))
                  for c in counts)
  order = tuple(int(c) for c in rng.permutation(cams))
  return Assignment(identity, cams, counts, lengths, order[0], order[1:1 + k // 2])


def make_split_plan(p: GenerationParams) -> SplitPlan:
  """The full split plan of generation parameters ``p``."""
  p.validate()
  n_tr, n_te = p.num_train_ids, p.num_test_ids
  train_ids = tuple(range(n_tr))
  test_ids = tuple(range(n_tr, n_tr + n_te))
  distractors = tuple(range(n_tr + n_te, n_tr + n_te + p.num_distractors))
  first_junk = n_tr + n_te + p.num_distractors
  junk_ids = tuple(range(first_junk, first_junk + p.num_junk))
  pairs = (_twin_pairs(n_tr, 0, p.twin_fraction, np.random.default_rng([p.seed, 4, 0])) +
           _twin_pairs(n_te, n_tr, p.twin_fraction, np.random.default_rng([p.seed, 4, 1])))
  twins = {i for pair in pairs for i in pair}

  assignments = {i: _assign(p, i) for i in train_ids + test_ids}
  splits: dict[str, list[TrackletSpec]] = {s: [] for s in SPLITS}

  def add(split, pid, cam, n, identity, occ, junk=False):
    specs = splits[split]
    specs.append(TrackletSpec(split, len(specs), pid, cam, n, identity, occ,
                              identity in twins, junk))

  for i in train_ids:
    a = assignments[i]
    occ = 0
    for cam, lens in zip(a.cameras, a.lengths):
      for n in lens:
        add('train', i + 1, cam, n, i, occ)
        occ += 1
  for i in test_ids:
    a = assignments[i]
    occ = 0
    for cam, lens in zip(a.cameras, a.lengths):
      for j, n in enumerate(lens):
        is_query = j == 0 and (cam in a.query_cameras or (cam == a.anchor and len(lens) >= 2))
        add('query' if is_query else 'gallery', i + 1, cam, n, i, occ)
        occ += 1
  for i in distractors:
    rng = np.random.default_rng([p.seed, 3, i])
    add('gallery', 0, int(rng.integers(p.num_cameras)),
        int(rng.integers(p.min_len, p.max_len + 1)), i, 0)
  for i in junk_ids:
    rng = np.random.default_rng([p.seed, 3, i])
    add('gallery', -1, int(rng.integers(p.num_cameras)),
        int(rng.integers(p.min_len, max(p.min_len, p.max_len // 2) + 1)), i, 0, junk=True)

  return SplitPlan(p, splits, assignments, tuple(pairs), train_ids, test_ids,
                   distractors, junk_ids)


def train_twin_pids(params: GenerationParams) -> list[tuple[int, int]]:
  """The (pid, pid) gait-twin pairs among the training identities (pid = index + 1)."""
  plan = make_split_plan(params)
  train = set(plan.train_identities)
  return [(a + 1, b + 1) for a, b in plan.twin_pairs if a in train]


def train_twin_partners(params: GenerationParams, train_pid_values) -> np.ndarray:
  """The training gait-twin pairs as (num_ids,) partner labels (-1: no twin);
  labels index the sorted training pids ``train_pid_values``."""
  label_of = {int(pid): label for label, pid in enumerate(train_pid_values)}
  partners = np.full(len(train_pid_values), -1, np.int64)
  for a, b in train_twin_pids(params):
    partners[label_of[a]], partners[label_of[b]] = label_of[b], label_of[a]
  return partners


@functools.lru_cache(maxsize=4096)
def _identity(seed: int, index: int, twin_source: int) -> generative_model.Identity:
  if twin_source >= 0:
    base = _identity(seed, twin_source, -1)
    return generative_model.make_gait_twin(base, np.random.default_rng([seed, 5, index]))
  return generative_model.sample_identity(np.random.default_rng([seed, 0, index]))


def identity_params(plan: SplitPlan, index: int) -> generative_model.Identity:
  """The rendered person of identity ``index`` (twins resolved)."""
  source = {b: a for a, b in plan.twin_pairs}.get(index, -1)
  return _identity(plan.params.seed, index, source)


@functools.lru_cache(maxsize=256)
def _camera(seed: int, camid: int) -> generative_model.Camera:
  return generative_model.sample_camera(np.random.default_rng([seed, 1, camid]))


def camera_params(params: GenerationParams, camid: int) -> generative_model.Camera:
  return _camera(params.seed, camid)


def render_spec(plan: SplitPlan, spec: TrackletSpec) -> np.ndarray:
  """Renders the planned tracklet: uint8 (num_frames, height, width, 3)."""
  p = plan.params
  return render.render_tracklet(
      identity_params(plan, spec.identity), camera_params(p, spec.camid), spec.num_frames,
      np.random.default_rng([p.seed, 2, spec.identity, spec.occurrence]),
      p.height, p.width, junk=spec.junk)


def encode_spec(plan: SplitPlan, spec: TrackletSpec) -> list[bytes]:
  """Renders the planned tracklet and encodes its frames as JPEG bytes."""
  return render.encode_jpeg(render_spec(plan, spec), plan.params.jpeg_quality)
