"""The `main` of the commands that study one checkpoint of a training run
(temporal_probe, parameter_drift, precise_bn): read the workdir's recorded
config and the checkpoint of --step, compute, write one JSON file, print a
summary. User errors end in one line, as in every entry point."""

import json
from typing import Callable

from absl import flags

from experiments import common


def define_flags(batches_help: str = '', batches_default: int = 0):
  """Defines --output, the common flags, --step and, given `batches_help`,
  --batches (call at import of the command, then adopt this module's and
  common's key flags). Returns the --output holder, or (--output, --batches)."""
  output = flags.DEFINE_string('output', None, 'The JSON file to write.', required=True)
  common.define_flags()
  common.define_step_flag()
  if not batches_help:
    return output
  return output, flags.DEFINE_integer('batches', batches_default, batches_help, lower_bound=1)


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
