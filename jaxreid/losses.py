"""Re-ID objectives, selected and weighted by configuration.

``config.losses = {'ce': 1.0, 'triplet': 1.0}`` names terms of ``LOSS_TERMS``
with their weights, so a paper's objective and its ablations are config files,
not code branches (docs/design.md, "Model contract"). Every term has the signature
``term(outputs, labels, cfg) -> scalar`` where ``outputs`` is the model's dict,
``labels`` (B,) int32 training identities and ``cfg`` the config's
``loss_options`` (margins, smoothing, ...).

Losses are computed in float32 whatever the model's compute dtype.
"""

from typing import Callable, Mapping

import jax
import jax.numpy as jnp
import optax


def cross_entropy(logits, labels, label_smoothing: float = 0.0):
  """Softmax cross-entropy, optionally with label smoothing.

  With smoothing eps the target is (1 - eps) * one_hot + eps / num_classes
  (Szegedy et al. 2016), as in the strong re-ID baseline and MSTN (eq. 5).

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
  """Batch-hard triplet loss (Hermans et al. 2017).

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


FOCAL_MODES = ('target', 'all_classes')


def focal_loss(logits, labels, gamma: float = 2.0, mode: str = 'target', alpha=None):
  """Sigmoid focal loss for identity classification (Lin et al. 2017).

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


def _ce_term(outputs, labels, cfg):
  return cross_entropy(outputs['logits'], labels, cfg.get('label_smoothing', 0.0))


def _triplet_term(outputs, labels, cfg):
  features = outputs.get('triplet_features', outputs['embedding'])
  return batch_hard_triplet(features, labels, margin=cfg.get('triplet_margin', 0.3),
                            metric=cfg.get('triplet_metric', 'euclidean'),
                            soft_margin=cfg.get('triplet_soft_margin', False))


def _focal_term(outputs, labels, cfg):
  alpha = cfg.get('focal_alpha', None)
  alpha = None if alpha is None or alpha < 0 else alpha  # < 0: no alpha weighting
  return focal_loss(outputs['logits'], labels, gamma=cfg.get('focal_gamma', 2.0),
                    mode=cfg.get('focal_mode', 'target'), alpha=alpha)


def _temporal_reg_term(outputs, labels, cfg):
  del labels, cfg
  if 'attention' not in outputs:
    raise ValueError("Loss term 'temporal_reg' needs the model's 'attention' output "
                     '(TRSA with attention=True).')
  return temporal_attention_regularizer(outputs['attention'])


def _ce_streams_term(outputs, labels, cfg):
  """Softmax CE of every stream's classifier, summed (two-stream M3D: each
  stream trained with its own softmax, the same gradients as apart)."""
  if 'stream_logits' not in outputs:
    raise ValueError("Loss term 'ce_streams' needs the model's 'stream_logits' output "
                     '(two_stream_m3d).')
  smoothing = cfg.get('label_smoothing', 0.0)
  return sum(cross_entropy(logits, labels, smoothing) for logits in outputs['stream_logits'])

def _aux_ce_term(outputs, labels, cfg):
  """Softmax CE of every auxiliary classifier in ``outputs['aux_logits']``
  (a list), summed: MSTN's softmax on the multi-scale feature f1 (Loss_c),
  Inception-v3's auxiliary classifier (RRU). ``aux_label_smoothing`` (default
  0) is their label smoothing."""
  if 'aux_logits' not in outputs:
    raise ValueError("Loss term 'aux_ce' needs the model's 'aux_logits' output "
                     '(a list of (B, num_classes) auxiliary classifier scores).')
  smoothing = cfg.get('aux_label_smoothing', 0.0)
  return sum(cross_entropy(logits, labels, smoothing) for logits in outputs['aux_logits'])


CONTRASTIVE_FORMS = ('squared', 'hinge')


def contrastive_loss(features, labels, margin: float = 2.0, form: str = 'squared'):
  """Siamese loss on consecutive row pairs (CRF eq. 7; Hadsell et al. 2006).

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


def _contrastive_term(outputs, labels, cfg):
  features = outputs.get('pair_features', outputs['embedding'])
  return contrastive_loss(features, labels, margin=cfg.get('contrastive_margin', 2.0),
                          form=cfg.get('contrastive_form', 'squared'))


def part_batch_hard_triplet(part_features, labels, margin: float = 0.4,
                            metric: str = 'euclidean'):
  """Part-level ranking constraint L_p (RRU paper eq. 10): the batch-hard
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


def _part_triplet_term(outputs, labels, cfg):
  if 'part_features' not in outputs:
    raise ValueError("Loss term 'part_triplet' needs the model's 'part_features' output "
                     '(B, parts, D) (rru).')
  return part_batch_hard_triplet(outputs['part_features'], labels,
                                 margin=cfg.get('part_triplet_margin', 0.4),
                                 metric=cfg.get('triplet_metric', 'euclidean'))


LOSS_TERMS: dict[str, Callable] = {
    'ce': _ce_term,
    'triplet': _triplet_term,
    'ce_streams': _ce_streams_term,
    'aux_ce': _aux_ce_term,
    'focal': _focal_term,
    'temporal_reg': _temporal_reg_term,
    'contrastive': _contrastive_term,
    'part_triplet': _part_triplet_term,
}


def check_loss_weights(weights: Mapping[str, float]):
  """Raises a clear error for loss names that are not registered."""
  unknown = sorted(set(weights) - set(LOSS_TERMS))
  if unknown:
    raise ValueError(f'Unknown loss term(s) {", ".join(unknown)} in config.losses; '
                     f'valid choices: {", ".join(sorted(LOSS_TERMS))}.')
  if not weights:
    raise ValueError('config.losses is empty; name at least one of '
                     f'{", ".join(sorted(LOSS_TERMS))} with a weight.')


def total_loss(outputs, labels, weights: Mapping[str, float], cfg: Mapping):
  """Weighted sum of the configured terms, and each term for logging.

  Returns:
    (total, {name: term value}) as float32 scalars.
  """
  terms = {name: LOSS_TERMS[name](outputs, labels, cfg) for name in weights}
  total = sum(float(weights[name]) * value for name, value in terms.items())
  return total, terms
