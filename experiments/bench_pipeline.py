"""`python -m experiments.benchmark --suite=pipeline`: input-pipeline throughput.

Times what the training loop reads: PK batches of decoded, resized and
augmented (flip, pad + crop, colour jitter, random erasing, one draw per clip)
clips of T = 8 JPEG frames of 256 x 128, from the synthetic dataset's
`full_size` config (prepared on first use): at 1 and 2 tf.data threads (the
per-core figure and its scaling) and with the threads tf.data picks. Before
decoding, the pipeline's stages alone: the serial part (the batch plan, in
Python) and the record read + parse + frame pick (a parallel map) at 1 and 2
threads, in clips/s. Beside it, the demand of a
training step: the clips per second the configured model's jitted train step
consumes on this machine, measured in the same process.

For CRF ([CRF] in docs/references.md), the optical flow: Farneback frame pairs per second in
one thread on grey 64 x 48 (the CRF input) and 256 x 128 frames, and the
clips per second of CRF's train pipeline (crf_ilids_vid.py's input: T = 16
consecutive frames resized to 64 x 48, flow computed in tf.data, flip and
shift, batches of 2 x num_pairs clips) on the same stored data.
"""

import os
import time

import jax
import numpy as np

from experiments import common
from experiments import bench_setup
from experiments.configs import synthetic_baseline
from jaxreid import sharding


def pipeline_config(flag_values):
  c = synthetic_baseline.get_config()
  c.dataset_config = 'full_size'
  c.height, c.width, c.clip_len = 256, 128, 8
  c.num_identities, c.num_instances = 8, 4
  c.augment.color_jitter.update(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05)
  c.model.backbone, c.model.backbone_width = flag_values.pipeline_backbone, None
  return c


def _pipeline_clips_per_sec(data, num_batches: int, threads: int = 0) -> float:
  """Clips/s of whole train batches; ``threads`` tf.data threads (0: tf.data's choice)."""
  clips_per_sec, batch = _timed(data.train_batches(0, threads=threads), num_batches)
  assert batch['frames'].shape == (32, 8, 256, 128, 3)
  return clips_per_sec


def _timed(batches, num_batches: int):
  """(clips/s over ``num_batches`` batches after a warm-up one, the last batch)."""
  next(batches)  # warm-up: tf.data start, first decode
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(batches)
  return num_batches * len(batch['pid']) / (time.perf_counter() - start), batch


def _rate(elements, seconds: float = 3.0) -> float:
  """Elements/s of an iterator, after one warm-up element."""
  next(elements)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    next(elements)
    count += 1
  return count / (time.perf_counter() - start)


def _plan_clips(data):
  """The serial part alone: each step's batch plan, clip by clip."""
  step = 0
  while True:
    yield from range(len(data.train_plan_arrays(step)[0]))
    step += 1


def serial_part_rates(data) -> dict:
  """Clips/s of the train pipeline's stages before decoding: the serial part
  (the batch plan, in Python), and the record read + parse + frame pick (a
  parallel tf.data map) at 1 and 2 threads."""
  return {'serial_plan_clips_per_sec': _rate(_plan_clips(data)),
          # Batched as the training loop does: one Python iteration per clip would cost
          # more than the stage it times.
          **{f'read_clips_per_sec_{n}_threads':
             32 * _rate(iter(data.train_clips(0, threads=n).batch(32)))
             for n in (1, 2)}}


