"""Orbax checkpoints in ``WORKDIR/checkpoints``: periodic and final saves, keep
the last N, resume from the latest complete one.

Each checkpoint stores the train state and a small JSON record of what the
state was built for (model, classes, input size, data, optimizer). Resuming
with a config that does not fit is refused with a message naming the differing
keys, rather than failing deep inside Orbax on a shape mismatch; inference
(evaluate, extract, search) only needs the network to fit (``INFERENCE_KEYS``
and the parameter shapes), so a checkpoint evaluates on another dataset.

A checkpoint that does not restore (a file truncated or deleted by a full disk
or an interrupted copy, corrupt JSON) is reported in one warning line, moved
to ``checkpoints/damaged/<step>-<time>`` (never deleted) and the next older
one is used; with none intact the restore fails with one line. Readers move
nothing while a training run holds the workdir (``workdir_lock``): they skip
the damaged step instead.
"""

import contextlib
import gc
import logging as std_logging
import os
import re
import sys
import time
from typing import Any, Mapping, Optional

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from jaxreid import sharding
from jaxreid.training import workdir_lock

# The meta keys the network's shapes follow: all that inference needs to match
# (with the parameter shapes themselves, checked against the saved tree).
INFERENCE_KEYS = ('model_name', 'model', 'num_classes')
DAMAGED_DIR = 'damaged'
BEST_DIR = 'checkpoints_best'  # the best checkpoint by config.best_checkpoint_metric


class CheckpointMismatchError(ValueError):
  """The workdir's checkpoint was written for a different model or data config."""


class CheckpointDamagedError(ValueError):
  """No checkpoint of the workdir restores (all damaged)."""


