"""The non-finite guard: a NaN or infinite loss or gradient stops the run (or,
with ``config.skip_nonfinite_steps``, is skipped and counted), found without
a host synchronization per step (docs/design.md, "Resilience")."""

import jax
import jax.numpy as jnp
from absl import logging


class NonFiniteLossError(FloatingPointError):
  """The loss or gradient norm became NaN or infinite."""


class NonFiniteGuard:
  """Watches the step's 'nonfinite' metric without a host sync per step.

  Without skipping, the first non-finite step and its metrics are kept on
  device and checked (one sync) before each log line and each save, so a
  non-finite state is never saved. With skipping (the step itself kept the old
  state), it counts the skipped steps, total over the run (kept in the
  checkpoint record, so a resumed run counts on).
  """

  def __init__(self, ckpt, skip: bool, skipped_before: int):
    """`ckpt`: the run's ``Checkpointer`` (its last step is named in the errors)."""
    self.ckpt, self.skip = ckpt, skip
    self.skipped_before = skipped_before
    self.count = jnp.zeros((), jnp.float32)
    self.first = None  # (step, metrics) of the first non-finite step, on device
    self._reported = skipped_before  # skipped steps already named in a warning
    self._track = jax.jit(_track_first_nonfinite)

  def update(self, step: int, metrics):
    """Takes the metrics of `step` (1-based), still on device."""
    self.count = self.count + metrics['nonfinite']
    if not self.skip:
      if self.first is None:
        self.first = (jnp.asarray(-1, jnp.int32), metrics)
      self.first = self._track(self.first, step, metrics)

  def skipped(self) -> int:
    """Steps skipped so far in the whole run (resumed runs included)."""
    return self.skipped_before + (int(jax.device_get(self.count)) if self.skip else 0)

  def check_skipped(self, step: int, max_fraction: float):
    """At a log step, with skipping: one warning line for the steps skipped
    since the last log line; NonFiniteLossError once more than `max_fraction`
    of the steps so far were skipped (a diverged run, whose final model would
    be the one of its last finite step). One skipped step is always allowed:
    a single bad batch is not divergence."""
    total = self.skipped()
    new, self._reported = total - self._reported, total
    if new:
      logging.warning('Skipped %d non-finite step(s) since the last log line: %d of %d steps '
                      'so far (config.max_skipped_fraction = %g).', new, total, step,
                      max_fraction)
    if total > max(1.0, max_fraction * step):
      raise NonFiniteLossError(
          f'Skipped {total} of {step} steps as non-finite ({100 * total / step:.0f}%), more '
          f'than --config.max_skipped_fraction={max_fraction:g}: the run has diverged. '
          f'Training stopped; {self._kept()}. Lower the learning rate.')

  def _kept(self) -> str:
    """What the user still has: the last good checkpoint, if any."""
    last = self.ckpt.latest_step()
    return (f'the last good checkpoint (step {last}) is kept in {self.ckpt.directory}'
            if last is not None else 'no checkpoint was written yet')

  def check(self):
    """Raises NonFiniteLossError when a step went non-finite (skipping off)."""
    if self.skip or self.first is None:
      return
    step, metrics = jax.device_get(self.first)
    if step < 0:
      return
    values = ', '.join(f'{k}={float(v):.6g}' for k, v in sorted(metrics.items())
                       if k not in ('nonfinite', 'learning_rate'))
    raise NonFiniteLossError(
        f'Non-finite loss or gradient at step {int(step)}: {values}. Training stopped; '
        f'{self._kept()}. Lower the learning rate, or set --config.skip_nonfinite_steps=True to '
        'skip such steps.')


def _track_first_nonfinite(first, step, metrics):
  """(step, metrics) of the first non-finite step so far: `first` until one is."""
  first_step, first_metrics = first
  new = (first_step < 0) & (metrics['nonfinite'] > 0)
  return (jnp.where(new, jnp.asarray(step, jnp.int32), first_step),
          jax.tree.map(lambda m, f: jnp.where(new, m, f), metrics, first_metrics))
