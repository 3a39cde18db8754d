"""`python -m experiments.benchmark --suite=scan_compile`: does compiling a
scanned model's train step cost more for longer clips?

For each model (MSTN's two CLSTM blocks, RRU's refining unit: recurrences
written as a cell under ``nn.scan`` / ``lax.scan``) and each T, lowers and
compiles the library's jitted train step (``jaxreid.training.step``: forward,
the model's paper objective, backward, optimizer update; the configuration of
``bench_train_step``'s ``--suite=train_step`` entry) on abstract inputs and
reports the seconds of trace + lower, of XLA compilation, and the size of the
lowered StableHLO text. Nothing is executed: the state is a
``jax.eval_shape`` and the batch a ``ShapeDtypeStruct``. With ``lax.scan``
the step's program holds one copy of the recurrent cell whatever T, so
compile time should stay flat in T (an unrolled Python loop would grow
linearly).

  python -m experiments.benchmark --suite=scan_compile --model=mstn
  python -m experiments.benchmark --suite=scan_compile --scan_compile_frames=4,8,32,64

Models: ``--model`` names one entry of ``bench_train_step.TRAIN_STEP_MODELS``;
'all' (the default) runs every one of SCAN_MODELS that is registered there.
"""

import time
from typing import Dict

from absl import flags
import jax
import jax.numpy as jnp

from experiments import bench_train_step
from jaxreid import sharding
from jaxreid.training import optim, setup, state as state_lib, step as step_lib

SCAN_MODELS = ('mstn', 'rru')  # models whose recurrence is a scanned cell

flags.DEFINE_list('scan_compile_frames', ['4', '8', '32'], 'scan_compile suite: the Ts.')
flags.DEFINE_integer('scan_compile_height', 64, 'scan_compile suite: frame height.')
flags.DEFINE_integer('scan_compile_width', 32, 'scan_compile suite: frame width.')
flags.DEFINE_integer('scan_compile_clips', 2, 'scan_compile suite: clips per step.')


class _Sizes:
  """The attributes ``bench_train_step._config`` reads from its flags, with
  every size given explicitly (so no model substitutes its paper's size)."""

  def __init__(self, frames: int, height: int, width: int, clips: int):
    self.train_step_frames, self.train_step_clips = frames, clips
    self.train_step_height, self.train_step_width = height, width

  def __getitem__(self, name):  # flag_values['train_step_height'].present
    del name
    return type('Flag', (), {'present': True})()


def compile_seconds(name: str, frames: int, height: int, width: int, clips: int,
                    num_classes: int = 625) -> Dict[str, float]:
  """Trace + lower and XLA-compile seconds of one model's train step at T = frames."""
  config = bench_train_step._config(name, _Sizes(frames, height, width, clips))  # pylint: disable=protected-access
  mesh = sharding.make_mesh()
  model = setup.build_model(config, num_classes)
  tx, schedule = optim.make_optimizer(config)
  abstract = jax.eval_shape(lambda rng: state_lib.create_train_state(
      model, tx, rng, state_lib.sample_input(frames, height, width,
                                             flow=config.use_flow)),
                            jax.random.key(0))
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  train_step = step_lib.make_train_step(config, schedule, state_sh, mesh)
  data_sh = sharding.data_sharding(mesh)
  batch = {'frames': jax.ShapeDtypeStruct((clips, frames, height, width, 3), jnp.uint8,
                                          sharding=data_sh),
           'pid': jax.ShapeDtypeStruct((clips,), jnp.int32, sharding=data_sh)}
  if config.use_flow:
    batch['flow'] = jax.ShapeDtypeStruct((clips, frames, height, width, 2), jnp.float32,
                                         sharding=data_sh)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       abstract, state_sh)
  start = time.perf_counter()
  lowered = train_step.lower(state, batch)
  lower_s = time.perf_counter() - start
  start = time.perf_counter()
  lowered.compile()
  compile_s = time.perf_counter() - start
  return dict(lower_s=lower_s, compile_s=compile_s, total_s=lower_s + compile_s,
              hlo_chars=len(lowered.as_text()))


def run_scan_compile_benchmark(flag_values) -> Dict[str, Dict[int, Dict[str, float]]]:
  """Compile time of the scanned models' train steps for each T."""
  name = flag_values.model
  registered = bench_train_step.TRAIN_STEP_MODELS
  if name == 'all':
    names = tuple(n for n in SCAN_MODELS if n in registered)
  elif name in registered:
    names = (name,)
  else:
    raise SystemExit(f'Unknown --model={name!r} for scan_compile; valid choices: all, '
                     f'{", ".join(n for n in SCAN_MODELS if n in registered)} '
                     '(or any train_step model).')
  frames = [int(t) for t in flag_values.scan_compile_frames]
  h, w, clips = (flag_values.scan_compile_height, flag_values.scan_compile_width,
                 flag_values.scan_compile_clips)
  backend = f'{jax.default_backend()} ({jax.devices()[0].device_kind}, {len(jax.devices())} dev.)'
  results = {}
  for n in names:
    results[n] = {}
    # Inception-v3 (rru) needs frames of at least 75 x 75: use the paper's 299.
    nh, nw = (max(h, 299), max(w, 299)) if n == 'rru' and min(h, w) < 75 else (h, w)
    for t in frames:
      r = results[n][t] = compile_seconds(n, t, nh, nw, clips)
      r['size'] = f'{nh} x {nw}'
      print(f'{n} T={t}: trace+lower {r["lower_s"]:.1f} s, compile {r["compile_s"]:.1f} s, '
            f'StableHLO {r["hlo_chars"]:,} chars', flush=True)
  print(f'\nTrain-step compile time vs T, {clips} clips x T x H x W, each model\'s '
        f'train_step configuration, {backend}')
  print('| model | T | H x W | trace + lower s | XLA compile s | total s | StableHLO chars |')
  print('|---|---|---|---|---|---|---|')
  for n, by_t in results.items():
    for t, r in by_t.items():
      print(f'| {n} | {t} | {r["size"]} | {r["lower_s"]:.1f} | {r["compile_s"]:.1f} | '
            f'{r["total_s"]:.1f} | {r["hlo_chars"]:,} |')
  return results
