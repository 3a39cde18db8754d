r"""CRF's local-global feature fusion ([CRF] section 2.7, eq. 10; docs/references.md).

Three CRF models trained with the same config on the full frame, its upper
half and its lower half (``--config.model.region=full|upper|lower``) give
x_global, x_upper, x_lower per tracklet (chunk features averaged, as at test).
Eq. 10 fuses them as x_final = W_u x_upper + W_l x_lower + W_g x_global,
"where the fusion weight W_u, W_l, W_g is adaptive parameters learned from the
training sets". The paper says no more; here the three scalar weights are fitted
on the training split's tracklet features with the network's own siamese
objective (eq. 7, margin alpha = the config's ``losses.contrastive.margin``) over
*all* training pairs, positive pairs across cameras and negative pairs weighted
to count equally (as the paper balances them in training), by Adam (Optax).
The fused features are then ranked with the Euclidean distance (section 3.2)
on query / gallery.

Eq. 10 adds the three 128-d vectors of three separately trained networks,
whose coordinates have nothing in common; ``--fusion=concat`` is the
alternative of weighting and concatenating them (distance^2 = sum_k W_k^2
||a_k - b_k||^2), fitted the same way. Both are written, beside each model
alone, to WORKDIR/fusion_results.json.

  for r in full upper lower; do
    python -m experiments.train --config=experiments/configs/crf_synthetic.py \
        --workdir=/tmp/jaxreid/crf_$r --config.model.region=$r
  done
  python -m experiments.crf_fusion --config=experiments/configs/crf_synthetic.py \
      --workdir=/tmp/jaxreid/crf_fusion --full_workdir=/tmp/jaxreid/crf_full \
      --upper_workdir=/tmp/jaxreid/crf_upper --lower_workdir=/tmp/jaxreid/crf_lower
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags, logging

from experiments import common
from jaxreid import inference, losses, reporting, sharding
from jaxreid.evaluation import ranking, retrieval
from jaxreid.training import setup

REGIONS = ('upper', 'lower', 'full')  # the order of (W_u, W_l, W_g)
FUSIONS = ('sum', 'concat')

_WORKDIRS = {r: flags.DEFINE_string(f'{r}_workdir', None, f'Workdir of the {r}-body model '
                                    f'(trained with --config.model.region={r}).')
             for r in REGIONS}
_FUSION = flags.DEFINE_enum('fusion', 'sum', FUSIONS,
                            "Written first in the summary: 'sum' (eq. 10) or 'concat'.")
_STEPS = flags.DEFINE_integer('fit_steps', 500, 'Adam steps fitting the fusion weights.')

common.define_flags()


def region_features(config, workdirs: dict, data, mesh, splits=('train', 'query', 'gallery')):
  """{region: {split: (N, D) tracklet features}} and {split: labels} of each model."""
  feats, labels = {}, {}
  for region in REGIONS:
    region_config = config.copy_and_resolve_references()
    region_config.model.region = region
    state, _ = setup.restore_for_inference(region_config, workdirs[region], mesh)
    embed_fn = inference.make_tracklet_embedder(mesh, region_config.eval)
    feats[region] = {}
    for split in splits:
      feats[region][split], labels[split] = retrieval.split_features(
          embed_fn, state, data, split, mesh)
  return feats, labels


def fuse(features, weights, fusion: str):
  """Eq. 10 (`fusion` 'sum'): sum_k W_k x_k; or 'concat': [W_k x_k]_k.

  Args:
    features: (K, N, D) the K models' features, in REGIONS order.
    weights: (K,).
  Returns:
    (N, D) or (N, K * D).
  """
  weighted = weights[:, None, None] * features
  if fusion == 'sum':
    return jnp.sum(weighted, axis=0)
  if fusion == 'concat':
    return jnp.concatenate(list(weighted), axis=-1)
  raise ValueError(f'Unknown fusion {fusion!r}; valid choices: {", ".join(FUSIONS)}.')


def training_pairs(pids, camids, max_negatives: int = 50000, seed: int = 0):
  """The (i, j), i < j, pairs of training tracklets: every positive (same pid,
  different cameras) and the negatives (different pids; a fixed random subset
  of `max_negatives` when there are more), with weights that make each kind
  count half. Returns (i, j, same, weight)."""
  i, j = np.triu_indices(len(pids), k=1)
  same = pids[i] == pids[j]
  keep = ~same | (camids[i] != camids[j])
  i, j, same = i[keep], j[keep], same[keep]
  if not same.any() or same.all():
    raise ValueError('Fitting the fusion weights needs positive (cross-camera) and negative '
                     'training pairs.')
  negatives = np.flatnonzero(~same)
  if len(negatives) > max_negatives:
    drop = np.random.default_rng(seed).choice(negatives, len(negatives) - max_negatives,
                                              replace=False)
    keep = np.ones(len(i), bool)
    keep[drop] = False
    i, j, same = i[keep], j[keep], same[keep]
  weight = np.where(same, 0.5 / same.sum(), 0.5 / (~same).sum())
  return i, j, same, weight.astype(np.float32)


def fit_weights(features, pids, camids, *, fusion: str, margin: float, steps: int,
                learning_rate: float = 0.01):
  """The fusion weights (K,) minimizing eq. 7 over the balanced training pairs.

  Args:
    features: (K, N, D) training features of the K models.
    pids, camids: (N,) training labels.
  Returns:
    (weights (K,) numpy, [loss at start, loss at end]).
  """
  i, j, same, pair_weight = training_pairs(np.asarray(pids), np.asarray(camids))
  features = jnp.asarray(features, jnp.float32)

  def loss_fn(w):
    x = fuse(features, w, fusion)
    d2 = jnp.sum(jnp.square(x[i] - x[j]), axis=-1)
    d = jnp.sqrt(jnp.maximum(d2, 1e-12))
    per_pair = jnp.where(same, 0.5 * d2, 0.5 * jnp.square(jax.nn.relu(margin - d)))  # eq. 7
    return jnp.sum(pair_weight * per_pair)

  tx = optax.adam(learning_rate)
  w = jnp.ones(features.shape[0], jnp.float32)
  opt_state = tx.init(w)

  @jax.jit
  def step(w, opt_state):
    loss, grad = jax.value_and_grad(loss_fn)(w)
    updates, opt_state = tx.update(grad, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, loss

  first = float(loss_fn(w))
  for _ in range(steps):
    w, opt_state, _ = step(w, opt_state)
  return np.asarray(w), [first, float(loss_fn(w))]


def rank(qf, gf, query, gallery, config) -> dict:
  """Rank-1/5/10/20, mAP and per-subset rank-1 of query features against the
  gallery, Euclidean distance, the config's protocol."""
  protocol = config.eval.protocol
  gf, g_pids, g_camids = retrieval.protocol_gallery(protocol, query, gallery, qf, gf)

  def run(rows):  # distances computed blockwise on device, never the whole (Q, G) matrix
    out = ranking.evaluate_features(qf[rows], gf, query['pid'][rows], g_pids,
                                    query['camid'][rows], g_camids, metric='euclidean',
                                    max_rank=50, protocol=protocol)
    cmc = np.asarray(out['cmc'])
    res = {f'rank{r}': float(cmc[min(r, len(cmc)) - 1]) for r in retrieval.RANKS}
    res['mAP'] = float(out['mAP'])
    return res

  results = run(np.arange(len(qf)))
  results['subsets'] = {name: run(np.flatnonzero(mask))
                        for name, mask in query.get('subsets', {}).items() if mask.any()}
  return results


