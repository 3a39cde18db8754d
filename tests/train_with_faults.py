"""``python -m experiments.train`` with faults injected (``tests/faults.py``),
for the tests that run training as a user does, in a subprocess:

  python tests/train_with_faults.py [--nan_at_step=N] [--kill_during_save=N] \
      --config=... --workdir=... [--config.key=value ...]

--nan_at_step=N: the loss of step N (1-based, as the logs count) is NaN, in
this run and in a resumed one. --kill_during_save=N: SIGKILL right after the
save of step N has started. Every other argument goes to experiments.train.
"""

import argparse
import os
import sys

# Run as a script: this folder is on sys.path (for `faults`), the repository
# root is not.
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import faults  # pylint: disable=g-import-not-at-top,wrong-import-position


def main():
  parser = argparse.ArgumentParser(allow_abbrev=False)
  parser.add_argument('--nan_at_step', type=int)
  parser.add_argument('--kill_during_save', type=int)
  injected, train_args = parser.parse_known_args()
  # pylint: disable=g-import-not-at-top
  from absl import app
  from data_pipelines import pipeline
  from experiments import common, train
  from jaxreid import losses
  from jaxreid.training import checkpoint
  # pylint: enable=g-import-not-at-top
  if injected.nan_at_step is not None:
    faults.poison_loss(losses.LOSS_TERMS)
    faults.poison_train_batches(pipeline.ReIDData, injected.nan_at_step)
  if injected.kill_during_save is not None:
    faults.kill_during_save(checkpoint.Checkpointer, injected.kill_during_save)
  app.run(train.main, argv=[sys.argv[0], *train_args], flags_parser=common.parse_flags)


if __name__ == '__main__':
  main()
