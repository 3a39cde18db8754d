r"""Do a trained model's parameters move, group by group? (issue 15's "do the
temporal parameters receive gradient and move?")

Re-creates the run's initial parameters (the trainer initializes from
`jax.random.key(config.seed)`, so they are exactly those it started from)
and compares them with a checkpoint's, per group of parameters
(`experiments/drift_statistics.py` says what a group and each column is).

  python -m experiments.parameter_drift --workdir=/tmp/jaxreid/m3d \
      --output=/tmp/jaxreid/m3d/parameter_drift.json [--step=latest]

Reads the workdir (its recorded config); writes only --output and prints a
table. A run started from ImageNet weights (`config.pretrained`) is compared
with the weights it loaded (loaded again from the recorded path).
"""

import jax
from absl import app, flags

from experiments import checkpoint_experiment, common
from experiments.drift_statistics import drift_by_group, format_table
from jaxreid import sharding
from jaxreid.training import setup

_OUTPUT = checkpoint_experiment.define_flags()
flags.adopt_module_key_flags(checkpoint_experiment)
flags.adopt_module_key_flags(common)


def drift(config, workdir: str, step: str = 'latest') -> dict:
  """{'step', 'groups': drift_by_group(init, checkpoint)} of `workdir`."""
  mesh = sharding.make_mesh()
  state, meta = setup.restore_for_inference(config, workdir, mesh, step)
  init = setup.initial_state(config, meta['num_classes'], mesh)
  groups = drift_by_group(jax.device_get(init.params), jax.device_get(state.params))
  return {'workdir': workdir, 'step': int(jax.device_get(state.step)), 'groups': groups}


def main(argv):
  checkpoint_experiment.run(
      argv, drift, lambda out: f'{out["workdir"]}, step {out["step"]}:\n' +
      format_table(out['groups']), _OUTPUT)


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
