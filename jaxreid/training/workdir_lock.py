"""One writer per workdir: ``WORKDIR/.lock``, held for a training run's life.

Two training runs on one workdir would write into the same ``checkpoints/``:
the second resumes from the first one's checkpoints and its start-up cleanup
deletes the first one's in-flight save. The lock file is created atomically
(``O_CREAT | O_EXCL``) and holds the owner's pid and hostname, so that

  * a second run stops with one line before touching anything;
  * a lock left by a run that died without releasing it (SIGKILL, power loss)
    on this host is recognised by its pid and taken over with a warning;
  * a lock of another host cannot be checked and counts as live (the message
    says which file to delete if that run is gone).

Multi-process runs take it once, on process 0 (``hold``). Readers (evaluate,
extract, search) never take it; they only ask ``live_holder`` whether a run
is writing, so as not to move a checkpoint aside under it.
"""

import contextlib
import json
import os
import socket
import time
from typing import Optional

import jax
import numpy as np
from absl import logging

LOCK_NAME = '.lock'


class WorkdirLockedError(ValueError):
  """Another live run holds the workdir's lock. (A ValueError, so that the
  entry points print it as their one ``error:`` line.)"""


def lock_path(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), LOCK_NAME)


def _read(path: str) -> Optional[dict]:
  """The lock's record, or None when it is gone; {} when unreadable."""
  # A concurrent acquirer creates the file, then writes: give it a moment.
  for attempt in range(20):
    try:
      with open(path) as f:
        text = f.read()
    except FileNotFoundError:
      return None
    try:
      record = json.loads(text)
      if isinstance(record, dict) and isinstance(record.get('pid'), int):
        return record
    except ValueError:
      pass
    if attempt < 19:
      time.sleep(0.05)
  return {}  # garbage: no run can be named as its owner


def _pid_alive(pid: int) -> bool:
  """Whether `pid` is a running (not zombie) process on this host."""
  if pid <= 0:
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # another user's process
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'  # exited, not yet reaped
  except (OSError, IndexError):
    return True


def _is_live(record: dict) -> bool:
  """Whether the owner of `record` may still be running."""
  if not record:
    return False
  if record.get('host') != socket.gethostname():
    return True  # cannot check another host's pids
  return record['pid'] != os.getpid() and _pid_alive(record['pid'])


def live_holder(workdir: str) -> Optional[dict]:
  """The record ({'pid', 'host', ...}) of a live run holding `workdir`, else None."""
  record = _read(lock_path(workdir))
  return record if record is not None and _is_live(record) else None


def _locked_message(record: dict, workdir: str) -> str:
  return (f'another run (pid {record["pid"]} on host {record.get("host")}) is using {workdir}; '
          'wait for it or choose another --workdir (if that run is gone, delete '
          f'{lock_path(workdir)}).')


def acquire(workdir: str) -> str:
  """Creates ``WORKDIR/.lock`` for this process (and `workdir` if needed).

  Returns:
    The lock's path.
  Raises:
    WorkdirLockedError: a live run holds it.
  """
  path = lock_path(workdir)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  mine = json.dumps({'pid': os.getpid(), 'host': socket.gethostname(),
                     'started': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})
  for _ in range(10):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      record = _read(path)
      if record is None:
        continue  # released meanwhile: try again
      if _is_live(record):
        raise WorkdirLockedError(_locked_message(record, workdir)) from None
      _take_over_stale(path, record)
      continue
    with os.fdopen(fd, 'w') as f:
      f.write(mine)
      f.flush()
      os.fsync(f.fileno())
    return path
  raise WorkdirLockedError(f'could not take the lock {path}: other runs keep taking it; '
                           'choose another --workdir.')


def _take_over_stale(path: str, record: dict):
  """Removes a dead owner's lock. Renaming it first makes the removal atomic:
  of two runs seeing the same stale lock, only one renames it, and a lock that
  a third run created meanwhile is put back."""
  owner = (f'pid {record["pid"]} on host {record.get("host")}' if record
           else 'an unreadable record')
  aside = f'{path}.stale.{os.getpid()}'
  try:
    os.rename(path, aside)
  except FileNotFoundError:
    return  # another run took it over first
  if _read(aside) != record:  # not the lock we judged stale: give it back
    with contextlib.suppress(FileExistsError):
      os.link(aside, path)
    os.remove(aside)
    return
  os.remove(aside)
  logging.warning('%s was left by a run that is no longer running (%s); taking it over.',
                  path, owner)


def release(path: str):
  """Removes the lock at `path` if this process still owns it."""
  record = _read(path)
  if record and record.get('pid') == os.getpid() and record.get('host') == socket.gethostname():
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)


@contextlib.contextmanager
def hold(workdir: str):
  """Holds `workdir`'s lock for the block (released on exit, exceptions included).

  With several processes only process 0 takes it; the others learn whether it
  did (a collective), so that all stop with the same one line.
  """
  path, error = None, None
  if jax.process_index() == 0:
    try:
      path = acquire(workdir)
    except Exception as e:  # pylint: disable=broad-except
      error = e  # raised below, once the other processes know (else they would wait)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if failed and error is None:
      error = WorkdirLockedError(f'process 0 could not lock {workdir} (its log says why: '
                                 'another run using it, or a file error).')
  if error is not None:
    raise error
  try:
    yield path
  finally:
    if path is not None:
      release(path)
