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
  python -m experiments.benchmark --suite=train_step --reference=torch   # beside PyTorch

With --reference=torch the suite times the 2D and I3D networks beside the
same networks in PyTorch eager instead (experiments/bench_torch_compare.py).
"""

import time
from typing import Dict, Optional

from absl import flags
import jax
import ml_collections
import numpy as np

from experiments import bench_setup
from experiments.configs import crf_ilids_vid
from experiments.configs import m3d_mars
from experiments.configs import mstn_mars
from experiments.configs import rru_ilids_vid
from jaxreid import inference, sharding

# name -> (model_name, model kwargs); 'all' runs TRAIN_STEP_ALL. Bracketed
# keys ([TRSA], ...) are papers listed in docs/references.md.
TRAIN_STEP_MODELS = {
    '2d': ('video_resnet', dict(temporal='2d', ral='')),
    'i3d': ('video_resnet', dict(temporal='i3d', ral='')),
    'p3d_a': ('video_resnet', dict(temporal='p3d_a', ral='')),
    'p3d_b': ('video_resnet', dict(temporal='p3d_b', ral='')),
    'p3d_c': ('video_resnet', dict(temporal='p3d_c', ral='')),
    'm3d': ('video_resnet', dict(temporal='m3d', ral='')),
    'm3d_ral': ('video_resnet', dict(temporal='m3d', ral='sct')),
    'two_stream': ('two_stream_m3d', dict(temporal='m3d', ral='sct')),
    'trsa': ('trsa', dict(attention=True)),  # TRSA ([TRSA]): SAM, focal + triplet + Reg
    # RRU + STIM ([RRU]): Inception-v3 at 299 x 299 (the paper) unless sizes are given
    'rru': ('rru', dict(rru='full', temporal='stim')),
    # CRF ([CRF]): YUV + optical flow at 64 x 48 (McLaughlin) unless sizes are given
    'crf': ('crf', dict(branches='cnn_rnn')),
    # MSTN ([MSTN]): multi-scale ResNet-50 + two CLSTM blocks, mstn_mars.py's widths
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
flags.DEFINE_integer('train_step_profile_ops', 0, 'train_step suite: if > 0, trace the timed '
                     'steps with jax.profiler and print this many XLA ops with the most '
                     'exclusive time per step.')
flags.DEFINE_string('train_step_profile_dir', '/tmp/jaxreid_train_step_profile',
                    'train_step suite: where --train_step_profile_ops writes its traces.')


def jaxpr_flops(jaxpr, multiplier: float = 1.0) -> float:
  """Multiply-add FLOPs (2 per MAC) of every dot_general and convolution in
  `jaxpr`, with each scan body counted `length` times. XLA's cost analysis
  counts a loop body once whatever its trip count, so for scanned models
  (MSTN's CLSTMs, RRU, CRF) it undercounts by about (T - 1) bodies; this count
  is what the FLOP ratio between networks should use. Element-wise ops are
  not counted (they are a few percent of a ResNet's FLOPs)."""
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (lhs_contract, _), _ = eqn.params['dimension_numbers']
      k = np.prod([eqn.invars[0].aval.shape[d] for d in lhs_contract])
      total += multiplier * 2.0 * np.prod(eqn.outvars[0].aval.shape) * k
    elif name == 'conv_general_dilated':
      rhs_spec = eqn.params['dimension_numbers'].rhs_spec  # (out, in, spatial...)
      rhs_shape = eqn.invars[1].aval.shape
      k = rhs_shape[rhs_spec[1]] * np.prod([rhs_shape[d] for d in rhs_spec[2:]])
      total += multiplier * 2.0 * np.prod(eqn.outvars[0].aval.shape) * k
    trips = eqn.params.get('length', 1) if name == 'scan' else 1
    subs = []
    for value in eqn.params.values():
      for v in (value if isinstance(value, (tuple, list)) else (value,)):
        if isinstance(v, jax.extend.core.ClosedJaxpr):
          subs.append(v.jaxpr)
        elif isinstance(v, jax.extend.core.Jaxpr):
          subs.append(v)
    if name == 'cond':  # one branch runs
      total += max((jaxpr_flops(s, multiplier) for s in subs), default=0.0)
    else:
      total += sum(jaxpr_flops(s, multiplier * trips) for s in subs)
  return total


def _summarise_trace(trace_dir: str, compiled_text: str, steps: int, top: int):
  """Exclusive time per XLA op (thunk) per step from a jax.profiler trace,
  the `top` largest, each with its HLO op's JAX name (metadata op_name) and shape.

  Returns (rows, modules, op seconds per step): rows of (op, ms per step,
  fraction, description); modules of (top-level module, ms per step,
  fraction), all ops summed by the first module under the model in op_name."""
  import glob  # pylint: disable=g-import-not-at-top
  import gzip  # pylint: disable=g-import-not-at-top
  import json  # pylint: disable=g-import-not-at-top
  import re  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(f'{trace_dir}/**/*.trace.json.gz', recursive=True))
  events = json.load(gzip.open(files[-1]))['traceEvents']
  threads = {(e['pid'], e['tid']) for e in events
             if e.get('ph') == 'M' and 'XLA' in str(e.get('args', {}).get('name', ''))}
  ops = [e for e in events if e.get('ph') == 'X' and (e['pid'], e['tid']) in threads
         and not e['name'].startswith(('end: ', 'Thunk', 'Threadpool'))]
  exclusive = {}
  for key in threads:  # nested intervals per thread: a parent's time minus its children's
    stack = []
    for e in sorted((e for e in ops if (e['pid'], e['tid']) == key),
                    key=lambda e: (e['ts'], -e['dur'])):
      while stack and e['ts'] >= stack[-1]['ts'] + stack[-1]['dur']:
        stack.pop()
      if stack:
        exclusive[stack[-1]['name']] = exclusive.get(stack[-1]['name'], 0.0) - e['dur']
      exclusive[e['name']] = exclusive.get(e['name'], 0.0) + e['dur']
      stack.append(e)
  total = sum(exclusive.values())

  def describe(name):  # (HLO shape + opcode + JAX op_name, the model's top-level module)
    line = re.search(r'%' + re.escape(name) + r' = (\S+) ([\w-]+)\(([^\n]*)', compiled_text)
    if not line:
      return '', 'runtime (not an HLO op)'
    op_name = re.search(r'op_name="([^"]*)"', line.group(3))
    path = op_name.group(1) if op_name else ''
    # 'jit(train_step)/transpose(jvp(MSTN))/clstm1/...' -> 'clstm1 (backward)'
    parts = path.split('/')
    model = next((i for i, p in enumerate(parts) if 'jvp(' in p), None)
    module = parts[model + 1] if model is not None and model + 1 < len(parts) else 'other'
    if model is not None and parts[model].startswith('transpose('):
      module += ' (backward)'
    return f'{line.group(1)} {line.group(2)} {path}', module

  rows, modules = [], {}
  for name, us in sorted(exclusive.items(), key=lambda kv: -kv[1]):
    desc, module = describe(name)
    modules[module] = modules.get(module, 0.0) + us
    if len(rows) < top:
      rows.append((name, us / 1e3 / steps, us / total, desc[:160]))
  modules = [(m, us / 1e3 / steps, us / total)
             for m, us in sorted(modules.items(), key=lambda kv: -kv[1])]
  return rows, modules, total / 1e6 / steps


def make_config(name: str, clips: int, frames: int, height: Optional[int] = None,
                width: Optional[int] = None, dtype: str = 'float32') -> ml_collections.ConfigDict:
  """The train config of network `name` (a key of TRAIN_STEP_MODELS) on clips
  of (frames, height, width); height / width None: the model's paper size (RRU
  299 x 299, CRF 64 x 48), else 256 x 128. `dtype`: compute dtype."""
  c = m3d_mars.get_config()
  c.clip_len = frames
  c.height, c.width = height or 256, width or 128
  c.num_identities, c.num_instances = clips, 1
  model_name, kwargs = TRAIN_STEP_MODELS[name]
  c.model_name = model_name
  model = dict(backbone='resnet50', backbone_width=0, last_stride=1,
               clip_len=frames, **kwargs)
  c.model = ml_collections.ConfigDict(model)
  c.losses = ml_collections.ConfigDict(
      {'ce_streams' if model_name == 'two_stream_m3d' else 'ce': {'weight': 1.0}})
  if model_name == 'trsa':  # any T (no clip_len); the paper's objective (eq. 5, 9)
    del c.model['clip_len']
    c.losses = ml_collections.ConfigDict(
        {term: {'weight': 1.0} for term in ('focal', 'triplet', 'temporal_reg')})
  if model_name == 'rru':  # rru_ilids_vid.py's model (Inception-v3) and objective (eq. 7)
    paper = rru_ilids_vid.get_config()
    c.model, c.losses = paper.model, paper.losses
    c.model.update(kwargs)
    if height is None:
      c.height = c.width = paper.height  # 299 x 299
    c.nesterov, c.pretrained_lr_mult = paper.nesterov, paper.pretrained_lr_mult
  if model_name == 'crf':  # crf_ilids_vid.py's model, input (flow) and objective (eq. 9)
    paper = crf_ilids_vid.get_config()
    c.model, c.losses = paper.model, paper.losses
    c.model.update(kwargs)
    c.use_flow = True
    if height is None:
      c.height, c.width = paper.height, paper.width  # 64 x 48
  if model_name == 'mstn':  # mstn_mars.py's model and objective (eq. 5); any T
    paper = mstn_mars.get_config()
    c.model, c.losses = paper.model, paper.losses
    c.model.update(kwargs)
  # A constant rate; the benchmark times steps and never trains to an end.
  c.schedule.decay_steps, c.schedule.decay_epochs = (10**9,), None
  c.dtype = dtype
  return c


def _config(name: str, flag_values) -> ml_collections.ConfigDict:
  """make_config from the --train_step_* flags (sizes not given: the paper's)."""
  def given(flag):
    return flag_values[flag].present or flag_values['train_step_height'].present
  return make_config(name, flag_values.train_step_clips, flag_values.train_step_frames,
                     flag_values.train_step_height if given('train_step_height') else None,
                     flag_values.train_step_width if given('train_step_width') else None,
                     flag_values.train_step_dtype)


def cost_flops(stage) -> float:
  """FLOPs of a jax.stages.Lowered or Compiled program by XLA's cost
  analysis; NaN where the backend does not report them."""
  analysis = stage.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per computation
    analysis = analysis[0] if analysis else {}
  return float((analysis or {}).get('flops', float('nan')))


def step_flops(jitted_step, *args) -> float:
  """FLOPs of one call of `jitted_step` from XLA's cost analysis of its
  lowered (pre-optimization) program: forward, backward and update, summed
  over devices. NaN where the backend does not report them."""
  return cost_flops(jitted_step.lower(*args))


def time_train_step(name: str, flag_values, num_classes: int = 625) -> Dict[str, float]:
  """Compile seconds, steps/s and clips/s of one network's train step."""
  config = _config(name, flag_values)
  clips, t = flag_values.train_step_clips, flag_values.train_step_frames
  mesh = sharding.make_mesh()
  model, state, train_step = bench_setup.init_train_step(config, mesh, t, num_classes)
  _, batch = bench_setup.random_batch(config, mesh, clips, t, num_classes)
  flops = step_flops(train_step, state, batch)  # before the state is donated
  # Conv + matmul FLOPs with every scan body counted T times (see jaxpr_flops).
  loop_flops = jaxpr_flops(jax.make_jaxpr(train_step)(state, batch).jaxpr)
  profile = flag_values.train_step_profile_ops
  compiled_text = train_step.lower(state, batch).compile().as_text() if profile else ''
  start = time.perf_counter()
  state, metrics = train_step(state, batch)  # compile + one step
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  trace_dir = f'{flag_values.train_step_profile_dir}/{name}_{time.time_ns()}'
  if profile:
    jax.profiler.start_trace(trace_dir)
  start = time.perf_counter()
  for _ in range(flag_values.train_step_repeats):
    state, metrics = train_step(state, batch)
  jax.block_until_ready(metrics)
  seconds = (time.perf_counter() - start) / flag_values.train_step_repeats
  if profile:
    jax.profiler.stop_trace()
  out = dict(first_call_s=first, step_s=seconds, steps_per_s=1 / seconds,
             clips_per_s=clips / seconds,
             params=sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params)),
             gflop_per_step=flops / 1e9, achieved_gflop_per_s=flops / seconds / 1e9,
             loop_gflop_per_step=loop_flops / 1e9,
             input=f'{clips} x {t} x {config.height} x {config.width}',
             objective=' + '.join(config.losses))
  if profile:
    rows, modules, traced = _summarise_trace(trace_dir, compiled_text,
                                             flag_values.train_step_repeats, profile)
    print(f'\n{name}: top {profile} XLA ops by exclusive time per step (traced steps, '
          f'{traced * 1e3:.0f} ms of op time per step; trace in {trace_dir})')
    print('| op | ms / step | share | HLO shape, JAX op_name |')
    print('|---|---:|---:|---|')
    for op, ms, share, desc in rows:
      print(f'| {op} | {ms:.1f} | {100 * share:.1f}% | {desc} |')
    print(f'\n{name}: exclusive op time per step by top-level module (from op_name)')
    print('| module | ms / step | share |')
    print('|---|---:|---:|')
    for module, ms, share in modules[:profile]:
      print(f'| {module} | {ms:.1f} | {100 * share:.1f}% |')
  if flag_values.train_step_forward:
    variables = {'params': state.params, 'batch_stats': state.batch_stats}
    forward = jax.jit(lambda v, f: inference.apply_model(model.apply, v, f,
                                                         train=False)['embedding'])
    jax.block_until_ready(forward(variables, inference.model_inputs(batch)))
    start = time.perf_counter()
    for _ in range(flag_values.train_step_repeats):
      emb = forward(variables, inference.model_inputs(batch))
    jax.block_until_ready(emb)
    fwd = (time.perf_counter() - start) / flag_values.train_step_repeats
    out.update(forward_clips_per_s=clips / fwd)
  return out