def _train_step_clips_per_sec(config, num_classes: int, clips: int, repeats: int):
  mesh = sharding.make_mesh()
  config.num_identities, config.num_instances = clips // 2, 2
  _, state, train_step = bench_setup.init_train_step(config, mesh, config.clip_len, num_classes)
  rng = np.random.default_rng(0)
  batch = sharding.to_global({
      'frames': rng.integers(0, 256, (clips, 8, 256, 128, 3), dtype=np.uint8),
      'pid': np.repeat(np.arange(clips // 2), 2).astype(np.int32)}, mesh)
  state, metrics = train_step(state, batch)  # compile
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(repeats):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  return clips * repeats / (time.perf_counter() - start)


def _flow_pairs_per_sec(height: int, width: int, seconds: float = 3.0) -> float:
  """Farneback frame pairs per second (one thread) on two moving textures."""
  from data_pipelines import optical_flow  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  grey = rng.integers(0, 256, (height + 4, width + 4)).astype(np.uint8)
  a, b = grey[:height, :width], grey[2:height + 2, 1:width + 1]  # moved by (1, 2)
  count, start = 0, time.perf_counter()
  while time.perf_counter() - start < seconds:
    optical_flow.pair_flow(a, b)
    count += 1
  return count / (time.perf_counter() - start)


def _crf_pipeline_clips_per_sec(config, num_batches: int) -> float:
  from experiments.configs import crf_ilids_vid  # pylint: disable=g-import-not-at-top
  c = config.copy_and_resolve_references()
  paper = crf_ilids_vid.get_config()
  c.height, c.width, c.clip_len = paper.height, paper.width, paper.clip_len
  c.use_flow, c.train_sampler = True, paper.train_sampler
  crf_ilids_vid.set_pairs(c, 16)  # 32 clips, as the PK batches above
  c.augment = paper.augment
  clips_per_sec, batch = _timed(common.make_data(c).train_batches(0), num_batches)
  assert batch['flow'].shape == (32, 16, 64, 48, 2)
  return clips_per_sec


def run_pipeline_benchmark(flag_values) -> dict:
  config = pipeline_config(flag_values)
  data = common.make_data(config)
  stages = serial_part_rates(data)
  per_thread = {n: _pipeline_clips_per_sec(data, flag_values.pipeline_batches, n) for n in (1, 2)}
  produced = _pipeline_clips_per_sec(data, flag_values.pipeline_batches)
  consumed = _train_step_clips_per_sec(config, data.num_train_ids, flag_values.pipeline_step_clips,
                                       flag_values.pipeline_step_repeats)
  flow_small, flow_large = _flow_pairs_per_sec(64, 48), _flow_pairs_per_sec(256, 128)
  crf_clips = _crf_pipeline_clips_per_sec(config, flag_values.pipeline_batches)
  rows = [
      ('input', '8 x 256 x 128 JPEG frames per clip, PK batches of 32 clips'),
      ('augmentation', 'flip, pad 2 + crop, colour jitter, random erasing 0.3'),
      ('serial part', f'{stages["serial_plan_clips_per_sec"]:.0f} clips/s (batch plan, Python, '
                      'before the parallel map)'),
      ('record read + parse', f'{stages["read_clips_per_sec_1_threads"]:.0f} clips/s at 1 '
                              f'thread, {stages["read_clips_per_sec_2_threads"]:.0f} at 2 '
                              '(tf.data map: read, parse, frame pick)'),
      *((f'pipeline, {n} thread{"s" * (n > 1)}', f'{per_thread[n]:.1f} clips/s '
         f'({8 * per_thread[n]:.0f} frames/s)') for n in (1, 2)),
      ('pipeline', f'{produced:.1f} clips/s ({8 * produced:.0f} frames/s), threads tuned by '
                   f'tf.data on {os.cpu_count()} CPUs'),
      ('train step demand', f'{consumed:.2f} clips/s ({config.model_name}, '
                            f'{config.model.backbone}, batch {flag_values.pipeline_step_clips} '
                            f'clips, {jax.device_count()} {jax.devices()[0].platform} device(s))'),
      ('pipeline / demand', f'{produced / consumed:.1f}x'),
      ('optical flow', f'{flow_small:.0f} frames/s at 64 x 48, {flow_large:.0f} frames/s at '
                       '256 x 128 (Farneback, grey, 1 thread)'),
      ('CRF pipeline', f'{crf_clips:.1f} clips/s ({16 * crf_clips:.0f} frames/s): 16 x 64 x 48 '
                       'frames + flow, pairs of 32 clips, flip + shift 4'),
  ]
  width = max(len(k) for k, _ in rows)
  print('Input pipeline benchmark')
  for k, v in rows:
    print(f'{k.ljust(width)}  {v}')
  return {'pipeline_clips_per_sec': produced, 'train_step_clips_per_sec': consumed,
          **stages, **{f'pipeline_clips_per_sec_{n}_threads': v for n, v in per_thread.items()},
          'flow_frames_per_sec_64x48': flow_small, 'flow_frames_per_sec_256x128': flow_large,
          'crf_pipeline_clips_per_sec': crf_clips}
