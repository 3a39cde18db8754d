"""`python -m experiments.benchmark --suite=train_step --reference=torch`: the
library's jitted, donated train step beside the same network in PyTorch eager
(``experiments/bench_torch_reference.py``), in one process, on the same
inputs and from the same initial weights: the temporal-pooling ResNet-50
('2d') and I3D ResNet-50 ('i3d').

After one untimed JAX step (compilation) and two untimed torch steps, the two
steps alternate `--train_step_repeats` times, so machine load drifts hit both
alike; each figure is the median. torch gets as many intra-op threads as
XLA:CPU's pool has (one per core this process may run on).

  python -m experiments.benchmark --suite=train_step --reference=torch \
      --train_step_clips=2 --train_step_frames=4 --train_step_repeats=5
"""

import os
from typing import Dict, Optional

import jax
import numpy as np

from experiments import bench_setup
from experiments import bench_train_step
from jaxreid import sharding

TORCH_MODELS = ('2d', 'i3d')


def torch_reference_step(name: str, config, variables, num_classes: int,
                         device: str = 'cpu', autocast: Optional[str] = None):
  """(torch model, its train step) for network `name` of TORCH_MODELS with the
  JAX `variables` copied in and `config`'s optimizer settings; `autocast`
  'bfloat16' for mixed precision."""
  import torch  # pylint: disable=g-import-not-at-top
  from experiments import bench_torch_reference as ref  # pylint: disable=g-import-not-at-top
  model = ref.TorchVideoResNet(num_classes, temporal=config.model.temporal,
                               width=config.model.backbone_width or 64,
                               last_stride=config.model.last_stride)
  ref.load_flax_variables(model, variables)
  model = model.to(device)
  if device.startswith('cuda') and name == '2d':  # cuDNN's fast layout
    model = model.to(memory_format=torch.channels_last)
    model.channels_last = True
  dtype = {'bfloat16': torch.bfloat16, None: None, 'float32': None}[autocast]
  step = ref.make_train_step(model, config.learning_rate, config.momentum,
                             config.weight_decay, autocast_dtype=dtype)
  return model, step


def compare(name: str, flag_values, num_classes: int = 625) -> Dict[str, object]:
  """Median step seconds of the JAX and torch train steps of network `name`."""
  import torch  # pylint: disable=g-import-not-at-top
  from experiments import bench_torch_reference as ref  # pylint: disable=g-import-not-at-top
  clips, t = flag_values.train_step_clips, flag_values.train_step_frames
  config = bench_train_step.make_config(name, clips, t, flag_values.train_step_height,
                                        flag_values.train_step_width, 'float32')
  mesh = sharding.make_mesh()
  _, state, train_step = bench_setup.init_train_step(config, mesh, t, num_classes)
  host, batch = bench_setup.random_batch(config, mesh, clips, t, num_classes)
  variables = jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
  model, torch_step = torch_reference_step(name, config, variables, num_classes)
  frames, labels = torch.from_numpy(host['frames']), torch.from_numpy(host['pid']).long()
  jax_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))

  state, _ = bench_setup.median_step_seconds(train_step, state, batch, 1)  # compiles
  ref.median_torch_step_seconds(torch_step, frames, labels, repeats=0, warmup=2)
  jax_times, torch_times = [], []
  for _ in range(flag_values.train_step_repeats):
    state, seconds = bench_setup.median_step_seconds(train_step, state, batch, 1)
    jax_times.append(seconds)
    torch_times.append(ref.median_torch_step_seconds(torch_step, frames, labels, 1, warmup=0))
  jax_s, torch_s = float(np.median(jax_times)), float(np.median(torch_times))
  return dict(jax_params=jax_params, torch_params=ref.trainable_parameters(model),
              jax_step_s=jax_s, torch_step_s=torch_s, jax_clips_per_s=clips / jax_s,
              torch_clips_per_s=clips / torch_s, ratio=torch_s / jax_s,
              input=f'{clips} x {t} x {config.height} x {config.width}')


def run_torch_comparison(flag_values) -> Dict[str, Dict[str, object]]:
  """The --reference=torch table: clips/s of JAX and torch, and their ratio."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise SystemExit('--reference=torch needs PyTorch (pip install torch==2.13.0, the test '
                     'extra); it is not installed in this environment.') from None
  threads = len(os.sched_getaffinity(0))  # XLA:CPU's intra-op pool: one thread per core
  torch.set_num_threads(threads)
  names = TORCH_MODELS if flag_values.model == 'all' else (flag_values.model,)
  for name in names:
    if name not in TORCH_MODELS:
      raise SystemExit(f'--reference=torch: --model={name!r} has no PyTorch reference; '
                       f"use one of {', '.join(TORCH_MODELS)} or 'all'.")
  results = {}
  for name in names:
    results[name] = r = compare(name, flag_values)
    print(f'{name}: jax {r["jax_clips_per_s"]:.3f} clips/s, torch {r["torch_clips_per_s"]:.3f} '
          f'clips/s', flush=True)
  print(f'\nTrain step, JAX (jit, donated) against PyTorch {torch.__version__} eager, float32, '
        f'{jax.default_backend()} ({jax.devices()[0].device_kind}), {threads} threads each, '
        f'median of {flag_values.train_step_repeats} alternating steps')
  print('| network | input (clips x T x H x W) | parameters JAX | parameters torch | '
        'JAX clips/s | torch clips/s | JAX / torch |')
  print('|---|---|---:|---:|---:|---:|---:|')
  for name, r in results.items():
    print(f'| {name} | {r["input"]} | {r["jax_params"]:,} | {r["torch_params"]:,} | '
          f'{r["jax_clips_per_s"]:.3f} | {r["torch_clips_per_s"]:.3f} | {r["ratio"]:.2f} |')
  return results