def run_train_step_benchmark(flag_values) -> Dict[str, Dict[str, float]]:
  """The train_step suite's table (with --reference=torch: bench_torch_compare's)."""
  if 'reference' in flag_values and flag_values.reference == 'torch':
    from experiments import bench_torch_compare  # pylint: disable=g-import-not-at-top
    return bench_torch_compare.run_torch_comparison(flag_values)
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
            'achieved GFLOP/s | conv+dot GFLOP/step, loops x T | step time / 2D | '
            'FLOP ratio to 2D |'
            + (' forward clips/s | forward ratio |' if flag_values.train_step_forward else '')
            + ' paper clips/s | paper ratio |')
  print(header)
  print('|' + '---|' * (header.count('|') - 1))
  for n, r in results.items():
    paper = PAPER_CLIPS_PER_SEC.get(n)
    row = (f'| {n} | {r["input"]} | {r["objective"]} | {r["params"]:,} | '
           f'{r["first_call_s"]:.1f} | {r["steps_per_s"]:.3f} | '
           f'{r["clips_per_s"]:.3f} | {r["clips_per_s"] / base["clips_per_s"]:.3f} | '
           f'{r["gflop_per_step"]:.1f} | {r["achieved_gflop_per_s"]:.1f} | '
           f'{r["loop_gflop_per_step"]:.1f} | {r["step_s"] / base["step_s"]:.2f} | '
           f'{r["loop_gflop_per_step"] / base["loop_gflop_per_step"]:.2f} |')
    if flag_values.train_step_forward:
      row += (f' {r["forward_clips_per_s"]:.3f} | '
              f'{r["forward_clips_per_s"] / base["forward_clips_per_s"]:.3f} |')
    row += (f' {paper:.1f} | {paper / PAPER_CLIPS_PER_SEC["2d"]:.3f} |' if paper else ' | |')
    print(row)
  return results
