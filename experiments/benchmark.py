r"""Micro-benchmarks, one suite per subsystem.

  python -m experiments.benchmark --suite=ranking
  python -m experiments.benchmark --suite=ranking --labels=mars
  python -m experiments.benchmark --suite=ranking --input=features \
      --num_query=5000 --num_gallery=30000 --reference=false

Suites live in the `SUITES` dict (name -> function(flags) returning a dict of
results, and printing a small table). To add one, write
`run_<name>_benchmark(flags)`, define any flags it needs next to its own, and
register it in `SUITES`. Figures measured so far: docs/benchmarks.md.
"""

import os
import resource
import statistics
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

from absl import app
from absl import flags
import jax
import numpy as np

from experiments import bench_gpu
from experiments import bench_init_compile
from experiments import bench_pipeline
from experiments import bench_scan_compile
from experiments import bench_scaling
from experiments import bench_train_step
from jaxreid.evaluation import distance
from jaxreid.evaluation import ranking

flags.DEFINE_string('pipeline_backbone', 'resnet50', 'pipeline suite: backbone of the '
                    'train step whose demand is measured.')
flags.DEFINE_integer('pipeline_batches', 20, 'pipeline suite: PK batches timed.')
flags.DEFINE_integer('pipeline_step_clips', 4, 'pipeline suite: clips per timed train step.')
flags.DEFINE_integer('pipeline_step_repeats', 3, 'pipeline suite: timed train steps.')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed repeats (median).')
_SEED = flags.DEFINE_integer('seed', 0, 'Random seed of the synthetic data.')

# --- ranking ---------------------------------------------------------------
_NUM_QUERY = flags.DEFINE_integer('num_query', 1980, 'Queries (MARS: 1980).')
_NUM_GALLERY = flags.DEFINE_integer('num_gallery', 9330,
                                    'Gallery items (MARS: 9330).')
_NUM_IDS = flags.DEFINE_integer('num_ids', 625, 'Identities in the test set.')
_NUM_CAMS = flags.DEFINE_integer('num_cams', 6, 'Cameras.')
_DISTRACTORS = flags.DEFINE_float(
    'distractor_fraction', 0.35,
    'Fraction of the gallery with pid 0 (MARS: 3248 / 9330).')
_FEATURE_DIM = flags.DEFINE_integer('feature_dim', 128,
                                    'Dim of the synthetic features.')
_LABELS = flags.DEFINE_enum(
    'labels', 'synthetic', ['synthetic', 'mars'],
    'synthetic: random MARS-like labels; mars: the real MARS test split '
    'labels from --mars_info_dir (ignores --num_query/--num_gallery).')
_MARS_INFO_DIR = flags.DEFINE_string(
    'mars_info_dir', None,
    'With --labels=mars: the info/ folder of the MARS release (MARS-evaluation), with '
    'tracks_test_info.mat and query_IDX.mat.')
_INPUT = flags.DEFINE_enum(
    'input', 'distmat', ['distmat', 'features'],
    'distmat: time evaluate_rank on a host (Q, G) matrix; features: time '
    'evaluate_features, which never builds the matrix.')
_METRIC = flags.DEFINE_enum('metric', 'euclidean', list(distance.METRICS),
                            'Distance metric.')
_BLOCK_SIZE = flags.DEFINE_integer('block_size', 64,
                                   'evaluate_rank block size.')


class _ReferenceParser(flags.ArgumentParser):
  """--reference: true / false (ranking's NumPy loop) or torch (train_step's
  PyTorch eager networks): one flag, so both read `--reference=...`."""

  def parse(self, argument):
    value = str(argument).lower()
    if value in ('true', '1', 'yes', 'false', '0', 'no'):
      return value in ('true', '1', 'yes')
    if value == 'torch':
      return value
    raise ValueError(f'expected true or false (ranking: time the NumPy loop beside) or torch '
                     f'(train_step: time the same networks in PyTorch eager beside); got '
                     f'{argument!r}')

  def flag_type(self):
    return 'string'


_REFERENCE = flags.DEFINE(
    _ReferenceParser(), 'reference', True, 'ranking: true / false, also time the NumPy '
    'per-query loop and compare; train_step: torch, time the 2D and I3D ResNet-50 train step '
    'beside PyTorch eager (experiments/bench_torch_compare.py; other values: no reference).')
_NONCONTIGUOUS = flags.DEFINE_boolean(
    'noncontiguous', True, 'With --input=distmat, also time evaluate_rank on the same '
    'matrix as a column slice, distmat[:, keep][:, :G] (not C-contiguous), and check '
    'that it gives identical results.')


