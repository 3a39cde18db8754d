"""Faults injected from outside the library, for the resilience tests: a batch
that makes the loss NaN, a process killed while a checkpoint is written.

The library has no test hooks; these patch it (in the test process with
pytest's monkeypatch, in a training subprocess through
``tests/train_with_faults.py``).
"""

import functools
import os
import signal

import jax.numpy as jnp
import numpy as np

# Training labels are 0..num_ids-1: a batch whose labels are all this one is
# the poisoned batch.
POISON_PID = -1


def poison(batch: dict) -> dict:
  """`batch` marked as the one whose loss goes NaN (its labels all POISON_PID)."""
  return {**batch, 'pid': np.full_like(np.asarray(batch['pid']), POISON_PID)}


def nan_on_poisoned_batches(term):
  """Loss term `term` times NaN on a poisoned batch (so its gradient is NaN
  too, as in a diverging run), unchanged otherwise."""
  @functools.wraps(term)  # keeps the signature, for the options checks
  def poisoned(outputs, labels, *args, **kwargs):
    loss = term(outputs, labels, *args, **kwargs)
    return loss * jnp.where(jnp.all(labels == POISON_PID), jnp.nan, 1.0)
  return poisoned


def poison_loss(loss_terms: dict, setitem=dict.__setitem__):
  """Makes the 'ce' term of `loss_terms` (``jaxreid.losses.LOSS_TERMS``) NaN
  on poisoned batches; `setitem` e.g. pytest's ``monkeypatch.setitem``."""
  setitem(loss_terms, 'ce', nan_on_poisoned_batches(loss_terms['ce']))


def poison_train_batches(data_class, step: int):
  """Poisons the batch of `step` (1-based, as the logs count) that
  ``data_class.train_batches(start_step)`` yields, in every run."""
  original = data_class.train_batches

  def train_batches(self, start_step):
    for done, batch in enumerate(original(self, start_step), start_step + 1):
      yield poison(batch) if done == step else batch

  data_class.train_batches = train_batches


def kill_during_save(checkpointer_class, step: int):
  """SIGKILLs the process right after ``Checkpointer.save`` of `step` has
  started, while Orbax is still writing its temporary folder."""
  original = checkpointer_class.save

  def save(self, save_step, *args, **kwargs):
    original(self, save_step, *args, **kwargs)
    if save_step == step:
      os.kill(os.getpid(), signal.SIGKILL)

  checkpointer_class.save = save
