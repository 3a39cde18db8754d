r"""Evaluates a checkpoint of a training run (the latest, the best or step N).

  python -m experiments.evaluate --workdir=/tmp/jaxreid/baseline \
      [--step=latest|best|N] [--config.eval.metric=cosine ...]

Without --config, the config the run recorded (WORKDIR/config.json) is used,
with the --config.* overrides on top: another dataset, protocol or sampler
only needs its flags; what changes the network's shapes must match.

Writes eval_results.json to --workdir. With --config.all_splits=True, evaluates
WORKDIR/split_<k> for each numbered split of the dataset (as trained by
experiments.train --config.all_splits=True) and reports mean and std.
"""

from absl import app, flags

from experiments import common, multihost
from jaxreid.training import evaluate as evaluate_lib

common.define_flags()
common.define_step_flag()
multihost.define_flags()
flags.adopt_module_key_flags(common)  # --help lists --config, --workdir, ...
flags.adopt_module_key_flags(multihost)


def evaluate(config, workdir: str, step='latest') -> dict:
  """Prepares the configured dataset and evaluates the workdir's checkpoint of
  `step` (latest, best or a number) on it (no training: P and K are not
  checked against its ids)."""
  return evaluate_lib.evaluate_checkpoint(config, workdir,
                                         common.make_data(config, training=False), step)


def main(argv):
  step = common.run_or_exit(common.checkpoint_step)
  common.run_main(argv, lambda config, workdir: evaluate(config, workdir, step),
                  command='evaluate')


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
