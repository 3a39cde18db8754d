r"""How much a trained model's retrieval rests on the order and the motion of frames.

Evaluates one checkpoint on the same test clips three ways:

  as_is     the eval pipeline's clips
  shuffled  each clip's frames (and flow) in a random order, one fixed
            permutation per clip
  frozen    each clip is its first frame repeated T times (flow zero): no motion

A model that averages frame features gives as_is = shuffled (up to float
rounding); one that uses the order of frames loses under shuffled, one that
uses motion at all loses under frozen. The gait twins of the synthetic
dataset differ only in motion, so their rank-1 under frozen is what appearance
alone gives.

  python -m experiments.temporal_probe --workdir=/tmp/jaxreid/m3d \
      --output=/tmp/jaxreid/m3d/temporal_probe.json [--step=latest] [--config.eval.*=...]

Reads the workdir (its recorded config unless --config is given); writes only
--output (JSON: per mode rank-1, mAP and per-subset rank-1) and prints a table.
"""

import jax
from absl import app, flags

from experiments import checkpoint_experiment, common
from experiments.frame_perturbations import MODES, PerturbedData
from jaxreid import inference, sharding
from jaxreid.evaluation import retrieval
from jaxreid.training import setup

_OUTPUT = checkpoint_experiment.define_flags()
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the shuffled frame orders.')
flags.adopt_module_key_flags(checkpoint_experiment)
flags.adopt_module_key_flags(common)

def probe(config, workdir: str, step: str = 'latest', seed: int = 0) -> dict:
  """{mode: {'rank1', 'mAP', 'subsets'}} for every mode of `MODES`."""
  data = common.make_data(config, training=False)
  mesh = sharding.make_mesh()
  state, _ = setup.restore_for_inference(config, workdir, mesh, step)
  embedder = inference.make_tracklet_embedder(mesh, config.eval)
  out = {'workdir': workdir, 'step': int(jax.device_get(state.step)), 'eval_sampler':
         config.eval.sampler}
  for mode in MODES:
    results = retrieval.evaluate(embedder, state, PerturbedData(data, mode, seed), mesh,
                                 metric=config.eval.metric, protocol=config.eval.protocol,
                                 normalize=config.eval.normalize_features)
    out[mode] = checkpoint_experiment.summary(results)
  return out


def format_table(out: dict) -> str:
  subsets = sorted(out['as_is']['subsets'])
  header = ['frames', 'rank-1', 'mAP'] + [f'rank-1, {s}' for s in subsets]
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  for mode in MODES:
    r = out[mode]
    cells = [mode, f'{100 * r["rank1"]:.1f}', f'{100 * r["mAP"]:.1f}'] + [
        f'{100 * r["subsets"][s]:.1f}' for s in subsets]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv):
  checkpoint_experiment.run(argv, lambda c, w, step: probe(c, w, step, _SEED.value),
                            format_table, _OUTPUT)


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
