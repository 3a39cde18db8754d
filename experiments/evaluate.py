r"""Evaluates the latest checkpoint of a training run.

  python -m experiments.evaluate --config=experiments/configs/synthetic_baseline.py \
      --workdir=/tmp/jaxreid/baseline [--config.eval.metric=cosine ...]

Writes eval_results.json to --workdir. With --config.all_splits=True, evaluates
WORKDIR/split_<k> for each numbered split of the dataset (as trained by
experiments.train --config.all_splits=True) and reports mean and std.
"""

from absl import app

from experiments import common
from jaxreid.training import loop

common.define_flags()
common.define_multihost_flags()


def evaluate(config, workdir: str) -> dict:
  return loop.evaluate_checkpoint(config, workdir, common.make_data(config))


def main(argv):
  common.run_main(argv, evaluate)


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
