"""The workdir as a record of its run: what was run, what it printed, what it measured.

  WORKDIR/config.json          the resolved config (every override), the package
                               version and the git commit of the code, when known
  WORKDIR/log.txt              the absl log of the main process (log.<k>.txt of process k)
  WORKDIR/eval_history.jsonl   one line per evaluation, appended: step, data, every
                               setting that changes the numbers, the results
  WORKDIR/eval_results.json    the latest evaluation (written by the evaluation)

A resumed run whose config differs from the recorded one keeps the old record
as ``config.<time>.json`` beside the new one, so no run's settings are lost.
"""

import datetime
import importlib.metadata
import json
import logging as std_logging
import os
import subprocess
from typing import Mapping, Optional

import jax
from absl import logging

CONFIG_FILE = 'config.json'
HISTORY_FILE = 'eval_history.jsonl'
# Eval settings that change the numbers, recorded with every evaluation.
EVAL_SETTINGS = ('protocol', 'metric', 'sampler', 'clip_len', 'max_chunks', 'flip',
                 'use_rerank', 'rerank', 'normalize_features')


def code_version() -> dict:
  """{'jaxreid_version', 'git_commit', 'git_dirty'} of the running code (None where unknown)."""
  try:
    version = importlib.metadata.version('jaxreid')
  except importlib.metadata.PackageNotFoundError:
    version = None
  here = os.path.dirname(os.path.abspath(__file__))
  commit = dirty = None
  try:
    commit = subprocess.run(['git', '-C', here, 'rev-parse', 'HEAD'], capture_output=True,
                            text=True, timeout=10, check=True).stdout.strip() or None
    status = subprocess.run(['git', '-C', here, 'status', '--porcelain', '--untracked-files=no'],
                            capture_output=True, text=True, timeout=10, check=True).stdout
    dirty = bool(status.strip())
  except (OSError, subprocess.SubprocessError):
    pass  # not a git checkout (an installed wheel), or no git
  return {'jaxreid_version': version, 'git_commit': commit, 'git_dirty': dirty}


def _atomic_json(path: str, value) -> None:
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(value, f, indent=1, sort_keys=True, default=str)
  os.replace(tmp, path)


def write_config(workdir: str, config) -> str:
  """Writes ``config.json``: ``{'config': config.to_dict(), 'code': code_version()}``.

  A different recorded config (a resumed run with other overrides) is kept as
  ``config.<UTC time>.json``. Main process only. Returns the path.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if jax.process_index() != 0:
    return path
  os.makedirs(workdir, exist_ok=True)
  record = {'config': json.loads(json.dumps(config.to_dict(), default=str)),
            'code': code_version()}
  old = read_config_record(workdir)
  if old is not None and old.get('config') != record['config']:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime('%Y%m%dT%H%M%SZ')
    kept = os.path.join(workdir, f'config.{stamp}.json')
    os.replace(path, kept)
    logging.warning('The config differs from the one this workdir was run with; the old '
                    'record is kept as %s.', kept)
  _atomic_json(path, record)
  return path


def read_config_record(workdir: str) -> Optional[dict]:
  """The parsed ``config.json`` of `workdir`, or None if it has none.

  Raises:
    ValueError: the file exists but is not the JSON this module writes.
  """
  path = os.path.join(workdir, CONFIG_FILE)
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      record = json.load(f)
  except (OSError, json.JSONDecodeError) as e:
    raise ValueError(f'{path} is not readable JSON ({e}); delete it or pass --config.') from e
  if not isinstance(record, dict) or not isinstance(record.get('config'), dict):
    raise ValueError(f'{path} holds no "config" record; delete it or pass --config.')
  return record


class LogFile:
  """Copies the absl log into ``WORKDIR/log.txt`` (appending) while open.

  Use as a context manager around a run; the file gets absl's own line format.
  """

  def __init__(self, workdir: str, create: bool = True):
    """`create`: make the workdir if missing (training); else, without a
    workdir, nothing is written (evaluating a mistyped path creates no folder)."""
    k = jax.process_index()
    self.path = os.path.join(workdir, 'log.txt' if k == 0 else f'log.{k}.txt')
    self.create, self.handler = create, None

  def __enter__(self):
    if not os.path.isdir(os.path.dirname(self.path)):
      if not self.create:
        return self
      os.makedirs(os.path.dirname(self.path))
    self.handler = std_logging.FileHandler(self.path, mode='a')
    self.handler.setFormatter(logging.PythonFormatter())
    self.handler.setLevel(std_logging.INFO)
    logging.get_absl_logger().addHandler(self.handler)
    return self

  def __exit__(self, *exc):
    if self.handler is not None:
      logging.get_absl_logger().removeHandler(self.handler)
      self.handler.close()
    return False


def eval_record(config, data, step: int, results: Mapping, split: str = 'query/gallery') -> dict:
  """One line of ``eval_history.jsonl``: where, how and what was measured."""
  builder_config = getattr(getattr(data, 'builder', None), 'builder_config', None)
  return {
      'time': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'step': int(step),
      'dataset': config.dataset,
      'dataset_config': config.dataset_config or getattr(builder_config, 'name', '') or '',
      'split': split,
      'settings': {k: (v.to_dict() if hasattr(v, 'to_dict') else v)
                   for k, v in config.eval.items() if k in EVAL_SETTINGS},
      'results': {k: v for k, v in results.items() if k != 'per_query'},
  }


def append_eval_history(workdir: str, record: Mapping) -> str:
  """Appends one JSON line to ``eval_history.jsonl`` (main process only)."""
  path = os.path.join(workdir, HISTORY_FILE)
  if jax.process_index() == 0:
    with open(path, 'a') as f:
      f.write(json.dumps(record, sort_keys=True, default=str) + '\n')
  return path


def read_eval_history(workdir: str) -> list:
  """Every record of ``eval_history.jsonl``, oldest first ([] if none)."""
  path = os.path.join(workdir, HISTORY_FILE)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
