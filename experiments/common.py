"""What the entry points share: flags, input checks, the data object."""

import contextlib
import errno
import os
import re
import runpy
import sys

# TensorFlow's C++ start-up banners (oneDNN, CPU features) are noise here.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from experiments import multihost
from jaxreid import sharding
from jaxreid.training import checkpoint, run_record

_FLAGS = {}
# How long the other processes wait for process 0 to prepare a dataset (MARS
# takes hours on a slow disk); a barrier, so no collective's 30-s window.
PREPARE_TIMEOUT_S = 12 * 3600


def define_flags():
  """Defines --config and --workdir (required). Entry points call this at import;
  other modules (the benchmark) can use the helpers here without them."""
  if _FLAGS:
    return
  _FLAGS['config'] = config_flags.DEFINE_config_file(
      'config', None, 'Path to an ml_collections config file (experiments/configs/*.py, '
      'optionally FILE:variant); override fields with --config.key=value. Every field with its '
      'value and comment: python -m experiments.show_config --config=FILE.', lock_config=True)
  _FLAGS['workdir'] = flags.DEFINE_string(
      'workdir', None, 'Folder for checkpoints, TensorBoard events, config.json, log.txt and '
      'the evaluations. Without --config, the config recorded in WORKDIR/config.json is used.')
  flags.mark_flags_as_required(['config', 'workdir'])


def define_step_flag():
  """Defines --step, the checkpoint evaluate, extract and search restore."""
  if 'step' in _FLAGS:  # several entry points imported in one process (tests)
    return
  _FLAGS['step'] = flags.DEFINE_string(
      'step', 'latest', 'Which checkpoint of --workdir: latest, best (kept when trained with '
      '--config.best_checkpoint_metric) or a step number.')


def checkpoint_step() -> str:
  """The --step value, checked: 'latest', 'best' or a number."""
  step = _FLAGS['step'].value
  if step not in ('latest', 'best') and not step.isdigit():
    raise ValueError(f'--step={step}: expected latest, best or a step number.')
  return step


def _with_recorded_config(argv):
  """Without --config, the config the workdir recorded (config.json) is used:
  experiments/configs/from_workdir.py:WORKDIR is inserted, so --config.x=...
  overrides apply on top of it as on any config file."""
  if any(a == '--config' or a.startswith('--config=') for a in argv[1:]):
    return argv
  workdir = next((a.split('=', 1)[1] for a in argv[1:] if a.startswith('--workdir=')), None)
  if workdir is None or not os.path.exists(
      os.path.join(os.path.expanduser(workdir), run_record.CONFIG_FILE)):
    return argv
  recorded = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'configs',
                          'from_workdir.py')
  return [argv[0], f'--config={recorded}:{os.path.abspath(os.path.expanduser(workdir))}',
          *argv[1:]]


def config_and_workdir():
  """The parsed config and a checked, absolute workdir."""
  given = _FLAGS['workdir'].value
  workdir = os.path.abspath(os.path.expanduser(given))
  parent = os.path.dirname(workdir)
  if not os.path.isdir(parent):
    raise FileNotFoundError(f'--workdir={given}: the parent folder {parent} does '
                            'not exist; create it first or choose another path.')
  return _FLAGS['config'].value, workdir


