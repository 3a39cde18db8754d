r"""Trains each row of a comparison over several seeds, then prints its table.

One row is a name, a config and optional overrides; every (row, seed) is one
``experiments.train`` run in its own workdir, ``ROOT/<name>/seed_<S>``, so an
interrupted study resumes where it stopped (a finished run is not trained
again, only its ``eval_results.json`` is read; a workdir trained for other
flags than its row's now is refused, in one line):

  python -m experiments.seed_table --root=workdir/temporal --seeds=0,1,2 \
      --row='pooling=experiments/configs/synthetic_baseline.py' \
      --row='m3d=experiments/configs/m3d_synthetic.py:m3d'

  python -m experiments.seed_table --root=workdir/temporal --report_only  # the table so far

With --record=DIR (a folder you commit, e.g. docs/study/t8), each finished
run also leaves a small record, DIR/<name>/seed_<S>.json: its train flags,
seed, code commit, date, machine, wall time and metrics (not the per-query
lists; the same seed gives other numbers on another CPU type). A
run with a record is not trained again, so a study too long for one machine
or session accumulates by committing DIR; the table is written there too.
A record made for other flags than the row's now is refused like a workdir.

The table gives, per row, mean +- sample std over seeds of rank-1, mAP and
rank-1 on the gait-twin queries, and for every row after the first its
per-seed difference from the first row (paired by seed) with mean +- std; a
difference counts ("yes") only when its mean is beyond 2 std of it (with one
paired seed it is shown, marked "one seed"). It is
printed and written to ROOT/table.md, the numbers to ROOT/table.json.
"""

import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time

from absl import app, flags

_ROOT = flags.DEFINE_string('root', None, 'Folder holding one workdir per row and seed.',
                            required=True)
_ROWS = flags.DEFINE_multi_string(
    'row', [], "A row, 'NAME=CONFIG [--config.field=value ...]' (repeat the flag per row; the "
    'first row is what the others are compared with). Rows are remembered in ROOT/rows.json, '
    'so --report_only needs none.')
_SEEDS = flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds (--config.seed) of every row.')
_RECORD = flags.DEFINE_string(
    'record', None, 'Folder of small per-run records to commit (see above); runs recorded there '
    'are not trained again.')
_REPORT_ONLY = flags.DEFINE_boolean('report_only', False, 'Train nothing; tabulate what exists.')

METRICS = (('rank-1', lambda r: r['rank1']), ('mAP', lambda r: r['mAP']),
           ('rank-1, gait twins', lambda r: r['subsets']['gait_twins']['rank1']))


def parse_row(text: str) -> tuple:
  """'NAME=CONFIG [overrides]' -> (name, [train flags])."""
  name, sep, rest = text.partition('=')
  words = shlex.split(rest)
  if not sep or not name.strip() or not words or words[0].startswith('--'):
    raise app.UsageError(f"--row={text!r}: expected 'NAME=CONFIG [--config.field=value ...]', "
                         "e.g. --row='pooling=experiments/configs/synthetic_baseline.py'.")
  return name.strip(), [f'--config={words[0]}', *words[1:]]


def _results(workdir: str):
  path = os.path.join(workdir, 'eval_results.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


_ROW_FILE = 'seed_table_row.json'  # the train flags a workdir was trained with


def check_row(name: str, train_flags: list, seed: str, workdir: str) -> None:
  """Exits with one line if `workdir` was trained for other flags than the row's now
  (a changed --row must not reuse an old run's results)."""
  path = os.path.join(workdir, _ROW_FILE)
  if not os.path.exists(path):
    return
  with open(path) as f:
    before = json.load(f)
  if before != train_flags:
    sys.exit(f'{workdir} was trained for row {name!r} as {shlex.join(before)}, not '
             f'{shlex.join(train_flags)} (seed {seed}); give the changed row another name '
             f'or another --root, or delete {workdir}.')


_KEPT = ('rank1', 'rank5', 'rank10', 'mAP', 'mINP', 'step', 'num_query', 'num_gallery')


def make_record(train_flags: list, seed: str, results: dict, commit: str, date: str,
                wall_s, machine: str = '') -> dict:
  """The small, committable record of one finished run: its flags, provenance and
  metrics (the subsets' metrics too, without the per-query lists). `wall_s` is the
  training time of the call that finished it (None: finished by an earlier call)."""
  metrics = {k: results[k] for k in _KEPT if k in results}
  metrics['subsets'] = {
      name: {k: v for k, v in subset.items() if isinstance(v, (int, float))}
      for name, subset in results.get('subsets', {}).items()}
  return {'train_flags': train_flags, 'seed': seed, 'commit': commit, 'date': date,
          'machine': machine, 'wall_s': None if wall_s is None else round(wall_s, 1),
          'results': metrics}


def read_record(record_dir, name: str, train_flags: list, seed: str):
  """The record of (row, seed) under `record_dir`, or None; exits with one line
  if it was made for other flags than the row's now."""
  if not record_dir:
    return None
  path = os.path.join(record_dir, name, f'seed_{seed}.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    record = json.load(f)
  if record['train_flags'] != train_flags:
    sys.exit(f'{path} records row {name!r} as {shlex.join(record["train_flags"])}, not '
             f'{shlex.join(train_flags)} (seed {seed}); give the changed row another name, '
             f'another --record, or delete {path}.')
  return record


def _write_json(path: str, value) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(value, f, indent=1)
    f.write('\n')
  os.replace(path + '.tmp', path)


def _commit(workdir: str) -> str:
  """The git commit of the code that trained `workdir` (its config.json), or 'unknown'."""
  try:
    with open(os.path.join(workdir, 'config.json')) as f:
      code = json.load(f)['code']
  except (OSError, ValueError, KeyError):
    return 'unknown'
  commit = (code.get('git_commit') or 'unknown')[:12]
  return commit + (' (with uncommitted changes)' if code.get('git_dirty') else '')


def _machine() -> str:
  """'<CPU model>, <n> cores' of this machine (where the record is made, normally
  where the run trained: float results differ between CPU types)."""
  model = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      model = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  return f'{model}, {os.cpu_count()} cores'


def _train(name: str, train_flags: list, seed: str, workdir: str) -> None:
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, _ROW_FILE), 'w') as f:
    json.dump(train_flags, f)
  command = [sys.executable, '-m', 'experiments.train', *train_flags,
             f'--workdir={workdir}', f'--config.seed={seed}']
  log = os.path.join(workdir, 'seed_table.log')
  print(f'  $ {shlex.join(command)}  (output: {log})', flush=True)
  with open(log, 'a') as out:
    code = subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)
  if code:
    sys.exit(f'{name}, seed {seed}: training failed with exit status {code}; see {log}.')


