"""Orbax checkpoints in ``WORKDIR/checkpoints``: periodic and final saves, keep
the last N, resume from the latest complete one.

Each checkpoint stores the train state and a small JSON record of what the
state was built for (model, classes, input size). Resuming with a config that
does not fit is refused with a message naming the differing keys, rather than
failing deep inside Orbax on a shape mismatch.
"""

import os
import signal
from typing import Any, Mapping, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging

# Test hook (tests/test_resume.py): SIGKILL this process right after the save
# of this step has started, while Orbax is still writing its temporary folder.
_KILL_DURING_SAVE_ENV = 'JAXREID_TEST_KILL_DURING_SAVE'


class CheckpointMismatchError(ValueError):
  """The workdir's checkpoint was written for a different model or data config."""


class Checkpointer:
  """A thin, documented wrapper around ``ocp.CheckpointManager``."""

  def __init__(self, workdir: str, max_to_keep: int = 3, for_training: bool = True):
    """With `for_training`, the temporary folders of saves that a killed run
    left unfinished are deleted (they are never loaded either way); readers
    (evaluation beside a running training) leave them alone."""
    self.directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=for_training),
        item_names=('state', 'meta'))
    self.restored_meta = None  # the record of the checkpoint `restore` loaded

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def save(self, step: int, state, meta: Mapping[str, Any]):
    """Saves asynchronously; Orbax writes to a temporary folder and renames it
    when complete, so a half-written checkpoint is never picked up.

    Every process must call this (the write is collective); the state's
    device buffers are copied to host before this returns, so the caller may
    donate them to the next step.
    """
    logging.info('Saving checkpoint of step %d.', step)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))), force=True)
    if os.environ.get(_KILL_DURING_SAVE_ENV) == str(step):
      logging.warning('%s=%d: killing this process during the save.', _KILL_DURING_SAVE_ENV,
                      step)
      os.kill(os.getpid(), signal.SIGKILL)

  def restore(self, abstract_state, expected_meta: Mapping[str, Any], step: Optional[int] = None):
    """Restores `step` (default: latest) onto the shardings of `abstract_state`.

    Returns:
      (state, meta), or (None, None) when the workdir has no checkpoint.
    Raises:
      CheckpointMismatchError: the checkpoint's meta differs from `expected_meta`.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      return None, None
    meta = self.manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']
    diffs = [f'{k}: checkpoint has {meta.get(k)!r}, config has {v!r}'
             for k, v in expected_meta.items() if _jsonable(v) != meta.get(k)]
    if diffs:
      raise CheckpointMismatchError(
          f'The checkpoint at {self.directory} (step {step}) does not fit this config: '
          + '; '.join(diffs) + '. Use a new --workdir, or restore the original config.')
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    self.restored_meta = meta
    return restored['state'], meta

  def latest_meta(self) -> Optional[dict]:
    """The JSON record of the latest checkpoint, or None when there is none."""
    step = self.latest_step()
    if step is None:
      return None
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))['meta']

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def _jsonable(value):
  """Normalizes a value the way a JSON round trip would (tuples -> lists)."""
  if isinstance(value, (tuple, list)):
    return [_jsonable(v) for v in value]
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  return value


def abstract_with_shardings(abstract_state, state_sharding):
  """ShapeDtypeStructs carrying the target shardings, for a sharded restore."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract_state, state_sharding)
