r"""Are a trained model's BatchNorm statistics those of its final network?
(issue 15's "BN statistics under time folding")

The backbones fold time into the batch, (B, T, H, W, C) -> (B T, H, W, C), so
each BatchNorm's batch holds B clips of T consecutive, nearly equal frames:
fewer independent samples than its size, and noisier statistics. This
evaluates one checkpoint twice on the test split: with the moving averages
training kept, and with the population statistics of the final weights over
--batches training batches (`experiments/bn_population.py`), and prints how
far the two sets of statistics are apart.

  python -m experiments.precise_bn --workdir=/tmp/jaxreid/m3d \
      --output=/tmp/jaxreid/m3d/precise_bn.json [--batches=50] [--step=latest]

The training batches are the run's own (its PK plan from step 0, its
augmentation). Reads the workdir; writes only --output and prints a table.
"""

import functools

import jax
from absl import app, flags

from experiments import checkpoint_experiment, common
from experiments.bn_population import population_statistics, relative_shift
from jaxreid import inference, sharding
from jaxreid.evaluation import retrieval
from jaxreid.training import setup

_OUTPUT, _BATCHES = checkpoint_experiment.define_flags(
    'Training batches the population statistics average over.', 50)
flags.adopt_module_key_flags(checkpoint_experiment)
flags.adopt_module_key_flags(common)


def precise_bn(config, workdir: str, step: str = 'latest', num_batches: int = 50) -> dict:
  """{'moving', 'population': {'rank1', 'mAP', 'subsets'}, 'shift': relative_shift}."""
  mesh = sharding.make_mesh()
  state, _ = setup.restore_for_inference(config, workdir, mesh, step)
  if not state.batch_stats:
    raise ValueError(f'{workdir}: the model has no BatchNorm statistics to recompute.')

  @jax.jit
  def update(batch_stats, inputs):
    _, new = inference.apply_model(
        state.apply_fn, inference.model_variables(state.params, batch_stats), inputs,
        train=True, rngs={'dropout': jax.random.key(0)}, mutable=['batch_stats'])
    return new['batch_stats']

  train = common.make_data(config, training=True)
  batches = train.train_batches(0)
  inputs = (sharding.to_global(inference.model_inputs(next(batches)), mesh)
            for _ in range(num_batches))
  population = population_statistics(update, state.batch_stats, inputs)
  data = common.make_data(config, training=False)
  embedder = inference.make_tracklet_embedder(mesh, config.eval)
  evaluate = functools.partial(retrieval.evaluate, embedder, data=data, mesh=mesh,
                               metric=config.eval.metric, protocol=config.eval.protocol,
                               normalize=config.eval.normalize_features)
  out = {'workdir': workdir, 'step': int(jax.device_get(state.step)), 'batches': num_batches,
         'shift': relative_shift(state.batch_stats, population)}
  for name, stats in (('moving', state.batch_stats), ('population', population)):
    results = evaluate(state=state.replace(batch_stats=stats))
    out[name] = checkpoint_experiment.summary(results)
  return out


def describe(out: dict) -> str:
  lines = [f'{out["workdir"]}, step {out["step"]}; moving averages vs population statistics '
           f'over {out["batches"]} training batches: median |mean shift| / std '
           f'{out["shift"]["mean"]:.3f}, median |var ratio - 1| {out["shift"]["var"]:.3f}']
  for name in ('moving', 'population'):
    r = out[name]
    subsets = ', '.join(f'{k} {100 * v:.1f}' for k, v in sorted(r['subsets'].items()))
    lines.append(f'  {name:>10}: rank-1 {100 * r["rank1"]:.1f}, mAP {100 * r["mAP"]:.1f}; '
                 f'rank-1 {subsets}')
  return '\n'.join(lines)


def main(argv):
  checkpoint_experiment.run(argv, lambda c, w, step: precise_bn(c, w, step, _BATCHES.value),
                            describe, _OUTPUT)


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
