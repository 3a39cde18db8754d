"""The `main` of the commands that study one checkpoint of a training run
(temporal_probe, parameter_drift, precise_bn): read the workdir's recorded
config and the checkpoint of --step, compute, write one JSON file, print a
summary. User errors end in one line, as in every entry point."""

import json
from typing import Callable

from experiments import common


def summary(results: dict) -> dict:
  """The part of `retrieval.evaluate`'s results these commands keep: rank-1,
  mAP and each subset's rank-1."""
  return {'rank1': results['rank1'], 'mAP': results['mAP'],
          'subsets': {k: v['rank1'] for k, v in results['subsets'].items()}}


def run(argv, compute: Callable, describe: Callable, output_flag):
  """`compute(config, workdir, step)` -> a JSON-able dict, written to the file
  of `output_flag` (an absl FlagHolder); then `describe(result)` printed."""
  step = common.run_or_exit(common.checkpoint_step)

  def run_one(config, workdir):
    out = compute(config, workdir, step)
    with open(output_flag.value, 'w') as f:
      json.dump(out, f, indent=1)
    print(describe(out), flush=True)

  common.run_main(argv, run_one, command='extract')
