"""`python -m experiments.benchmark --suite=init_compile`: how long XLA takes to
compile a new run's init program (parameters, BN statistics, optimizer state),
with XLA's default options and with the library's
(``jaxreid.training.setup.INIT_COMPILER_OPTIONS``), and whether both give
bitwise the same state.

For each model family's synthetic config (``experiments/family_configs.py``,
at full size: 150 classes, the config's T, height and width), traces, lowers
and compiles the init twice in the same process (each timing covers all three),
default first, then runs both executables on the same key and compares every leaf bit for bit. Nothing is
cached between the two compiles (no persistent compilation cache is set here).

  python -m experiments.benchmark --suite=init_compile
  python -m experiments.benchmark --suite=init_compile --init_compile_models=baseline,mstn
"""

import time
from typing import Dict

from absl import flags
import jax
import numpy as np

from experiments import family_configs
from jaxreid import sharding
from jaxreid.training import optim, setup, state as state_lib

flags.DEFINE_list('init_compile_models', list(family_configs.CONFIGS),
                  'init_compile suite: entries of experiments.family_configs.CONFIGS.')

NUM_CLASSES = 150  # the synthetic dataset's training identities


def compare(name: str) -> Dict[str, object]:
  """Compile seconds (default, library) of one family's init, and bit equality."""
  config = family_configs.CONFIGS[name]()
  mesh = sharding.make_mesh()
  model = setup.build_model(config, NUM_CLASSES)
  tx, _ = optim.make_optimizer(config, getattr(model, 'new_layers', ()))
  sample = state_lib.sample_input(config.clip_len, config.height, config.width,
                                  flow=config.use_flow)
  init = lambda rng: state_lib.create_train_state(model, tx, rng, sample)
  rng = jax.random.key(0)
  abstract = jax.eval_shape(init, rng)
  state_sh = jax.tree.map(lambda _: sharding.replicated(mesh), abstract)
  start = time.perf_counter()  # both timings: trace + lower + compile
  default = jax.jit(init, out_shardings=state_sh).lower(rng).compile()
  default_s = time.perf_counter() - start
  start = time.perf_counter()
  library = setup.compile_init(init, state_sh, rng)
  library_s = time.perf_counter() - start
  leaves = [jax.tree.leaves(jax.device_get(f(rng))) for f in (default, library)]
  equal = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(*leaves))
  return dict(default_s=default_s, library_s=library_s, ratio=default_s / library_s,
              bitwise_equal=equal, leaves=len(leaves[0]))


def run_init_compile_benchmark(flag_values) -> Dict[str, Dict[str, object]]:
  """Init compile time, default against INIT_COMPILER_OPTIONS, per model family."""
  unknown = [n for n in flag_values.init_compile_models if n not in family_configs.CONFIGS]
  if unknown:
    raise SystemExit(f'Unknown --init_compile_models entries {", ".join(unknown)}; valid '
                     f'choices: {", ".join(family_configs.CONFIGS)}.')
  backend = jax.default_backend()
  options = setup.INIT_COMPILER_OPTIONS.get(backend)
  results = {}
  for name in flag_values.init_compile_models:
    r = results[name] = compare(name)
    print(f'{name}: default {r["default_s"]:.1f} s, library {r["library_s"]:.1f} s, '
          f'x{r["ratio"]:.1f}, bitwise equal: {r["bitwise_equal"]}', flush=True)
  print(f'\nInit compile time, {backend} ({jax.devices()[0].device_kind}), library options '
        f'{options}')
  print('| model | default s | library s | default / library | state leaves | bitwise equal |')
  print('|---|---|---|---|---|---|')
  for name, r in results.items():
    print(f'| {name} | {r["default_s"]:.1f} | {r["library_s"]:.1f} | {r["ratio"]:.1f} | '
          f'{r["leaves"]} | {"yes" if r["bitwise_equal"] else "NO"} |')
  return results
