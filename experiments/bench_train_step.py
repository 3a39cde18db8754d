"""`python -m experiments.benchmark --suite=train_step`: the M3D paper's Table 1 speeds.

Times the library's jitted, donated training step (``jaxreid.training.step``:
forward, softmax CE, backward, SGD update, BatchNorm statistics) of full-size
ResNet-50 video networks on clips of T x H x W = 8 x 256 x 128, on random
uint8 clips, and, with ``--train_step_forward``, the jitted eval forward pass
(the embedding). Reports compile time, steps/s and clips/s for each network,
and clips/s as a ratio to the 2D network's, beside the paper's ratios (its
Table 1: 2D 796 frames/s = 99.5 clips of 8 frames/s; I3D 81.0, P3D-A 90.1,
P3D-B 93.9, P3D-C 87.6, M3D 98.3 clips/s on a GTX TITAN X; the paper does not
say whether these are training or test speeds, their size suggests test).

  python -m experiments.benchmark --suite=train_step              # all four
  python -m experiments.benchmark --suite=train_step --model=m3d --train_step_clips=2
"""

import time
from typing import Dict

from absl import flags
import jax
import ml_collections
import numpy as np

from experiments import bench_setup
from experiments.configs import crf_ilids_vid
from experiments.configs import m3d_mars
from experiments.configs import mstn_mars
from experiments.configs import rru_ilids_vid
from jaxreid.training import sharding, step as step_lib

# name -> (model_name, model kwargs); 'all' runs TRAIN_STEP_ALL.
TRAIN_STEP_MODELS = {
    '2d': ('video_resnet', dict(temporal='2d', ral='')),
    'i3d': ('video_resnet', dict(temporal='i3d', ral='')),
    'p3d_a': ('video_resnet', dict(temporal='p3d_a', ral='')),
    'p3d_b': ('video_resnet', dict(temporal='p3d_b', ral='')),
    'p3d_c': ('video_resnet', dict(temporal='p3d_c', ral='')),
    'm3d': ('video_resnet', dict(temporal='m3d', ral='')),
    'm3d_ral': ('video_resnet', dict(temporal='m3d', ral='sct')),
    'two_stream': ('two_stream_m3d', dict(temporal='m3d', ral='sct')),
    'trsa': ('trsa', dict(attention=True)),  # TRSA (papers/004): SAM, focal + triplet + Reg
    # RRU + STIM (papers/001): Inception-v3 at 299 x 299 (the paper) unless sizes are given
    'rru': ('rru', dict(rru='full', temporal='stim')),
    # CRF (papers/002): YUV + optical flow at 64 x 48 (McLaughlin) unless sizes are given
    'crf': ('crf', dict(branches='cnn_rnn')),
    # MSTN (papers/000): multi-scale ResNet-50 + two CLSTM blocks, mstn_mars.py's widths
    'mstn': ('mstn', dict(recurrence='clstm')),
}
TRAIN_STEP_ALL = ('2d', 'i3d', 'p3d_c', 'm3d')
# The paper's Table 1 speeds in clips of 8 frames per second.
PAPER_CLIPS_PER_SEC = {'2d': 796 / 8, 'i3d': 81.0, 'p3d_a': 90.1, 'p3d_b': 93.9,
                       'p3d_c': 87.6, 'm3d': 98.3}

flags.DEFINE_string('model', 'all', 'train_step suite: one of ' + ', '.join(TRAIN_STEP_MODELS)
                    + ", or 'all' (" + ', '.join(TRAIN_STEP_ALL) + ').')
flags.DEFINE_integer('train_step_clips', 2, 'train_step suite: clips per step (global batch).')
flags.DEFINE_integer('train_step_repeats', 3, 'train_step suite: timed steps after compiling.')
flags.DEFINE_integer('train_step_frames', 8, 'train_step suite: T.')
flags.DEFINE_integer('train_step_height', 256, 'train_step suite: frame height.')
flags.DEFINE_integer('train_step_width', 128, 'train_step suite: frame width.')
flags.DEFINE_enum('train_step_dtype', 'float32', ['float32', 'bfloat16'],
                  'train_step suite: compute dtype (config.dtype).')
flags.DEFINE_boolean('train_step_forward', False, 'train_step suite: also time the eval '
                     'forward pass (embedding only).')


def _config(name: str, flag_values) -> ml_collections.ConfigDict:
  c = m3d_mars.get_config()
  c.clip_len = flag_values.train_step_frames
  c.height, c.width = flag_values.train_step_height, flag_values.train_step_width
  c.num_identities, c.num_instances = flag_values.train_step_clips, 1
  model_name, kwargs = TRAIN_STEP_MODELS[name]
  c.model_name = model_name
  model = dict(backbone='resnet50', backbone_width=0, last_stride=1,
               clip_len=flag_values.train_step_frames, **kwargs)
  c.model = ml_collections.ConfigDict(model)
  c.losses = ml_collections.ConfigDict(
      {'ce_streams': 1.0} if model_name == 'two_stream_m3d' else {'ce': 1.0})
  if model_name == 'trsa':  # any T (no clip_len); the paper's objective (eq. 5, 9)
    del c.model['clip_len']
    c.losses = ml_collections.ConfigDict({'focal': 1.0, 'triplet': 1.0, 'temporal_reg': 1.0})
  if model_name == 'rru':  # rru_ilids_vid.py's model (Inception-v3) and objective (eq. 7)
    paper = rru_ilids_vid.get_config()
    c.model, c.losses, c.loss_options = paper.model, paper.losses, paper.loss_options
    c.model.update(kwargs)
    if not flag_values['train_step_height'].present:
      c.height = c.width = paper.height  # 299 x 299
    c.nesterov, c.pretrained_lr_mult = paper.nesterov, paper.pretrained_lr_mult
  if model_name == 'crf':  # crf_ilids_vid.py's model, input (flow) and objective (eq. 9)
    paper = crf_ilids_vid.get_config()
    c.model, c.losses, c.loss_options = paper.model, paper.losses, paper.loss_options
    c.model.update(kwargs)
    c.use_flow = True
    if not flag_values['train_step_height'].present:
      c.height, c.width = paper.height, paper.width  # 64 x 48
  if model_name == 'mstn':  # mstn_mars.py's model and objective (eq. 5); any T
    paper = mstn_mars.get_config()
    c.model, c.losses, c.loss_options = paper.model, paper.losses, paper.loss_options
    c.model.update(kwargs)
  c.schedule.decay_steps = (10**9,)
  c.dtype = flag_values.train_step_dtype
  return c


