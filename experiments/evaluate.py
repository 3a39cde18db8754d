r"""Evaluates the latest checkpoint of a training run.

  python -m experiments.evaluate --config=experiments/configs/synthetic_baseline.py \
      --workdir=/tmp/jaxreid/baseline [--config.eval.metric=cosine ...]

Writes eval_results.json to --workdir. With --config.all_splits=True, evaluates
WORKDIR/split_<k> for each numbered split of the dataset (as trained by
experiments.train --config.all_splits=True) and reports mean and std.
"""

from absl import app, flags

from experiments import common
from jaxreid.training import loop

common.define_flags()
common.define_multihost_flags()
flags.adopt_module_key_flags(common)  # --help lists --config, --workdir, ...


def evaluate(config, workdir: str) -> dict:
  """Prepares the configured dataset and evaluates the workdir's latest
  checkpoint on it (no training: P and K are not checked against its ids)."""
  return loop.evaluate_checkpoint(config, workdir, common.make_data(config, training=False))


def main(argv):
  common.run_main(argv, evaluate, command='evaluate')


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
