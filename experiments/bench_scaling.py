"""`python -m experiments.benchmark --suite=scaling`: one global batch on 1, 2, 4
and 8 simulated CPU devices.

Times the library's jitted, donated train step of the default synthetic config
(experiments/configs/synthetic_baseline.py: ResNet-18 at width 16, T x H x W =
4 x 128 x 64, CE + triplet, Adam) on a data mesh over the first n CPU devices,
with the same global batch for every n (so per-device batch = clips / n). On a
CPU the simulated devices share the host's cores, so this measures the cost of
splitting the batch and of the gradient all-reduce, not a speed-up from
more hardware.

  python -m experiments.benchmark --suite=scaling [--scaling_clips=16 --scaling_devices=1,2,4,8]
"""

import time
from typing import Dict

from absl import flags
import jax
import numpy as np

from experiments import bench_setup
from experiments.configs import synthetic_baseline
from jaxreid import sharding

flags.DEFINE_integer('scaling_clips', 16, 'scaling suite: global batch (clips per step).')
flags.DEFINE_string('scaling_devices', '1,2,4,8', 'scaling suite: device counts.')
flags.DEFINE_integer('scaling_repeats', 3, 'scaling suite: timed steps after compiling.')


def time_step_on_devices(config, num_devices: int, clips: int, repeats: int,
                         num_classes: int = 64) -> Dict[str, float]:
  """Compile + first step seconds, and steps/s, on the first `num_devices` devices."""
  mesh = sharding.make_mesh(jax.devices()[:num_devices])
  _, state, train_step = bench_setup.init_train_step(config, mesh, config.clip_len, num_classes)
  rng = np.random.default_rng(0)
  batch = sharding.to_global({
      'frames': rng.integers(0, 256, (clips, config.clip_len, config.height, config.width, 3),
                             dtype=np.uint8),
      'pid': np.repeat(np.arange(clips // config.num_instances, dtype=np.int32),
                       config.num_instances)}, mesh)
  start = time.perf_counter()
  state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(repeats):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / repeats
  return dict(first_call_s=first, step_s=seconds, steps_per_s=1 / seconds,
              clips_per_s=clips / seconds, loss=float(metrics['loss']))


def run_scaling_benchmark(flag_values) -> Dict[int, Dict[str, float]]:
  counts = [int(n) for n in flag_values.scaling_devices.split(',')]
  try:  # simulated CPU devices; only possible before JAX starts its backend
    jax.config.update('jax_num_cpu_devices', max(counts))
  except Exception:  # pylint: disable=broad-except
    pass
  available = jax.device_count()
  clips = flag_values.scaling_clips
  config = synthetic_baseline.get_config()
  config.num_instances = 2
  results = {}
  for n in counts:
    if n > available:
      print(f'{n} devices: skipped, only {available} available (set '
            f'JAX_NUM_CPU_DEVICES={max(counts)} or XLA_FLAGS=--xla_force_host_platform_'
            f'device_count={max(counts)}).', flush=True)
      continue
    if clips % n:
      print(f'{n} devices: skipped, {clips} clips do not split evenly.', flush=True)
      continue
    results[n] = r = time_step_on_devices(config, n, clips, flag_values.scaling_repeats)
    print(f'{n} devices: compile+first step {r["first_call_s"]:.1f} s, '
          f'{r["steps_per_s"]:.3f} steps/s, {r["clips_per_s"]:.2f} clips/s', flush=True)
  if not results:
    return results
  base = results[min(results)]
  print(f'\nTrain step scaling, {config.model.backbone} w{config.model.backbone_width}, '
        f'global batch {clips} clips x {config.clip_len} x {config.height} x {config.width}, '
        f'{jax.default_backend()} ({jax.devices()[0].device_kind})')
  print('| devices | clips/device | compile + 1st step s | steps/s | clips/s | '
        f'vs {min(results)} device(s) | loss |')
  print('|---|---|---|---|---|---|---|')
  for n, r in results.items():
    print(f'| {n} | {clips // n} | {r["first_call_s"]:.1f} | {r["steps_per_s"]:.3f} | '
          f'{r["clips_per_s"]:.2f} | {r["clips_per_s"] / base["clips_per_s"]:.2f} | '
          f'{r["loss"]:.6f} |')
  return results