def step_flops(jitted_step, *args) -> float:
  """FLOPs of one call of `jitted_step` from XLA's cost analysis of its
  lowered (pre-optimization) program: forward, backward and update, summed
  over devices. NaN where the backend does not report them."""
  analysis = jitted_step.lower(*args).cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per computation
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', float('nan')))


def time_train_step(name: str, flag_values, num_classes: int = 625) -> Dict[str, float]:
  """Compile seconds, steps/s and clips/s of one network's train step."""
  config = _config(name, flag_values)
  clips, t = flag_values.train_step_clips, flag_values.train_step_frames
  mesh = sharding.make_mesh()
  model, state, train_step = bench_setup.init_train_step(config, mesh, t, num_classes)
  rng = np.random.default_rng(0)
  batch = sharding.to_global({
      'frames': rng.integers(0, 256, (clips, t, config.height, config.width, 3), dtype=np.uint8),
      'pid': rng.integers(0, num_classes, clips).astype(np.int32)}, mesh)
  if config.get('use_flow', False):  # CRF: random optical flow (B, T, H, W, 2), pixels
    batch['flow'] = sharding.to_global({'flow': rng.normal(
        size=(clips, t, config.height, config.width, 2)).astype(np.float32)}, mesh)['flow']
  flops = step_flops(train_step, state, batch)  # before the state is donated
  start = time.perf_counter()
  state, metrics = train_step(state, batch)  # compile + one step
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(flag_values.train_step_repeats):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / flag_values.train_step_repeats
  out = dict(first_call_s=first, step_s=seconds, steps_per_s=1 / seconds,
             clips_per_s=clips / seconds,
             params=sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)),
             gflop_per_step=flops / 1e9, achieved_gflop_per_s=flops / seconds / 1e9,
             input=f'{clips} x {t} x {config.height} x {config.width}',
             objective=' + '.join(config.losses))
  if flag_values.train_step_forward:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    forward = jax.jit(lambda v, f: step_lib.apply_model(model.apply, v, f,
                                                        train=False)['embedding'])
    jax.block_until_ready(forward(variables, step_lib.model_inputs(batch)))
    start = time.perf_counter()
    for _ in range(flag_values.train_step_repeats):
      emb = forward(variables, step_lib.model_inputs(batch))
    jax.block_until_ready(emb)
    fwd = (time.perf_counter() - start) / flag_values.train_step_repeats
    out.update(forward_clips_per_s=clips / fwd)
  return out


def run_train_step_benchmark(flag_values) -> Dict[str, Dict[str, float]]:
  name = flag_values.model
  if name != 'all' and name not in TRAIN_STEP_MODELS:
    raise SystemExit(f'Unknown --model={name!r}; valid choices: all, '
                     f'{", ".join(TRAIN_STEP_MODELS)}.')
  names = TRAIN_STEP_ALL if name == 'all' else (name,)
  if name != 'all' and '2d' not in names:
    names = ('2d',) + names  # the ratio's reference
  results = {}
  for n in names:
    results[n] = time_train_step(n, flag_values)
    r = results[n]
    print(f'{n}: compile+first step {r["first_call_s"]:.1f} s, {r["steps_per_s"]:.3f} steps/s, '
          f'{r["clips_per_s"]:.3f} clips/s', flush=True)
  base = results['2d']
  backend = f'{jax.default_backend()} ({jax.devices()[0].device_kind}, {len(jax.devices())} dev.)'
  print(f'\nTrain step (each network with its objective, SGD), '
        f'{flag_values.train_step_dtype}, {backend}')
  header = ('| network | input (clips x T x H x W) | objective | parameters | '
            'compile + 1st step s | steps/s | clips/s | ratio to 2D | GFLOP/step | '
            'achieved GFLOP/s |'
            + (' forward clips/s | forward ratio |' if flag_values.train_step_forward else '')
            + ' paper clips/s | paper ratio |')
  print(header)
  print('|' + '---|' * (header.count('|') - 1))
  for n, r in results.items():
    paper = PAPER_CLIPS_PER_SEC.get(n)
    row = (f'| {n} | {r["input"]} | {r["objective"]} | {r["params"]:,} | '
           f'{r["first_call_s"]:.1f} | {r["steps_per_s"]:.3f} | '
           f'{r["clips_per_s"]:.3f} | {r["clips_per_s"] / base["clips_per_s"]:.3f} | '
           f'{r["gflop_per_step"]:.1f} | {r["achieved_gflop_per_s"]:.1f} |')
    if flag_values.train_step_forward:
      row += (f' {r["forward_clips_per_s"]:.3f} | '
              f'{r["forward_clips_per_s"] / base["forward_clips_per_s"]:.3f} |')
    row += (f' {paper:.1f} | {paper / PAPER_CLIPS_PER_SEC["2d"]:.3f} |' if paper else ' | |')
    print(row)
  return results
