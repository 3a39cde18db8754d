"""How much of the training objective the gait twins are: NumPy statistics of
PK batches and of a model's outputs on them (``experiments/twin_objective.py``;
flag-free, so tests import it)."""

import numpy as np


def co_occurrence(batch_labels, partner: dict) -> dict:
  """Over batches (each a (B,) label array): the fraction of batches holding both
  identities of at least one twin pair, and of twin-identity rows whose twin is
  in the same batch (the only rows where a batch-hard triplet can contrast them)."""
  with_pair, twin_rows, with_partner = 0, 0, 0
  for labels in batch_labels:
    present = set(int(x) for x in labels)
    with_pair += any(partner[x] in present for x in present if x in partner)
    for x in labels:
      if int(x) in partner:
        twin_rows += 1
        with_partner += partner[int(x)] in present
  return {'batches': len(batch_labels),
          'batches_with_a_twin_pair': with_pair / max(len(batch_labels), 1),
          'twin_rows': twin_rows,
          'twin_rows_with_their_twin_in_the_batch': with_partner / max(twin_rows, 1)}


def _log_softmax(logits):
  z = logits - logits.max(axis=1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def classifier_statistics(logits: np.ndarray, labels: np.ndarray, partner: dict) -> dict:
  """Per group (twin identities, the others): mean cross entropy (no label
  smoothing) and accuracy; for twin rows also the mean softmax mass on the
  twin's class and how often the twin is the top wrong class; and the twin
  rows' share of the summed cross entropy. logits (N, C), labels (N,)."""
  logp = _log_softmax(np.asarray(logits, np.float64))
  rows = np.arange(len(labels))
  ce = -logp[rows, labels]
  correct = logp.argmax(axis=1) == labels
  is_twin = np.array([int(x) in partner for x in labels])
  out = {}
  for name, mask in (('twins', is_twin), ('others', ~is_twin)):
    out[name] = {'rows': int(mask.sum()),
                 'cross_entropy': float(ce[mask].mean()) if mask.any() else float('nan'),
                 'accuracy': float(correct[mask].mean()) if mask.any() else float('nan')}
  if is_twin.any():
    twin_rows = rows[is_twin]
    partners = np.array([partner[int(labels[r])] for r in twin_rows])
    wrong = logp[twin_rows].copy()
    wrong[np.arange(len(twin_rows)), labels[twin_rows]] = -np.inf
    out['twins']['mass_on_twin_class'] = float(np.exp(logp[twin_rows, partners]).mean())
    out['twins']['twin_is_top_wrong_class'] = float((wrong.argmax(axis=1) == partners).mean())
  out['twin_share_of_cross_entropy'] = float(ce[is_twin].sum() / ce.sum())
  return out


def hardest_negative_is_twin(embeddings: np.ndarray, labels: np.ndarray, partner: dict):
  """(rows, hits): twin rows of one batch whose twin is in it, and how many of
  them have a row of their twin as the hardest (nearest, Euclidean) negative."""
  x = np.asarray(embeddings, np.float64)
  d = np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0.0))
  d[labels[:, None] == labels[None, :]] = np.inf
  present = set(int(v) for v in labels)
  rows = hits = 0
  for r, label in enumerate(labels):
    if int(label) in partner and partner[int(label)] in present:
      rows += 1
      hits += labels[int(np.argmin(d[r]))] == partner[int(label)]
  return rows, int(hits)