def _mean_std(values) -> str:
  values = [100.0 * v for v in values]
  if len(values) < 2:
    return f'{values[0]:.1f} (n = 1)' if values else 'n/a'
  return f'{statistics.mean(values):.1f} +- {statistics.stdev(values):.1f}'


def table(rows: dict, results: dict, seeds: list) -> tuple:
  """(markdown, numbers) of `results[name][seed]` (eval_results dicts)."""
  names = list(rows)
  header = ['row', 'seeds'] + [m for m, _ in METRICS] + [
      f'gait twins - {names[0]}', 'beyond 2 std']
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  numbers = {}
  first = results.get(names[0], {})
  for name in names:
    done = results.get(name, {})
    got = [s for s in seeds if s in done]
    numbers[name] = {m: [100.0 * get(done[s]) for s in got] for m, get in METRICS}
    cells = [name, ','.join(got) or 'none'] + [_mean_std([get(done[s]) for s in got])
                                               for _, get in METRICS]
    paired = [s for s in got if s in first]
    twins = METRICS[2][1]
    diffs = [twins(done[s]) - twins(first[s]) for s in paired]
    if name == names[0] or not diffs:
      cells += ['', '']
    elif len(diffs) == 1:  # shown, but one seed decides nothing
      cells += [_mean_std(diffs), 'one seed']
    else:
      mean, std = statistics.mean(diffs), statistics.stdev(diffs)
      cells += [_mean_std(diffs), 'yes' if abs(mean) > 2 * std else 'no']
      numbers[name]['gait_twin_difference'] = [100.0 * d for d in diffs]
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines), numbers


def main(argv):
  del argv
  root, record_dir = _ROOT.value, _RECORD.value
  rows_file = os.path.join(root, 'rows.json')
  rows = dict(parse_row(r) for r in _ROWS.value)
  if not rows:
    saved = [os.path.join(record_dir, 'rows.json')] if record_dir else []
    saved = [p for p in saved + [rows_file] if os.path.exists(p)]
    if not saved:
      raise app.UsageError(f'No --row given and no {rows_file} from an earlier call.')
    with open(saved[0]) as f:
      rows = json.load(f)
  seeds = _SEEDS.value
  runs = [(name, seed) for seed in seeds for name in rows]  # seed-major: early rows per seed
  for name, seed in runs:  # before anything is written or trained
    check_row(name, rows[name], seed, os.path.join(root, name, f'seed_{seed}'))
  os.makedirs(root, exist_ok=True)
  with open(rows_file, 'w') as f:
    json.dump(rows, f, indent=1)
  for name, seed in runs:
    read_record(record_dir, name, rows[name], seed)
  if record_dir:
    _write_json(os.path.join(record_dir, 'rows.json'), rows)

  def finished(name, seed):
    record = read_record(record_dir, name, rows[name], seed)
    if record is not None:
      return record['results']
    return _results(os.path.join(root, name, f'seed_{seed}'))

  start, trained = time.time(), 0
  results = {}
  for i, (name, seed) in enumerate(runs):
    workdir = os.path.join(root, name, f'seed_{seed}')
    wall_s = None
    if not _REPORT_ONLY.value and finished(name, seed) is None:
      left = sum(finished(n, s) is None for n, s in runs[i:])
      eta = ''
      if trained:
        eta = f', about {(time.time() - start) / trained * left / 60:.0f} min left'
      print(f'[{i + 1}/{len(runs)}] {name}, seed {seed}{eta}', flush=True)
      run_start = time.time()
      _train(name, rows[name], seed, workdir)
      trained += 1
      wall_s = time.time() - run_start
    if (record_dir and read_record(record_dir, name, rows[name], seed) is None
        and _results(workdir) is not None):  # also a run finished before --record was given
      _write_json(os.path.join(record_dir, name, f'seed_{seed}.json'),
                  make_record(rows[name], seed, _results(workdir), _commit(workdir),
                              time.strftime('%Y-%m-%d', time.gmtime()), wall_s, _machine()))
    if finished(name, seed) is not None:
      results.setdefault(name, {})[seed] = finished(name, seed)
  markdown, numbers = table(rows, results, seeds)
  print(markdown)
  for folder in filter(None, (root, record_dir)):
    with open(os.path.join(folder, 'table.md'), 'w') as f:
      f.write(markdown + '\n')
    _write_json(os.path.join(folder, 'table.json'),
                {'rows': rows, 'seeds': seeds, 'percent': numbers})


if __name__ == '__main__':
  app.run(main)
