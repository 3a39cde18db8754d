"""Re-ID objectives, selected, weighted and configured per term.

``config.losses`` names terms of ``LOSS_TERMS``, each with its weight and its
options::

  config.losses = {'ce': {'weight': 1.0, 'label_smoothing': 0.1},
                   'triplet': {'weight': 1.0, 'margin': 0.3}}

so a paper's objective and its ablations are config files, not code branches
(docs/design.md, "Model contract"). A term is a function
``term(x, labels, **options) -> scalar``: ``x`` is the model output it reads
(``jaxreid.models.LOSS_INPUTS`` says which), ``labels`` (B,) int32 training
identities, and a term's config entries other than 'weight' are keyword
arguments of its function. The defaults are those of the function
signatures and are written nowhere else.

Losses are computed in float32 whatever the model's compute dtype.
"""

import inspect
from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax

from jaxreid import models


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Softmax cross-entropy, optionally with label smoothing.

  With smoothing eps the target is (1 - eps) * one_hot + eps / num_classes
  (`[Inception]`), as in the strong re-ID baseline and MSTN (eq. 5).

  Args:
    logits: (B, K) class scores.
    labels: (B,) int class indices.
    label_smoothing: eps in [0, 1).
  Returns:
    Mean loss over the batch, a float32 scalar.
  """
  logits = logits.astype(jnp.float32)
  targets = jax.nn.one_hot(labels, logits.shape[-1])
  if label_smoothing:
    targets = optax.smooth_labels(targets, label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, targets))


def summed_cross_entropy(logits_list, labels, label_smoothing: float = 0.0):
  """`cross_entropy` of each classifier in `logits_list`, summed: the
  two-stream M3D's softmax per stream (the same gradients as training them
  apart), MSTN's softmax on f1 (Loss_c), Inception-v3's auxiliary classifier.

  Args:
    logits_list: a list of (B, K) class scores.
    labels: (B,) int class indices.
    label_smoothing: eps of every classifier.
  """
  return sum(cross_entropy(logits, labels, label_smoothing) for logits in logits_list)


def pairwise_distances(x, metric: str = 'euclidean'):
  """(B, D) -> (B, B) distances between all rows.

  'euclidean' is the (non-squared) Euclidean distance, clamped at 1e-12 before
  the square root so its gradient stays finite on the diagonal (as torchreid);
  'cosine' is 1 - cosine similarity.
  """
  x = x.astype(jnp.float32)
  if metric == 'euclidean':
    sq = jnp.sum(x * x, axis=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * x @ x.T
    return jnp.sqrt(jnp.maximum(d2, 1e-12))
  if metric == 'cosine':
    xn = x / jnp.maximum(jnp.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return 1.0 - xn @ xn.T
  raise ValueError(f"Unknown triplet metric {metric!r}; valid choices: cosine, euclidean.")


def batch_hard_triplet(embeddings, labels, margin: float = 0.3,
                       metric: str = 'euclidean', soft_margin: bool = False):
  """Batch-hard triplet loss (`[Triplet]`).

  For each anchor, the farthest positive and the nearest negative in the batch:
  L = mean_a max(0, m + d(a, p*) - d(a, n*)), or log(1 + exp(d_ap - d_an)) with
  ``soft_margin``. Under ``jax.jit`` on a data mesh the batch is the *global*
  PK batch: XLA gathers the embeddings for the (B, B) distance matrix.

  Args:
    embeddings: (B, D) features.
    labels: (B,) identities; every anchor needs a positive and a negative.
    margin: m.
    metric: 'euclidean' or 'cosine'.
    soft_margin: use the soft-plus form instead of the hinge.
  Returns:
    Mean loss over anchors, a float32 scalar.
  """
  dist = pairwise_distances(embeddings, metric)  # (B, B)
  same = labels[:, None] == labels[None, :]  # (B, B)
  hardest_positive = jnp.max(jnp.where(same, dist, -jnp.inf), axis=1)  # (B,)
  hardest_negative = jnp.min(jnp.where(same, jnp.inf, dist), axis=1)  # (B,)
  gap = hardest_positive - hardest_negative
  if soft_margin:
    return jnp.mean(jax.nn.softplus(gap))
  return jnp.mean(jax.nn.relu(gap + margin))


def part_batch_hard_triplet(part_features, labels, margin: float = 0.4,
                            metric: str = 'euclidean'):
  """Part-level ranking constraint L_p (`[RRU]` eq. 10): the batch-hard
  triplet of each horizontal strip, averaged over the H strips (eq. 10's
  1/(NKH); the official code's (1/8) sum over its 8 rows).

  Args:
    part_features: (B, H, D) one feature per strip.
    labels: (B,) identities.
    margin: m (the paper: 0.4).
    metric: 'euclidean' (the paper's D) or 'cosine'.
  Returns:
    A float32 scalar.
  """
  per_strip = jax.vmap(lambda p: batch_hard_triplet(p, labels, margin, metric),
                       in_axes=1)(part_features)  # (H,)
  return jnp.mean(per_strip)


FOCAL_MODES = ('target', 'all_classes')


def focal_loss(logits, labels, gamma: float = 2.0, mode: str = 'target', alpha=None):
  """Sigmoid focal loss for identity classification (`[Focal]`).

  'target' is TRSA's eq. 7-8: p_i = sigmoid of the target class's logit,
  L_f = -mean_i (1 - p_i)^gamma log p_i; the other classes' logits get no
  gradient. 'all_classes' is RetinaNet's form on one-hot targets: the focal
  loss of every class's sigmoid, summed over classes and averaged over the
  batch (RetinaNet normalises by the number of positives, one per sample),
  with the optional alpha balance. Both are ``optax.sigmoid_focal_loss``.

  Args:
    logits: (B, K) class scores.
    labels: (B,) int class indices.
    gamma: the focusing exponent (TRSA: 2).
    mode: 'target' (eq. 8) or 'all_classes'.
    alpha: None or the positive-class weight in (0, 1) ('all_classes' only;
      in 'target' mode it would only scale the loss).
  Returns:
    A float32 scalar.
  """
  logits = logits.astype(jnp.float32)
  if mode == 'target':
    target = jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0]  # (B,)
    return jnp.mean(optax.sigmoid_focal_loss(target, jnp.ones_like(target), gamma=gamma))
  if mode == 'all_classes':
    targets = jax.nn.one_hot(labels, logits.shape[-1])
    per_class = optax.sigmoid_focal_loss(logits, targets, alpha=alpha, gamma=gamma)  # (B, K)
    return jnp.mean(jnp.sum(per_class, axis=-1))
  raise ValueError(f"Unknown focal loss mode {mode!r}; valid choices: {', '.join(FOCAL_MODES)}.")


def temporal_attention_regularizer(attention):
  """TRSA's Reg (eq. 4): sum_ij (1 - sum_n alpha_n(i, j))^2, averaged over clips.

  Each alpha_n sums to 1 over the h * w positions, so the minimum is not 0
  but h*w * (1 - T / (h*w))^2 (all frames' attention uniform after summing
  over time), e.g. 99.8 for T = 15 on 16 x 8 maps.

  Args:
    attention: (B, T, h, w) spatial attention maps.
  Returns:
    A float32 scalar.
  """
  total = jnp.sum(attention.astype(jnp.float32), axis=1)  # (B, h, w)
  return jnp.mean(jnp.sum(jnp.square(1.0 - total), axis=(1, 2)))


def _temporal_reg_term(attention, labels):
  del labels  # the regularizer constrains the attention maps alone
  return temporal_attention_regularizer(attention)


CONTRASTIVE_FORMS = ('squared', 'hinge')


def contrastive_loss(features, labels, margin: float = 2.0, form: str = 'squared'):
  """Siamese loss on consecutive row pairs (`[CRF]` eq. 7; Hadsell et al. 2006).

  Rows (2i, 2i + 1) form pair i, positive when their labels agree. With
  d = ||x_i - x_j||_2: 'squared' (eq. 7) gives d^2 / 2 for a positive pair
  and max(alpha - d, 0)^2 / 2 for a negative one; 'hinge' is McLaughlin's
  Torch HingeEmbeddingCriterion (d, and max(0, alpha - d)).

  Args:
    features: (B, D), B even.
    labels: (B,) identities.
    margin: alpha (CRF: 2).
    form: 'squared' or 'hinge'.
  Returns:
    Mean over pairs, a float32 scalar.
  """
  if features.shape[0] % 2:
    raise ValueError(f'The contrastive loss needs pairs of rows (2i, 2i + 1); got a batch of '
                     f'{features.shape[0]} (use config.batch_sampler = "pairs").')
  x = features.astype(jnp.float32).reshape(-1, 2, features.shape[-1])  # (pairs, 2, D)
  same = labels[0::2] == labels[1::2]  # (pairs,)
  d2 = jnp.sum(jnp.square(x[:, 0] - x[:, 1]), axis=-1)
  d = jnp.sqrt(jnp.maximum(d2, 1e-12))  # finite gradient at d = 0
  if form == 'squared':
    per_pair = jnp.where(same, 0.5 * d2, 0.5 * jnp.square(jax.nn.relu(margin - d)))
  elif form == 'hinge':
    per_pair = jnp.where(same, d, jax.nn.relu(margin - d))
  else:
    raise ValueError(f'Unknown contrastive_form {form!r}; valid choices: '
                     f'{", ".join(CONTRASTIVE_FORMS)}.')
  return jnp.mean(per_pair)


# Term name -> function(x, labels, **options); x is the model output of
# jaxreid.models.LOSS_INPUTS[name].
LOSS_TERMS: dict[str, Callable] = {
    'ce': cross_entropy,
    'triplet': batch_hard_triplet,
    'ce_streams': summed_cross_entropy,
    'aux_ce': summed_cross_entropy,
    'focal': focal_loss,
    'temporal_reg': _temporal_reg_term,
    'contrastive': contrastive_loss,
    'part_triplet': part_batch_hard_triplet,
}


def option_defaults(term: str) -> dict:
  """{option: default} of a term: its function's arguments after (x, labels)."""
  parameters = list(inspect.signature(LOSS_TERMS[term]).parameters.values())[2:]
  return {p.name: p.default for p in parameters}


def config_problems(config_losses: Mapping) -> list:
  """One line per problem of `config.losses`: no term, an unknown term, a term
  that is not ``{'weight': w, <options>}``, a weight < 0, an unknown option."""
  valid_terms = ', '.join(sorted(LOSS_TERMS))
  if not config_losses:
    return [f'--config.losses is empty; name at least one of {valid_terms} with a weight, '
            "e.g. {'ce': {'weight': 1.0}}."]
  problems = []
  for term in sorted(config_losses):
    spec, flag = config_losses[term], f'--config.losses.{term}'
    if term not in LOSS_TERMS:
      problems.append(f'{flag}: unknown loss term; valid choices: {valid_terms}.')
    elif not hasattr(spec, 'keys'):  # a dict or a ConfigDict
      problems.append(f"{flag}={spec!r}: expected the term's weight and options, e.g. "
                      "{'weight': 1.0}.")
    elif 'weight' not in spec:
      problems.append(f"{flag}: no 'weight'; give one, e.g. {flag}.weight=1.0.")
    else:
      weight = spec['weight']
      if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight >= 0:
        problems.append(f'{flag}.weight={weight!r}: expected a weight >= 0.')
      valid = sorted(['weight', *option_defaults(term)])
      for key in sorted(set(spec) - set(valid)):
        problems.append(f'{flag}.{key}: not an option of loss term {term!r}; valid keys: '
                        f'{", ".join(valid)}.')
  return problems


def check_loss_weights(config_losses: Mapping):
  """Raises ValueError listing every `config_problems` line of `config.losses`."""
  problems = config_problems(config_losses)
  if problems:
    raise ValueError('\n'.join(problems))


def term_weights(config_losses: Mapping) -> dict:
  """{term: weight} of `config.losses`, for ``total_loss``."""
  return {term: config_losses[term]['weight'] for term in config_losses}


def term_options(config_losses: Mapping) -> dict:
  """{term: {option: value}} of `config.losses` (every entry but 'weight'),
  for ``total_loss``."""
  return {term: {k: v for k, v in dict(config_losses[term]).items() if k != 'weight'}
          for term in config_losses}


def resolved_options(config_losses: Mapping, term: str) -> dict:
  """The options `term` runs with under `config.losses`: its function's
  defaults, updated by the config's entries (none if the term is not there)."""
  given = term_options(config_losses).get(term, {})
  return {**option_defaults(term), **given}


def total_loss(outputs: models.ModelOutputs, labels, weights: Mapping[str, float],
               options: Mapping = None, model=None):
  """Weighted sum of the configured terms, and each term for logging.

  Every term's model output is looked up first (``models.loss_inputs``), so a
  model lacking one fails at the first trace, in one line naming the term,
  the output and what the model returns.

  Args:
    outputs: the model's dict (``jaxreid.models.ModelOutputs``).
    labels: (B,) int32 training identities.
    weights: {term: weight}, ``term_weights(config.losses)``.
    options: {term: {option: value}}, ``term_options(config.losses)``; a term
      missing here takes its function's defaults.
    model: the Flax module whose `outputs` these are (or its ``apply``),
      named in that error.
  Returns:
    (total, {name: term value}) as float32 scalars.
  """
  options = options or {}
  inputs = models.loss_inputs(weights, outputs, model)
  terms = {name: LOSS_TERMS[name](inputs[name], labels, **options.get(name, {}))
           for name in weights}
  total = sum(float(weights[name]) * value for name, value in terms.items())
  return total, terms