def _maxrss_mb() -> float:
  """Peak resident set size of this process so far (Linux: KiB -> MiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _timed(fn: Callable[[], object], repeats: int) -> Tuple[object, float]:
  """(last result, median wall seconds over `repeats` calls)."""
  times, out = [], None
  for _ in range(repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return out, statistics.median(times)


class _CompileTimer:
  """Sums JAX's own compile-phase durations (trace, lower, XLA compile)."""

  def __init__(self):
    self.seconds = 0.0
    self.active = False
    jax.monitoring.register_event_duration_secs_listener(self._on_event)

  def _on_event(self, name: str, duration: float, **unused_kwargs) -> None:
    if self.active and name.startswith('/jax/core/compile/'):
      self.seconds += duration


def _print_table(title: str, rows: Sequence[Tuple[str, str]]) -> None:
  width = max(len(name) for name, _ in rows)
  print(f'\n{title}')
  print('-' * (width + 24))
  for name, value in rows:
    print(f'{name:<{width}}  {value}')
  print('-' * (width + 24))


# ----------------------------------------------------------------------------
# Ranking.
# ----------------------------------------------------------------------------


def _synthetic_labels(rng: np.random.Generator, num_query: int,
                      num_gallery: int, num_ids: int, num_cams: int,
                      distractor_fraction: float):
  """MARS-like labels: skewed tracklets per id, pid 0 distractors."""
  # Gamma(1) weights give the long tail of tracklets per identity that MARS
  # has (a few ids with 100+ gallery tracklets, most with around 10).
  weights = rng.gamma(1.0, size=num_ids)
  weights /= weights.sum()
  num_distractors = int(round(distractor_fraction * num_gallery))
  g_pids = np.concatenate([
      np.zeros(num_distractors, np.int64),
      1 + rng.choice(num_ids, num_gallery - num_distractors, p=weights)])
  g_cams = rng.integers(0, num_cams, num_gallery)
  q_pids = 1 + rng.integers(0, num_ids, num_query)
  q_cams = rng.integers(0, num_cams, num_query)
  return q_pids, g_pids, q_cams, g_cams


def _mars_labels(info_dir: str):
  """The real MARS test split as torchreid loads it (query / gallery)."""
  # Imported here: scipy is needed only for --labels=mars.
  import scipy.io  # pylint: disable=g-import-not-at-top
  files = [os.path.join(info_dir or '', n) for n in ('tracks_test_info.mat', 'query_IDX.mat')]
  if not info_dir or not all(os.path.isfile(f) for f in files):
    sys.exit(f'error: --labels=mars needs --mars_info_dir=<the info/ folder of the MARS '
             f'release, with tracks_test_info.mat and query_IDX.mat>; got {info_dir!r}.')
  info = scipy.io.loadmat(f'{info_dir}/tracks_test_info.mat')
  info = info['track_test_info']  # (12180, 4): start, end, pid, cam
  query_idx = scipy.io.loadmat(f'{info_dir}/query_IDX.mat')['query_IDX']
  query_idx = query_idx.ravel().astype(np.int64) - 1  # 1-based in MATLAB
  pids, cams = info[:, 2].astype(np.int64), info[:, 3].astype(np.int64)
  is_gallery = np.ones(len(info), bool)
  is_gallery[query_idx] = False
  is_gallery &= pids != -1  # torchreid drops junk at load time
  return (pids[query_idx], pids[is_gallery], cams[query_idx],
          cams[is_gallery])


def _synthetic_features(rng: np.random.Generator, pids: np.ndarray,
                        centers: np.ndarray) -> np.ndarray:
  """Identity center + noise; every distractor gets its own random center."""
  feats = centers[pids] + 1.2 * rng.standard_normal(
      (len(pids), centers.shape[1]))
  distractor = pids == 0
  feats[distractor] = 1.5 * rng.standard_normal(
      (distractor.sum(), centers.shape[1]))
  return feats.astype(np.float32)


def numpy_reference_rank(distmat, q_pids, g_pids, q_camids, g_camids,
                         max_rank: int = 50) -> Dict[str, object]:
  """The per-query loop of torchreid's Python path, vectorised per query.

  argsort each row (stable, the documented tie rule), drop same-pid
  same-camera items, cumsum the matches; queries without a match are
  skipped. Kept deliberately plain: it is the baseline being timed.
  """
  num_query, num_gallery = distmat.shape
  max_rank = min(max_rank, num_gallery)
  all_cmc, all_ap, all_inp = [], [], []
  for i in range(num_query):
    order = np.argsort(distmat[i], kind='stable')
    same_pid = g_pids[order] == q_pids[i]
    keep = ~(same_pid & (g_camids[order] == q_camids[i]))
    raw = same_pid[keep]
    if not raw.any():
      continue
    hits = np.cumsum(raw)
    # Slice before np.minimum: a slice of the full-length result would be a
    # view that keeps all G entries of every query alive.
    all_cmc.append(np.minimum(hits[:max_rank], 1))
    positions = np.arange(1, len(raw) + 1)
    all_ap.append(np.sum(raw * hits / positions) / hits[-1])
    last = np.flatnonzero(raw)[-1]
    all_inp.append(hits[-1] / (last + 1.0))
  return dict(cmc=np.mean(np.asarray(all_cmc, np.float32), axis=0),
              mAP=float(np.mean(all_ap)), mINP=float(np.mean(all_inp)),
              num_valid_queries=len(all_ap))


