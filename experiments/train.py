r"""Trains a video re-ID model, then evaluates it on the query/gallery split.

  python -m experiments.train --config=experiments/configs/synthetic_baseline.py \
      --workdir=/tmp/jaxreid/baseline [--config.num_train_steps=2000 ...]

Resumes from the latest checkpoint in --workdir. Writes checkpoints,
TensorBoard events and eval_results.json there.

With --config.all_splits=True (iLIDS-VID, PRID-2011), trains and evaluates
each of the dataset's numbered splits in WORKDIR/split_<k> and writes the
mean and std over splits to WORKDIR/eval_results.json.
"""

from absl import app, flags

from experiments import common, multihost
from jaxreid.training import loop

common.define_flags()
multihost.define_flags()
flags.adopt_module_key_flags(common)  # --help lists --config, --workdir, ...
flags.adopt_module_key_flags(multihost)


def train_and_evaluate(config, workdir: str) -> dict:
  """Prepares the configured dataset, trains, evaluates; returns the results."""
  return loop.train_and_evaluate(config, workdir, common.make_data(config))


def main(argv):
  common.run_main(argv, train_and_evaluate)


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