class Checkpointer:
  """A thin, documented wrapper around ``ocp.CheckpointManager``."""

  def __init__(self, workdir: str, max_to_keep: int = 3, for_training: bool = True,
               best_metric: str = '', best_mode: str = 'max', subdir: str = ''):
    """With `for_training`, the temporary folders of saves that a killed run
    left unfinished are deleted (they are never loaded either way); readers
    (evaluation beside a running training) leave them alone.

    With `best_metric` (e.g. 'mAP'), this is the workdir's best checkpoint
    instead, in ``WORKDIR/checkpoints_best``: Orbax's own best-checkpoint
    options keep the `max_to_keep` saves with the highest (`best_mode`
    'max') or lowest value of the metric passed to `save`. `subdir` reads
    another folder of the workdir (``BEST_DIR`` for the best checkpoint).
    """
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir,
                                  subdir or (BEST_DIR if best_metric else 'checkpoints'))
    self.for_training = for_training
    best = (dict(best_fn=lambda metrics: metrics[best_metric], best_mode=best_mode,
                 keep_checkpoints_without_metrics=False) if best_metric else {})
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                             cleanup_tmp_directories=for_training, **best),
        item_names=('state', 'meta'))
    self.restored_meta = None  # the record of the checkpoint `restore` loaded

  def latest_step(self) -> Optional[int]:
    return self.manager.latest_step()

  def all_steps(self) -> list:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state, meta: Mapping[str, Any],
           metrics: Optional[Mapping[str, float]] = None):
    """Saves asynchronously; Orbax writes to a temporary folder and renames it
    when complete, so a half-written checkpoint is never picked up.

    Every process must call this (the write is collective); the state's
    device buffers are copied to host before this returns, so the caller may
    donate them to the next step.
    """
    logging.info('Saving checkpoint of step %d.', step)
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta))), force=True,
        metrics=dict(metrics) if metrics else None)

  def restore(self, abstract_state, expected_meta: Mapping[str, Any],
              step: Optional[int] = None, for_inference: bool = False):
    """Restores the newest intact checkpoint (or `step`) onto the shardings of
    `abstract_state`.

    A checkpoint whose record or arrays do not read is damaged: reported,
    moved aside (``_set_aside``) and the next older one tried. A config that
    does not fit the checkpoint is not damage: it raises at once.

    Args:
      for_inference: compare only ``INFERENCE_KEYS`` and the shapes of params
        and batch_stats; the optimizer state is restored as saved, whatever
        this config's optimizer (evaluation does not use it).
    Returns:
      (state, meta), or (None, None) when the workdir has no checkpoint.
    Raises:
      CheckpointMismatchError: the checkpoint's meta or tree differs from this config.
      CheckpointDamagedError: checkpoints exist but none restores.
    """
    with _quiet_failed_reads():
      return self._restore(abstract_state, expected_meta, step, for_inference)

  def _restore(self, abstract_state, expected_meta, step, for_inference):
    steps = [step] if step is not None else sorted(self.manager.all_steps(), reverse=True)
    if not steps:
      self._refuse_if_all_were_damaged()
      return None, None
    damaged = []
    for s in steps:
      try:
        meta = self._read_meta(s)
      except Exception as e:  # pylint: disable=broad-except
        damaged.append(self._set_aside(s, 'its record', e))
        continue
      keys = INFERENCE_KEYS if for_inference else expected_meta
      self._check_meta(s, meta, {k: expected_meta[k] for k in keys if k in expected_meta})
      try:
        # Shapes and dtypes only (no array is read): tells a config that does
        # not fit (refused) from arrays that do not read (damaged).
        saved_tree = ocp.StandardCheckpointHandler().metadata(
            epath.Path(self._step_dir(s, 'state'))).tree
      except Exception as e:  # pylint: disable=broad-except
        damaged.append(self._set_aside(s, 'its state metadata', e))
        continue
      target = abstract_state
      if for_inference:  # the optimizer state as saved, onto the params' sharding
        sharding = jax.tree.leaves(abstract_state.params)[0].sharding
        target = abstract_state.replace(opt_state=jax.tree.map(
            lambda x, sh=sharding: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sh),
            saved_tree['opt_state']))
      self._check_tree(s, saved_tree, target, meta, expected_meta, for_inference)
      try:
        restored = self.manager.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target)))
      except Exception as e:  # pylint: disable=broad-except
        damaged.append(self._set_aside(s, 'its arrays', e))
        continue
      self.restored_meta = meta
      if damaged:
        logging.info('Using the checkpoint of step %d instead.', s)  # the warning said why
      return restored['state'], meta
    raise CheckpointDamagedError(
        f'No intact checkpoint in {self.directory}: ' + '; '.join(damaged) + '. Restore them '
        'from a backup, or start afresh with a new --workdir (or, to train again here, '
        f'delete {os.path.join(self.directory, DAMAGED_DIR)}).')

  def latest_meta(self) -> Optional[dict]:
    """The JSON record of the newest checkpoint whose record reads (damaged
    ones are set aside as in `restore`), or None when there is none."""
    for s in sorted(self.manager.all_steps(), reverse=True):
      try:
        return self._read_meta(s)
      except Exception as e:  # pylint: disable=broad-except
        self._set_aside(s, 'its record', e)
    self._refuse_if_all_were_damaged()
    return None

  def _step_dir(self, step: int, *parts) -> str:
    return os.path.join(self.directory, str(step), *parts)  # Orbax's default step names

  def _read_meta(self, step: int) -> dict:
    meta = self.manager.restore(step, args=ocp.args.Composite(
        meta=ocp.args.JsonRestore()))['meta']
    if not isinstance(meta, dict):
      raise ValueError(f'expected a JSON object, found {type(meta).__name__}')
    return meta

  def _check_meta(self, step: int, meta: Mapping[str, Any], expected: Mapping[str, Any]):
    """Raises CheckpointMismatchError naming each differing key. Keys that an
    older checkpoint's record lacks are not compared (its tree still is)."""
    diffs = [_describe_diff(k, meta[k], _jsonable(v)) for k, v in expected.items()
             if k in meta and _jsonable(v) != meta[k]]
    if diffs:
      raise CheckpointMismatchError(
          f'The checkpoint at {self.directory} (step {step}) does not fit this config: '
          + '; '.join(diffs) + '. Use a new --workdir, or restore the original config.')

  def _check_tree(self, step, saved_tree, target, meta, expected_meta, for_inference):
    """The saved arrays' paths and shapes against `target`'s, named briefly
    (Orbax's own message is a dump of the whole tree)."""
    saved, wanted = _shapes(saved_tree), _shapes(target)
    parts = []
    for part, what in (('params', 'parameters'), ('batch_stats', 'BatchNorm statistics'),
                       ('opt_state', 'optimizer state')):
      if for_inference and part == 'opt_state':
        continue
      a = {k: v for k, v in saved.items() if k.split('/')[0] == part}
      b = {k: v for k, v in wanted.items() if k.split('/')[0] == part}
      if a == b:
        continue
      examples = ([f'{k} only in the checkpoint' for k in sorted(set(a) - set(b))][:2]
                  + [f'{k} only in this config' for k in sorted(set(b) - set(a))][:2]
                  + [f'{k}: checkpoint {a[k]}, config {b[k]}'
                     for k in sorted(set(a) & set(b)) if a[k] != b[k]][:2])
      parts.append(f'its {what} differ ({"; ".join(examples)})')
    if not parts:
      return
    hint = ''
    if any('optimizer' in p for p in parts):
      hint = (' The optimizer state follows config.optimizer, config.pretrained_lr_mult '
              '(backbone group) and the model; the checkpoint was trained with optimizer '
              f'{meta.get("optimizer", "?")!r}, this config says '
              f'{expected_meta.get("optimizer", "?")!r}.')
    else:
      shape_keys = [f'{k} {meta[k]!r} (config {expected_meta[k]!r})'
                    for k in ('height', 'width', 'clip_len', 'use_flow')
                    if k in meta and k in expected_meta and meta[k] != expected_meta[k]]
      if shape_keys:
        hint = (' It was trained with ' + ', '.join(shape_keys)
                + ', which the shapes of this model follow.')
    raise CheckpointMismatchError(
        f'The checkpoint at {self.directory} (step {step}) does not fit this config: '
        + '; '.join(parts) + '.' + hint + ' Use a new --workdir, or restore the original config.')

  def _set_aside(self, step: int, what: str, error: Exception) -> str:
    """Reports a damaged step in one warning line and moves it to
    ``checkpoints/damaged/<step>-<time>`` (process 0; readers only while no
    run holds the workdir). Returns a short description for the final error."""
    path = self._step_dir(step)
    reason = _reason(error)
    holder = None if self.for_training else workdir_lock.live_holder(self.workdir)
    if holder is not None:
      logging.warning('Checkpoint %s does not restore (%s: %s); skipped (not moved: a '
                      'training run, pid %s, holds the workdir).', path, what, reason,
                      holder.get('pid'))
      return f'step {step} ({what}: {reason})'
    dest = os.path.join(self.directory, DAMAGED_DIR,
                        f'{step}-{time.strftime("%Y%m%dT%H%M%S", time.gmtime())}')
    failed = None
    if jax.process_index() == 0:
      try:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        while os.path.exists(dest):
          dest += '_'
        os.rename(path, dest)
      except OSError as e:  # e.g. a reader of another user's read-only workdir
        if self.for_training:
          raise
        failed = e
    # Every process sees the step gone before going on.
    sharding.wait_for_all_processes(f'jaxreid_set_aside_{step}')
    if failed is not None:
      logging.warning('Checkpoint %s does not restore (%s: %s); skipped (could not move it: '
                      '%s).', path, what, reason, failed.strerror or failed)
      return f'step {step} ({what}: {reason})'
    self.manager.reload()  # forget the step, so that Orbax's keep-N never counts it
    logging.warning('Checkpoint %s does not restore (%s: %s); moved it to %s.', path, what,
                    reason, dest)
    return f'step {step} ({what}: {reason}) moved to {dest}'

  def _refuse_if_all_were_damaged(self):
    """No step left, but damaged ones set aside: starting afresh would
    silently drop the training done, so the user decides."""
    damaged = os.path.join(self.directory, DAMAGED_DIR)
    if os.path.isdir(damaged) and os.listdir(damaged):
      raise CheckpointDamagedError(
          f'No intact checkpoint in {self.directory}; the damaged ones are in {damaged}. '
          'Restore them from a backup, or start afresh with a new --workdir (or, to train '
          f'again here, delete {damaged}).')

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


