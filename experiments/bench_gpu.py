r"""The GPU benchmark: every video network's train step at full size, at
float32 and bfloat16, with its model FLOPs utilization, in one command.

  python -m experiments.bench_gpu                 # on the GPU machine
  python -m experiments.bench_gpu --dry_run       # tiny shapes: checks the path on a CPU
  python -m experiments.benchmark --suite=gpu     # the same, through the suite runner

For TP-ResNet-50 ('2d'), M3D, I3D, P3D-C, two-stream M3D, RRU (Inception-v3 at
299 x 299), MSTN and TRSA (``bench_train_step.TRAIN_STEP_MODELS``, each with its
paper objective), per compute dtype (``config.dtype``; parameters and BN
statistics stay float32): compile seconds (``lower().compile()`` of the
library's jitted, donated train step), the median step time over
``--gpu_repeats`` steps after one warm-up step, clips/s, XLA's FLOPs per step
(``compiled.cost_analysis()``), and MFU = FLOPs / step time / the device's
dense bf16 peak (``PEAK_BF16``; n/a where the device is not in it, e.g. a CPU).
XLA counts a while loop's body once, so for the scanned models (RRU, MSTN) a
second column counts convolution and matmul FLOPs with every scan body T times
(``bench_train_step.jaxpr_flops``) and MFU from it. Beside the '2d' rows, the
same network's step in PyTorch eager (``bench_torch_compare``; bf16 by
``torch.autocast``), where torch is installed with a CUDA device (or, with
--dry_run, on the CPU).

Needs only JAX, Flax, Optax, Orbax, chex, absl, ml_collections and numpy (and
torch for its row): no TensorFlow, no CLU (docs/benchmarks.md, "GPU
benchmark", says how to carry the project as a wheel). Rows run in order,
bfloat16 first; a row is skipped, and says so, once ``--gpu_budget_s`` has
passed, so that the whole command stays under 10 minutes.
"""

import time
from typing import Dict, List, Optional

from absl import app
from absl import flags
import jax
import numpy as np

from experiments import bench_setup
from experiments import bench_train_step
from jaxreid import sharding

GPU_MODELS = ('2d', 'm3d', 'i3d', 'p3d_c', 'two_stream', 'rru', 'mstn', 'trsa')
# Clips of T = 8 per step on one GPU (256 x 128; RRU 299 x 299): the M3D
# paper's batch (24 clips) rounded up for the ResNet-50s, less for the
# networks with 2-3x the activations (I3D, two streams, MSTN's CLSTMs, RRU).
GPU_CLIPS = {'2d': 32, 'm3d': 32, 'i3d': 16, 'p3d_c': 32, 'two_stream': 16, 'rru': 16,
             'mstn': 8, 'trsa': 32}
# Dense (no sparsity) bf16 matrix peak in FLOP/s, by a substring of
# jax.devices()[0].device_kind, first match wins. NVIDIA's datasheets give
# the Hopper figures "with sparsity" (H100 SXM and H200 SXM: 1,979 TFLOPS;
# H100 PCIe: 1,513; H100 NVL and H200 NVL: 1,671), dense is half; A100: 312 dense.
# Google Cloud's TPU pages: v4 275, v5e 197, v5p 459, v6e 918 TFLOPS.
PEAK_BF16 = (('H200 NVL', 835e12), ('H200', 989e12), ('H100 PCIe', 756e12),
             ('H100 NVL', 835e12), ('H100', 989e12), ('A100', 312e12), ('TPU v4', 275e12),
             ('TPU v5 lite', 197e12), ('TPU v5e', 197e12), ('TPU v5p', 459e12),
             ('TPU v6', 918e12))
# --dry_run: tiny clips and backbones, so that every row compiles and runs
# in seconds on a CPU. The '2d' rows keep the ResNet-50 structure (width 8),
# which the torch reference needs; the others use resnet_tiny.
DRY_RUN_SIZE = dict(clips=2, frames=4, height=64, width=32)
_DRY_RUN_WIDTHS = ('scale_features', 'cut_features', 'lstm_features', 'transition_features',
                   'spatial_hidden', 'stim_features', 'classifier_hidden')

flags.DEFINE_string('gpu_models', ','.join(GPU_MODELS), 'gpu suite: comma-separated networks, '
                    'of ' + ', '.join(GPU_MODELS) + '.')