def setup_tensorflow():
  """Starts TensorFlow for input pipelines only: its GPUs hidden, so that it
  never takes accelerator memory from JAX, and library chatter quieted."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.set_visible_devices([], 'GPU')
  quiet_libraries()


def make_data(config, training: bool = True):
  """The dataset of `config`, prepared if needed, sliced for this process.

  With `training`, the config's batch is checked against the training
  identities (P <= #ids) as soon as the index is read, before the first step.
  Durations given in epochs become steps here, from the data's own counts
  (`durations.resolve`, in place).
  """
  setup_tensorflow()
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  from experiments import durations, validate  # pylint: disable=g-import-not-at-top
  data = pipeline.ReIDData(config, jax.process_index(), jax.process_count(),
                          wait_for_peers=lambda: sharding.wait_for_all_processes(
                              'dataset_prepared', timeout_s=PREPARE_TIMEOUT_S))
  if training:
    validate.check_training_data(config, data.num_train_ids)
  durations.resolve(config, durations.steps_per_epoch(config, data))
  return data


def check_config(config, workdir: str, command: str, uses_dataset: bool = True):
  """`validate.validate_config` for an entry point, before any dataset
  preparation or compilation (TensorFlow started first, its GPUs hidden)."""
  setup_tensorflow()
  from experiments import validate  # pylint: disable=g-import-not-at-top
  given = _FLAGS['workdir'].value if _FLAGS else workdir
  validate.validate_config(config, workdir, command, workdir_flag=given,
                           uses_dataset=uses_dataset)


def folder_data(config, root: str):
  """Tracklet folders of frames under `root`, as an eval split named 'folder'.

  No training dataset is read, so durations given in epochs become steps at
  one step per epoch: nothing trains, and the schedule only shapes the
  optimizer state restored from the checkpoint, whatever its steps.
  """
  setup_tensorflow()
  from data_pipelines import folders  # pylint: disable=g-import-not-at-top
  from experiments import durations  # pylint: disable=g-import-not-at-top
  durations.resolve(config, per_epoch=1)
  return folders.FolderTracklets(config, root)


def run_or_exit(fn, *args, workdir: str = ''):
  """Runs `fn`; a user error (bad name, path or value) ends the program with one
  line naming it (exit status 2), instead of a traceback. So do a full disk or
  another OS error (status 1) and Ctrl-C (status 130), naming the last
  checkpoint in `workdir`, which is kept."""
  from jaxreid.training import nonfinite, preemption  # pylint: disable=g-import-not-at-top
  try:
    return fn(*args)
  except nonfinite.NonFiniteLossError as e:  # the run diverged: not a user error
    logging.debug('Non-finite loss', exc_info=True)
    _exit_with_lines(e, EXIT_FAILURE)
  except (ValueError, FileNotFoundError, NotADirectoryError,
          checkpoint.CheckpointMismatchError) as e:
    if _disk_full(e):
      _exit_disk_full(e, workdir)
    logging.debug('User error', exc_info=True)
    _exit_with_lines(e, EXIT_USER_ERROR)
  except OSError as e:
    logging.debug('OS error', exc_info=True)
    if _disk_full(e):
      _exit_disk_full(e, workdir)
    where = f' ({e.filename})' if getattr(e, 'filename', None) else ''
    _exit_with_lines(f'{e.strerror or e}{where}; {_kept(workdir)}', EXIT_FAILURE, now=True)
  except preemption.PreemptedError as e:
    print(f'preempted: {e}', file=sys.stderr, flush=True)
    sys.exit(EXIT_PREEMPTED)
  except KeyboardInterrupt:
    print(f'interrupted; {_kept(workdir)}', file=sys.stderr, flush=True)
    _terminate(EXIT_INTERRUPTED)


def _exit_with_lines(message, status: int, now: bool = False):
  """Prints 'error: <line>' for each line of `message`, then exits (`now`:
  without waiting for background threads, see `_terminate`)."""
  for line in str(message).splitlines() or ['']:
    print(f'error: {line}', file=sys.stderr)
  sys.stderr.flush()
  if now:
    _terminate(status)
  sys.exit(status)


def _terminate(status: int):
  """Ends the process at once. After Ctrl-C or a failed write, Orbax's save
  threads may still be running; a normal exit tears down their event loops
  under them and each prints its traceback (about a hundred lines). The save
  they were writing stays a temporary folder, never loaded and deleted by the
  next training run; the last complete checkpoint is untouched."""
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


def _disk_full(e: BaseException) -> bool:
  """Whether `e`, or an exception it was raised from, is ENOSPC / EDQUOT
  (Orbax and TensorStore re-raise OS errors as ValueError text)."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
      return True
    if 'No space left on device' in str(e) or 'Disk quota exceeded' in str(e):
      return True
    e = e.__cause__ or e.__context__
  return False


def _exit_disk_full(e: BaseException, workdir: str):
  path = getattr(e, 'filename', None)
  where = f' while writing {path}' if path else f' of {workdir}' if workdir else ''
  _exit_with_lines(f'no space left on the device{where}; {_kept(workdir)} Free some space (or '
                   'choose another --workdir) and run the same command again.', EXIT_FAILURE,
                   now=True)


def last_checkpoint_step(workdir: str):
  """The newest complete checkpoint under `workdir` (WORKDIR/checkpoints/<step>,
  or the newest of WORKDIR/split_<k>/checkpoints), as (step, folder), or None.
  Orbax writes into a temporary folder and renames it to the bare step number
  when complete, so only all-digit names count."""
  import glob  # pylint: disable=g-import-not-at-top
  found = []
  for folder in [os.path.join(workdir, 'checkpoints'),
                 *sorted(glob.glob(os.path.join(workdir, 'split_*', 'checkpoints')))]:
    steps = [int(n) for n in (os.listdir(folder) if os.path.isdir(folder) else [])
             if n.isdigit()]
    if steps:
      found.append((max(steps), folder))
  return max(found, key=lambda f: os.path.getmtime(f[1])) if found else None


def _kept(workdir: str) -> str:
  last = last_checkpoint_step(workdir) if workdir else None
  if last is None:
    return 'no checkpoint was saved.'
  return f'the last checkpoint (step {last[0]}) is kept in {last[1]}.'


# Exit statuses: a diverged run or an OS error (full disk); a user error (bad
# flag, path or value), as absl's own flag errors; Ctrl-C, as a shell reports
# SIGINT (128 + 2).
EXIT_FAILURE = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


# Exit status after a preemption notice (SIGTERM) and the final save: 128 + 15,
# what a shell reports for a process ended by SIGTERM.
EXIT_PREEMPTED = 143
class _DropLibraryChatter(logging.logging.Filter):
  """Hides the INFO lines of `_CHATTY_MODULES`."""

  def filter(self, record):
    if '/orbax/' in record.pathname and record.exc_info and (
        _disk_full(record.exc_info[1]) or isinstance(record.exc_info[1], KeyboardInterrupt)):
      # A full disk fails each of Orbax's save threads in turn, each logging
      # its traceback (hundreds of lines), and Ctrl-C during a wait for a save
      # logs one; run_or_exit reports either in one line.
      return False
    return record.levelno >= logging.logging.WARNING or not any(
        part in record.pathname for part in _CHATTY_MODULES)


# INFO lines of these are noise on the console: Orbax on every save and restore,
# JAX probing for TPU/GPU backends at start-up.
_CHATTY_MODULES = ('/orbax/', '/jax/_src/xla_bridge.py')


def quiet_libraries():
  """Keeps the console to our progress lines and TFDS's preparation progress
  bars (preparing a real release takes long): no Orbax or JAX start-up INFO."""
  logging.get_absl_handler().addFilter(_DropLibraryChatter())


def parse_flags(argv):
  """absl's flag parser, plus one clear line for a mistyped --config.key.

  ml_collections raises a bare AttributeError (a traceback) for an unknown key;
  this names the flag, the closest key and the valid keys at that level.
  """
  argv = _with_recorded_config(argv)
  if not any(a == '--config' or a.startswith('--config=') for a in argv[1:]) and not any(
      a in ('--help', '--helpshort', '--helpfull', '-h') or a.startswith('--flagfile')
      for a in argv[1:]):
    workdir = next((a.split('=', 1)[1] for a in argv[1:] if a.startswith('--workdir=')), '')
    sys.exit('FATAL Flags parsing error: --config: required: a config file '
             '(e.g. --config=experiments/configs/synthetic_baseline.py)'
             + (f', since --workdir={workdir} holds no recorded {run_record.CONFIG_FILE} '
                '(no training run has started there)' if workdir else '') + '.')
  try:
    return app.parse_flags_with_usage(argv)
  except AttributeError as e:
    missing = re.findall(r"'([^'\\]+)", str(e))
    key = missing[0] if missing else ''
    bad = next((a.split('=')[0] for a in argv
                if re.match(rf'--config\.(\w+\.)*{re.escape(key)}(=|$)', a)), f'--config.{key}')
    sys.exit(f'FATAL Flags parsing error: {bad}: no such config key'
             f'{_suggestion(str(e))}; valid keys there: {_valid_keys(argv, bad)}.')


def _suggestion(message: str) -> str:
  found = re.search(r'Did you mean "(\w+)"', message)
  return f' (did you mean {found.group(1)!r}?)' if found else ''


def _valid_keys(argv, bad_flag: str) -> str:
  """Keys of the config level that `bad_flag` (--config.a.b.typo) points into."""
  path = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  try:
    node = runpy.run_path(path.split(':')[0])['get_config']()
    for part in bad_flag[len('--config.'):].split('.')[:-1]:
      node = node[part]
    return ', '.join(sorted(node.keys()))
  except Exception:  # pylint: disable=broad-except
    return 'see the config file'


def for_each_split(config, workdir: str, run) -> dict:
  """Runs `run(split_config, split_workdir)` on every numbered split of the
  dataset (config.all_splits), in WORKDIR/split_<k>, and writes the mean and
  std over splits to WORKDIR/eval_results.json.

  Raises:
    ValueError: the dataset has no numbered splits.
  """
  import json  # pylint: disable=g-import-not-at-top
  from data_pipelines import datasets  # pylint: disable=g-import-not-at-top
  from jaxreid import reporting  # pylint: disable=g-import-not-at-top
  from jaxreid.evaluation import splits as splits_lib  # pylint: disable=g-import-not-at-top
  setup_tensorflow()
  names = datasets.split_configs(config.dataset)
  if not names:
    raise ValueError(f'--config.all_splits=True: dataset {config.dataset!r} has no numbered '
                     'splits (only datasets with split_0, split_1, ... configs, such as '
                     'ilids_vid and prid2011, have).')
  os.makedirs(workdir, exist_ok=True)
  results = {}
  for name in names:
    split_config = config.copy_and_resolve_references()
    split_config.dataset_config, split_config.all_splits = name, False
    logging.info('=== %s of %s ===', name, config.dataset)
    results[name] = run(split_config, os.path.join(workdir, name))
  summary = splits_lib.summarize_splits(results)
  if jax.process_index() == 0:
    rows = [[m, 100 * summary['mean'][m], 100 * summary['std'][m]] for m in splits_lib.METRICS]
    print(reporting.format_table([f'{config.dataset}, {len(names)} splits', 'mean %', 'std %'],
                                 rows), flush=True)
    tmp = os.path.join(workdir, 'eval_results.json.tmp')
    with open(tmp, 'w') as f:
      json.dump(summary, f, indent=1)
    os.replace(tmp, os.path.join(workdir, 'eval_results.json'))
  return summary


def run_main(argv, run, command: str = 'train'):
  """The body of train's and evaluate's `main`: multi-host set-up, the whole
  config validated (`validate.validate_config`), then `run(config, workdir)` on
  the configured split, or on every numbered split with
  --config.all_splits=True; user errors end in one line."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  multihost.init()
  try:
    _run_main(run, command)
  except SystemExit as e:
    if e.code in (None, 0, EXIT_PREEMPTED):
      multihost.shutdown()
    raise
  multihost.shutdown()


def _run_main(run, command: str):
  config, workdir = run_or_exit(config_and_workdir)
  run_or_exit(lambda: check_config(config, workdir, command))
  # WORKDIR/log.txt: the absl log; a training run opens it itself, once it
  # holds the workdir's lock (a refused second run writes nothing there).
  log = contextlib.nullcontext() if command == 'train' else run_record.LogFile(workdir,
                                                                               create=False)
  with log:
    if config.all_splits:
      run_or_exit(lambda: for_each_split(config, workdir, run), workdir=workdir)
    else:
      run_or_exit(lambda: run(config, workdir), workdir=workdir)