def run_ranking_benchmark(flag_values) -> Dict[str, object]:
  """Times evaluate_rank (or evaluate_features) against the NumPy loop."""
  rng = np.random.default_rng(flag_values.seed)
  if flag_values.labels == 'mars':
    labels = _mars_labels(flag_values.mars_info_dir)
  else:
    labels = _synthetic_labels(rng, flag_values.num_query,
                               flag_values.num_gallery, flag_values.num_ids,
                               flag_values.num_cams,
                               flag_values.distractor_fraction)
  q_pids, g_pids, q_cams, g_cams = labels
  num_query, num_gallery = len(q_pids), len(g_pids)
  centers = rng.standard_normal(
      (max(q_pids.max(), g_pids.max()) + 1, flag_values.feature_dim))
  qf = _synthetic_features(rng, q_pids, centers)
  gf = _synthetic_features(rng, g_pids, centers)
  rss_inputs = _maxrss_mb()

  need_distmat = flag_values.input == 'distmat' or flag_values.reference
  distmat = (distance.pairwise_distance(qf, gf, flag_values.metric)
             if need_distmat else None)
  rss_distmat = _maxrss_mb()

  if flag_values.input == 'distmat':
    evaluate = lambda: ranking.evaluate_rank(
        distmat, q_pids, g_pids, q_cams, g_cams,
        block_size=flag_values.block_size)
  else:
    evaluate = lambda: ranking.evaluate_features(
        qf, gf, q_pids, g_pids, q_cams, g_cams, metric=flag_values.metric,
        block_size=flag_values.block_size)
  # evaluate_* return host NumPy results, so each call has finished when it
  # returns; _timed also calls block_until_ready on them.
  compile_timer = _CompileTimer()
  compile_timer.active = True
  start = time.perf_counter()
  out = evaluate()
  first_call = time.perf_counter() - start
  compile_timer.active = False
  out, jax_time = _timed(evaluate, flag_values.repeats)
  rss_jax = _maxrss_mb()

  results = dict(
      num_query=num_query, num_gallery=num_gallery,
      num_valid_queries=out['num_valid_queries'], input=flag_values.input,
      labels=flag_values.labels, jax_s=jax_time, first_call_s=first_call,
      compile_s=compile_timer.seconds, rank1=float(out['cmc'][0]),
      mAP=out['mAP'], mINP=out['mINP'], maxrss_inputs_mb=rss_inputs,
      maxrss_distmat_mb=rss_distmat, maxrss_after_jax_mb=rss_jax,
      backend=jax.default_backend(), devices=len(jax.devices()))
  rows = [
      ('problem', f'{num_query} queries x {num_gallery} gallery '
                  f'({flag_values.labels} labels, input={flag_values.input}, '
                  f'block_size={flag_values.block_size})'),
      ('backend', f'{jax.default_backend()} ({len(jax.devices())} device(s))'),
      ('valid queries', f"{out['num_valid_queries']}"),
      ('R1 / mAP / mINP', f"{out['cmc'][0]:.4f} / {out['mAP']:.4f} / "
                          f"{out['mINP']:.4f}"),
      ('jax: first call', f'{first_call:.3f} s (compile + run)'),
      ('jax: compile', f'{compile_timer.seconds:.3f} s (trace + lower + XLA, '
                       'in the first call)'),
      (f'jax: median of {flag_values.repeats}', f'{jax_time:.4f} s'),
  ]
  if flag_values.input == 'distmat' and flag_values.noncontiguous:
    # What users write: drop some columns by a mask, then keep the first G.
    # Fancy indexing along axis 1 returns a Fortran-ordered array.
    extra = max(1, num_gallery // 10)
    wide = np.concatenate([distmat, distmat[:, :extra]], axis=1)  # (Q, G + extra)
    keep = np.arange(num_gallery + extra)
    sliced = wide[:, keep][:, :num_gallery]
    del wide
    sliced_out, sliced_time = _timed(lambda: ranking.evaluate_rank(
        sliced, q_pids, g_pids, q_cams, g_cams, block_size=flag_values.block_size),
                                     flag_values.repeats)
    identical = (np.array_equal(sliced_out['cmc'], out['cmc']) and
                 np.array_equal(sliced_out['ap_per_query'], out['ap_per_query'],
                                equal_nan=True))
    del sliced
    results.update(noncontiguous_s=sliced_time, noncontiguous_identical=identical)
    rows.append((f'jax, column slice: median of {flag_values.repeats}',
                 f'{sliced_time:.4f} s (C-contiguous: {jax_time:.4f} s; identical '
                 f'results: {identical})'))
  if flag_values.reference:
    ref, ref_time = _timed(
        lambda: numpy_reference_rank(distmat, q_pids, g_pids, q_cams, g_cams),
        max(1, min(flag_values.repeats, 3)))
    cmc_err = float(np.max(np.abs(ref['cmc'] - out['cmc'])))
    map_err = abs(ref['mAP'] - out['mAP'])
    agree = (cmc_err <= 1e-6 and map_err <= 1e-5 and
             ref['num_valid_queries'] == out['num_valid_queries'])
    results.update(numpy_s=ref_time, speedup=ref_time / jax_time,
                   max_cmc_diff=cmc_err, map_diff=map_err, agree=agree)
    rows += [
        ('numpy loop: median', f'{ref_time:.4f} s'),
        ('speed-up (numpy / jax)', f'{ref_time / jax_time:.1f}x'),
        ('agree (CMC 1e-6, mAP 1e-5)',
         f'{agree} (max |dCMC| {cmc_err:.1e}, |dmAP| {map_err:.1e})'),
    ]
  results['maxrss_end_mb'] = _maxrss_mb()
  rows += [
      ('peak RSS after inputs', f'{rss_inputs:.0f} MiB'),
      ('peak RSS after distmat', f'{rss_distmat:.0f} MiB' +
       ('' if need_distmat else ' (no distmat built)')),
      ('peak RSS after jax runs', f'{rss_jax:.0f} MiB'),
      ('peak RSS at end', f"{results['maxrss_end_mb']:.0f} MiB"),
      ('jax device memory', _device_memory()),
  ]
  _print_table('Ranking benchmark', rows)
  if flag_values.reference and not results['agree']:
    raise SystemExit('Ranking benchmark: JAX and NumPy results disagree.')
  return results


def _device_memory() -> str:
  stats = jax.devices()[0].memory_stats()
  if not stats:
    return 'n/a (the CPU backend reports no memory stats; see peak RSS)'
  return f"peak {stats.get('peak_bytes_in_use', 0) / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------
# Entry point.
# ----------------------------------------------------------------------------

SUITES: Dict[str, Callable] = {
    'pipeline': bench_pipeline.run_pipeline_benchmark,
    'ranking': run_ranking_benchmark,
    'scaling': bench_scaling.run_scaling_benchmark,
    'train_step': bench_train_step.run_train_step_benchmark,
    'scan_compile': bench_scan_compile.run_scan_compile_benchmark,
    'gpu': bench_gpu.run_gpu_benchmark,
    'init_compile': bench_init_compile.run_init_compile_benchmark,
}
_SUITE_HELP = {
    'pipeline': 'frames/s and clips/s of the tf.data input pipeline at 1, 2 and tuned '
                'threads, and of its serial part (flags --pipeline_*)',
    'ranking': 'evaluate_rank / evaluate_features against a NumPy loop at MARS size',
    'scaling': 'train-step throughput on 1..N (virtual) devices (flags --scaling_*)',
    'train_step': 'train-step time, FLOPs and clips/s of the video networks '
                  '(flags --model, --train_step_*)',
    'scan_compile': 'compile time of the scanned recurrent models for several T '
                    '(flags --scan_compile_*)',
    'gpu': 'every network at full size, float32 and bfloat16, with MFU: for a GPU machine '
           '(flags --gpu_*, --dry_run; also python -m experiments.bench_gpu)',
    'init_compile': 'compile time of a new run\'s init program, XLA\'s default options '
                    'against the library\'s, and bit equality (flags --init_compile_*)',
}
_SUITE = flags.DEFINE_enum(
    'suite', 'ranking', list(SUITES),
    'Which suite to run. ' + '; '.join(f'{k}: {v}' for k, v in _SUITE_HELP.items()) + '.')
for _module in (bench_pipeline, bench_scaling, bench_train_step, bench_scan_compile,
                bench_gpu, bench_init_compile):
  flags.adopt_module_key_flags(_module)  # --help lists every suite's flags


def main(argv: List[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _REFERENCE.value == 'torch' and _SUITE.value != 'train_step':
    raise app.UsageError(f'--reference=torch is for --suite=train_step; --suite='
                         f'{_SUITE.value} takes --reference=true or false.')
  SUITES[_SUITE.value](flags.FLAGS)


if __name__ == '__main__':
  app.run(main)