flags.DEFINE_string('gpu_dtypes', 'bfloat16,float32', 'gpu suite: comma-separated compute '
                    'dtypes (config.dtype), run in this order: bfloat16, float32.')
flags.DEFINE_integer('gpu_repeats', 10, 'gpu suite: timed steps per row (median).')
flags.DEFINE_float('gpu_budget_s', 540.0, 'gpu suite: start no new row after this many '
                   'seconds (the rows left are listed as skipped).')
flags.DEFINE_boolean('gpu_torch', True, "gpu suite: the PyTorch eager rows beside '2d'.")
flags.DEFINE_boolean('dry_run', False, 'gpu suite: tiny shapes and backbones (2 clips of '
                     '4 x 64 x 32, resnet_tiny or a width-8 ResNet-50), to check the path on '
                     'a CPU; figures mean nothing.')


def peak_bf16(device_kind: str) -> Optional[float]:
  """The dense bf16 peak FLOP/s of `device_kind`, None if not in PEAK_BF16."""
  return next((peak for key, peak in PEAK_BF16 if key in device_kind), None)


def _config(name: str, dtype: str, dry_run: bool):
  """The row's train config; clips rounded up to a multiple of the devices
  (the batch is split over all of them)."""
  devices = jax.device_count()
  def per_device(clips):
    return -(-clips // devices) * devices
  if not dry_run:
    return bench_train_step.make_config(name, per_device(GPU_CLIPS[name]), 8, dtype=dtype)
  s = DRY_RUN_SIZE
  config = bench_train_step.make_config(name, per_device(s['clips']), s['frames'], s['height'],
                                        s['width'], dtype)
  if name == '2d':
    config.model.backbone_width = 8
  else:
    config.model.backbone, config.model.backbone_width = 'resnet_tiny', 0
  for key in _DRY_RUN_WIDTHS:
    if key in config.model:
      config.model[key] = 8
  if 'aux_ce' in config.losses:  # RRU: a ResNet has no Inception auxiliary head
    del config.losses['aux_ce']
  return config


def time_jax_row(name: str, dtype: str, dry_run: bool, repeats: int,
                 num_classes: int = 625) -> Dict[str, object]:
  """Compile seconds, median step seconds, clips/s and FLOPs of one network's
  train step at `dtype`; also its initial variables and batch, for torch."""
  config = _config(name, dtype, dry_run)
  clips, t = config.num_identities, config.clip_len
  mesh = sharding.make_mesh()
  _, state, train_step = bench_setup.init_train_step(config, mesh, t, num_classes)
  host, batch = bench_setup.random_batch(config, mesh, clips, t, num_classes)
  variables = (jax.device_get({'params': state.params, 'batch_stats': state.batch_stats})
               if name == '2d' else None)
  start = time.perf_counter()
  traced = train_step.trace(state, batch)
  compiled = traced.lower().compile()
  compile_s = time.perf_counter() - start
  state, _ = bench_setup.median_step_seconds(compiled, state, batch, 1)  # warm-up
  state, step_s = bench_setup.median_step_seconds(compiled, state, batch, repeats)
  return dict(name=name, dtype=dtype, config=config, host=host, variables=variables,
              input=f'{clips} x {t} x {config.height} x {config.width}',
              compile_s=compile_s, step_s=step_s, clips_per_s=clips / step_s,
              flops=bench_train_step.cost_flops(compiled),
              loop_flops=bench_train_step.jaxpr_flops(traced.jaxpr.jaxpr))


def time_torch_row(jax_row: Dict[str, object], repeats: int, num_classes: int = 625):
  """The torch eager step of the '2d' row's network, batch and weights; a
  row dict, or a string saying why there is none."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    return 'torch is not installed here: no PyTorch row'
  from experiments import bench_torch_compare  # pylint: disable=g-import-not-at-top
  from experiments import bench_torch_reference as ref  # pylint: disable=g-import-not-at-top
  on_cpu = jax.default_backend() == 'cpu'
  if not on_cpu and not torch.cuda.is_available():
    return f'torch {torch.__version__} has no CUDA device here: no PyTorch row'
  device = 'cpu' if on_cpu else 'cuda'
  torch.backends.cudnn.benchmark = True
  config, host = jax_row['config'], jax_row['host']
  _, step = bench_torch_compare.torch_reference_step(
      '2d', config, jax_row['variables'], num_classes, device=device,
      autocast=jax_row['dtype'] if jax_row['dtype'] != 'float32' else None)
  frames = torch.from_numpy(host['frames']).to(device)
  labels = torch.from_numpy(host['pid']).long().to(device)
  step_s = ref.median_torch_step_seconds(step, frames, labels, repeats, warmup=3)
  return dict(name='2d (torch eager)', dtype=jax_row['dtype'], input=jax_row['input'],
              compile_s=float('nan'), step_s=step_s,
              clips_per_s=config.num_identities / step_s, flops=jax_row['flops'],
              loop_flops=jax_row['loop_flops'])


def _parse_list(flag: str, value: str, valid) -> List[str]:
  items = [v.strip() for v in value.split(',') if v.strip()]
  bad = [v for v in items if v not in valid]
  if bad or not items:
    raise SystemExit(f'--{flag}={value!r}: expected a comma-separated list of '
                     f'{", ".join(valid)}; {bad or "nothing"} is not one.')
  return items


def _print_table(rows: List[Dict[str, object]], peak: Optional[float]) -> None:
  def mfu(flops, seconds):
    if peak is None or not np.isfinite(flops):
      return 'n/a'
    return f'{100 * flops / seconds / peak:.1f}%'
  print('| network | dtype | input (clips x T x H x W) | compile s | step ms | clips/s | '
        'XLA GFLOP/step | MFU (XLA FLOPs) | conv+dot GFLOP/step, loops x T | MFU (loops x T) |')
  print('|---|---|---|---:|---:|---:|---:|---:|---:|---:|')
  for r in rows:
    if isinstance(r, str):
      print(f'| {r} | | | | | | | | | |')
      continue
    compile_s = '' if np.isnan(r['compile_s']) else f'{r["compile_s"]:.1f}'
    print(f'| {r["name"]} | {r["dtype"]} | {r["input"]} | {compile_s} | '
          f'{1e3 * r["step_s"]:.1f} | {r["clips_per_s"]:.2f} | {r["flops"] / 1e9:.1f} | '
          f'{mfu(r["flops"], r["step_s"])} | {r["loop_flops"] / 1e9:.1f} | '
          f'{mfu(r["loop_flops"], r["step_s"])} |')


def run_gpu_benchmark(flag_values) -> List[Dict[str, object]]:
  """Runs the rows (bfloat16 first), prints progress and the table."""
  models = _parse_list('gpu_models', flag_values.gpu_models, GPU_MODELS)
  dtypes = _parse_list('gpu_dtypes', flag_values.gpu_dtypes, ('bfloat16', 'float32'))
  if jax.default_backend() == 'cpu' and not flag_values.dry_run:
    raise SystemExit('The gpu suite found only a CPU backend: at full size it would take '
                     'hours here. Run it on a GPU machine, or pass --dry_run (tiny shapes).')
  kind = jax.devices()[0].device_kind
  peak = peak_bf16(kind)
  start, rows = time.perf_counter(), []
  for dtype in dtypes:
    for name in models:
      if time.perf_counter() - start > flag_values.gpu_budget_s:
        rows.append(f'{name} {dtype}: skipped (over --gpu_budget_s={flag_values.gpu_budget_s:g})')
        print(rows[-1], flush=True)
        continue
      row = time_jax_row(name, dtype, flag_values.dry_run, flag_values.gpu_repeats)
      if name == '2d' and flag_values.gpu_torch:
        rows.extend([row, time_torch_row(row, flag_values.gpu_repeats)])
      else:
        rows.append(row)
      row.pop('variables'), row.pop('host')  # free host copies before the next row
      print(f'{name} {dtype}: compile {row["compile_s"]:.1f} s, {row["clips_per_s"]:.2f} '
            f'clips/s ({time.perf_counter() - start:.0f} s so far)', flush=True)
  dry = ' (--dry_run: tiny shapes, figures mean nothing)' if flag_values.dry_run else ''
  print(f'\nGPU benchmark{dry}: '
        f'{jax.default_backend()}, {kind}, {len(jax.devices())} device(s), jax {jax.__version__}; '
        'bf16 peak ' + (f'{peak / 1e12:.0f} TFLOP/s dense' if peak else 'unknown: MFU n/a')
        + f'; median of {flag_values.gpu_repeats} steps; total {time.perf_counter() - start:.0f} s')
  _print_table(rows, peak)
  return rows


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  run_gpu_benchmark(flags.FLAGS)


if __name__ == '__main__':
  app.run(main)