def _describe_diff(key: str, saved, wanted) -> str:
  """One clause per differing meta key, worded as the user thinks of it."""
  if key == 'train_pids':
    common = len(set(saved or []) & set(wanted or []))
    return (f'it was trained on other persons ({len(saved or [])} training ids in the '
            f"checkpoint, {len(wanted or [])} in this config's data, {common} in common)")
  return f'the checkpoint was trained with {key.replace("_", " ")} {saved!r}; ' \
         f'this config says {wanted!r}'


@contextlib.contextmanager
def _quiet_failed_reads():
  """Orbax reads the arrays in concurrent asyncio tasks: when a file is
  damaged, every task fails, one exception propagates and asyncio logs each
  other one ('Task exception was never retrieved', a traceback and a
  tensorstore spec dump each) when it is garbage-collected. The one warning
  line of `_set_aside` says it all; those are collected here, silently."""
  log = std_logging.getLogger('asyncio')
  level, hook = log.level, sys.unraisablehook
  log.setLevel(std_logging.CRITICAL)
  try:
    yield
  finally:
    sys.unraisablehook = lambda _: None  # 'Event loop is closed' of their loop
    try:
      gc.collect()
    finally:
      sys.unraisablehook = hook
      log.setLevel(level)


def _reason(error: Exception) -> str:
  """A one-line reason: the exception's type, its status and last clause
  (tensorstore chains 'A: B: ...: what went wrong') and the file it names,
  without the tensorstore spec dump."""
  lines = str(error).split(' [tensorstore_spec', 1)[0].strip().splitlines()
  text = lines[0] if lines else ''
  clauses = text.split(': ')
  files = re.findall(r'local file "([^"]+)"', text)
  if len(clauses) > 2:
    text = f'{clauses[0]}: {clauses[-1]}'
    if files and files[-1] not in text:
      text += f' (file {files[-1]})'
  if len(text) > 300:
    text = text[:300] + '...'
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


def _shapes(tree) -> dict:
  """{'params/backbone/conv1/kernel': (3, 3, 3, 8), ...} of a train state, its
  abstract version or Orbax's saved tree (dicts and lists): the key paths of
  both spell the same once reduced to names and indices."""
  def name(k):
    for attr in ('key', 'name', 'idx'):
      if hasattr(k, attr):
        return str(getattr(k, attr))
    return str(k)
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(name(k) for k in path): tuple(getattr(leaf, 'shape', ()))
          for path, leaf in leaves}


def abstract_with_shardings(abstract_state, state_sharding):
  """ShapeDtypeStructs carrying the target shardings, for a sharded restore."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      abstract_state, state_sharding)
