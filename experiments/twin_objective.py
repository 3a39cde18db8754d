r"""How much of a run's training objective are the gait twins? (issue 15)

The synthetic dataset's 150 training identities hold 15 twin pairs (same
clothes and body, different gait). A model learns to tell twins apart only
where its objective contrasts them. This measures, for one checkpoint of a run
on the synthetic dataset:

* from the run's own PK plan over all its training steps (no model): how
  often a batch holds both twins of a pair, so that the batch-hard triplet can
  contrast them (for P of N identities, a twin's twin is in its batch with
  probability (P - 1) / (N - 1): 7 / 149 = 4.7% at P = 8);
* on --batches of those training batches (the run's augmentation, eval mode):
  the cross entropy and accuracy of the classifier on twin identities' clips
  against the others', the softmax mass it puts on the twin's class, the twin
  rows' share of the summed cross entropy, and, where a twin pair shares a
  batch, how often the twin is the hardest negative.

  python -m experiments.twin_objective --workdir=/tmp/jaxreid/m3d \
      --output=/tmp/jaxreid/m3d/twin_objective.json [--batches=40] [--step=latest]

Reads the workdir; writes only --output and prints a summary.
"""

import jax
import numpy as np
from absl import app, flags

from experiments import checkpoint_experiment, common
from experiments import objective_statistics as stats
from jaxreid import inference, sharding
from jaxreid.training import setup

_OUTPUT, _BATCHES = checkpoint_experiment.define_flags(
    'Training batches the classifier statistics average over.', 40)
flags.adopt_module_key_flags(checkpoint_experiment)
flags.adopt_module_key_flags(common)


def twin_objective(config, workdir: str, step: str = 'latest', num_batches: int = 40) -> dict:
  """{'co_occurrence', 'classifier', 'hardest_negative'} (see the module docstring)."""
  if config.dataset != 'synthetic_video_reid':
    raise ValueError(f'--config.dataset={config.dataset!r}: this experiment needs the synthetic '
                     "dataset's gait twins ('synthetic_video_reid').")
  from data_pipelines.synthetic_video_reid import splits  # pylint: disable=g-import-not-at-top
  train = common.make_data(config, training=True)
  partners = splits.train_twin_partners(train.builder.builder_config.params,
                                        train.train_pid_values)
  partner = {label: int(p) for label, p in enumerate(partners) if p >= 0}
  plans = [train.plan(s).labels for s in range(config.num_train_steps)]
  out = {'workdir': workdir, 'twin_identities': len(partner),
         'identities': int(train.num_train_ids),
         'co_occurrence': stats.co_occurrence(plans, partner)}
  mesh = sharding.make_mesh()
  state, _ = setup.restore_for_inference(config, workdir, mesh, step)
  out['step'] = int(jax.device_get(state.step))
  variables = inference.model_variables(state.params, state.batch_stats)
  forward = jax.jit(lambda inputs: inference.apply_model(state.apply_fn, variables, inputs,
                                                         train=False))
  logits, labels, rows, hits = [], [], 0, 0
  batches = train.train_batches(0)
  for _ in range(num_batches):
    batch = next(batches)
    outputs = jax.device_get(forward(sharding.to_global(inference.model_inputs(batch), mesh)))
    batch_labels = np.asarray(batch['pid'])  # training labels
    logits.append(np.asarray(outputs['logits']))
    labels.append(batch_labels)
    r, h = stats.hardest_negative_is_twin(outputs['triplet_features'], batch_labels, partner)
    rows, hits = rows + r, hits + h
  out['batches'] = num_batches
  out['classifier'] = stats.classifier_statistics(np.concatenate(logits), np.concatenate(labels),
                                                  partner)
  out['hardest_negative'] = {'twin_rows_with_their_twin': rows, 'twin_is_hardest': hits}
  return out


def describe(out: dict) -> str:
  co, cl, hn = out['co_occurrence'], out['classifier'], out['hardest_negative']
  tw, ot = cl['twins'], cl['others']
  return '\n'.join([
      f'{out["workdir"]}, step {out["step"]}: {out["twin_identities"]} of {out["identities"]} '
      'training identities are gait twins.',
      f'  PK plan, {co["batches"]} steps: {100 * co["batches_with_a_twin_pair"]:.1f}% of batches '
      f'hold a twin pair; {100 * co["twin_rows_with_their_twin_in_the_batch"]:.1f}% of twin rows '
      'have their twin in the batch.',
      f'  classifier on {out["batches"]} training batches: cross entropy twins '
      f'{tw["cross_entropy"]:.3f} vs others {ot["cross_entropy"]:.3f}; accuracy twins '
      f'{100 * tw["accuracy"]:.1f}% vs others {100 * ot["accuracy"]:.1f}%; mass on the twin\'s '
      f'class {tw.get("mass_on_twin_class", float("nan")):.3f}; twin is the top wrong class in '
      f'{100 * tw.get("twin_is_top_wrong_class", float("nan")):.1f}% of twin rows; twin rows '
      f'carry {100 * cl["twin_share_of_cross_entropy"]:.1f}% of the summed cross entropy.',
      f'  batch-hard triplet: the twin is the hardest negative for {hn["twin_is_hardest"]} of '
      f'{hn["twin_rows_with_their_twin"]} twin rows whose twin is in the batch.'])


def main(argv):
  checkpoint_experiment.run(argv, lambda c, w, step: twin_objective(c, w, step, _BATCHES.value),
                            describe, _OUTPUT)


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