def fusion_experiment(config, workdir: str, workdirs: dict, fusion_first: str = 'sum',
                      steps: int = 500) -> dict:
  """Extracts the three models' features, fits eq. 10's weights on the
  training split, evaluates; writes WORKDIR/fusion_results.json."""
  missing = [f'--{r}_workdir' for r in REGIONS if not workdirs.get(r)]
  if missing:
    raise ValueError(f'crf_fusion needs {", ".join(missing)} (the workdirs of the models '
                     'trained with --config.model.region=full, upper and lower).')
  if config.model_name != 'crf':
    raise ValueError(f'crf_fusion fuses CRF models; the config names {config.model_name!r}.')
  mesh = sharding.make_mesh()
  sharding.check_batch_divisible(config.eval.batch_size, mesh, 'config.eval.batch_size')
  data = common.make_data(config)
  feats, labels = region_features(config, workdirs, data, mesh)
  stack = lambda split: np.stack([feats[r][split] for r in REGIONS])  # (3, N, D)
  margin = float(losses.resolved_options(config.losses, 'contrastive')['margin'])
  query, gallery = labels['query'], labels['gallery']
  results = {'regions': list(REGIONS), 'workdirs': dict(workdirs),
             'single': {r: rank(feats[r]['query'], feats[r]['gallery'], query, gallery, config)
                        for r in REGIONS}}
  for fusion in sorted(FUSIONS, key=lambda f: f != fusion_first):
    weights, fit_loss = fit_weights(stack('train'), labels['train']['pid'],
                                    labels['train']['camid'], fusion=fusion, margin=margin,
                                    steps=steps)
    qf = np.asarray(fuse(stack('query'), jnp.asarray(weights), fusion))
    gf = np.asarray(fuse(stack('gallery'), jnp.asarray(weights), fusion))
    results[fusion] = {'weights': dict(zip(('W_u', 'W_l', 'W_g'), weights.tolist())),
                       'fit_loss': fit_loss, **rank(qf, gf, query, gallery, config)}
  if jax.process_index() == 0:
    rows = [[name, 100 * r['rank1'], 100 * r['rank5'], 100 * r['mAP'],
             100 * r['subsets'].get('gait_twins', {}).get('rank1', float('nan'))]
            for name, r in [*results['single'].items(),
                            *[(f'fusion ({f})', results[f]) for f in FUSIONS]]]
    print(reporting.format_table(['features', 'rank-1 %', 'rank-5 %', 'mAP %',
                                  'gait-twin rank-1 %'], rows), flush=True)
    for f in FUSIONS:
      logging.info('Fusion %s weights %s (fit loss %.4f -> %.4f)', f, results[f]['weights'],
                   *results[f]['fit_loss'])
    os.makedirs(workdir, exist_ok=True)
    tmp = os.path.join(workdir, 'fusion_results.json.tmp')
    with open(tmp, 'w') as f:
      json.dump(results, f, indent=1)
    os.replace(tmp, os.path.join(workdir, 'fusion_results.json'))
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  config, workdir = common.run_or_exit(common.config_and_workdir)
  workdirs = {r: _WORKDIRS[r].value for r in REGIONS}

  def check():  # before any dataset work: the config (as a training config) and every folder
    common.check_config(config, workdir, 'train')
    from experiments import validate  # pylint: disable=g-import-not-at-top
    for r, w in workdirs.items():
      if not w or not os.path.isdir(w):
        raise validate.ConfigError([
            f'--{r}_workdir={w or ""}: expected the workdir of the {r}-body model (python -m '
            f'experiments.train --config.model.region={r} ...), found no such folder.'])

  common.run_or_exit(check)
  common.run_or_exit(lambda: fusion_experiment(config, workdir, workdirs, _FUSION.value,
                                               _STEPS.value))


if __name__ == '__main__':
  app.run(main, flags_parser=common.parse_flags)
