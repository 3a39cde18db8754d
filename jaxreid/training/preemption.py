"""Preemption: SIGTERM asks a training run to save and stop after the current
step (docs/design.md, "Resilience"); the run then exits with status 143."""

import signal
import threading

import jax
from absl import logging


class PreemptedError(Exception):
  """Training stopped early on a preemption notice, after a final save."""


class PreemptionNotice:
  """SIGTERM (preemption) asks the run to save and stop at the end of a step.

  One process: a signal handler sets a flag, read once per step. Several
  processes: Orbax's ``reached_preemption`` (JAX's preemption sync point), so
  that every process stops after the same step and saves collectively.
  """

  def __init__(self, ckpt):
    """Installs the handler (one process, main thread); `ckpt`: the run's
    ``Checkpointer``, whose manager syncs several processes."""
    self.ckpt, self.requested, self.previous = ckpt, False, None
    if jax.process_count() == 1 and threading.current_thread() is threading.main_thread():
      self.previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):  # pylint: disable=unused-argument
    logging.warning('SIGTERM: saving a checkpoint and stopping after this step.')
    self.requested = True

  def reached(self, step: int) -> bool:
    """Whether to save and stop after `step` (the same answer on every process)."""
    if jax.process_count() > 1:
      return self.ckpt.manager.reached_preemption(step)
    return self.requested

  def restore(self):
    """Puts the previous SIGTERM handler back."""
    if self.previous is not None:
      signal.signal(signal.SIGTERM, self.previous)
      self.previous = None
