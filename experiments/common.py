"""What the entry points share: flags, input checks, the data object."""

import os
import re
import runpy
import sys

# TensorFlow's C++ start-up banners (oneDNN, CPU features) are noise here.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from jaxreid.training import checkpoint

_FLAGS = {}


def define_flags():
  """Defines --config and --workdir (required). Entry points call this at import;
  other modules (the benchmark) can use the helpers here without them."""
  if _FLAGS:
    return
  _FLAGS['config'] = config_flags.DEFINE_config_file(
      'config', None, 'Path to an ml_collections config file (experiments/configs/*.py); '
      'override fields with --config.key=value.', lock_config=True)
  _FLAGS['workdir'] = flags.DEFINE_string(
      'workdir', None, 'Folder for checkpoints, TensorBoard events and eval_results.json.')
  flags.mark_flags_as_required(['config', 'workdir'])


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


def make_data(config):
  """The dataset of `config`, prepared if needed, sliced for this process."""
  setup_tensorflow()
  from data_pipelines import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.ReIDData(config, jax.process_index(), jax.process_count())


def folder_data(config, root: str):
  """Tracklet folders of frames under `root`, as an eval split named 'folder'."""
  setup_tensorflow()
  from data_pipelines import folders  # pylint: disable=g-import-not-at-top
  return folders.FolderTracklets(config, root)


def run_or_exit(fn, *args):
  """Runs `fn`; a user error (bad name, path or value) ends the program with one
  line naming it, instead of a traceback."""
  from jaxreid.training import loop  # pylint: disable=g-import-not-at-top
  try:
    return fn(*args)
  except (ValueError, FileNotFoundError, checkpoint.CheckpointMismatchError,
          loop.NonFiniteLossError) as e:
    logging.debug('User error', exc_info=True)
    sys.exit(f'error: {e}')
  except loop.PreemptedError as e:
    print(f'preempted: {e}', file=sys.stderr, flush=True)
    sys.exit(EXIT_PREEMPTED)


# Exit status after a preemption notice (SIGTERM) and the final save: 128 + 15,
# what a shell reports for a process ended by SIGTERM.
EXIT_PREEMPTED = 143
_MULTIHOST_FLAGS = {}


def define_multihost_flags():
  """--multihost and the explicit coordinator flags (entry points, at import)."""
  if _MULTIHOST_FLAGS:
    return
  _MULTIHOST_FLAGS['multihost'] = flags.DEFINE_bool(
      'multihost', False, 'Join a multi-process run: calls jax.distributed.initialize(), '
      'which detects Cloud TPU pods, Slurm and Kubernetes by itself; on other clusters '
      'pass --coordinator_address, --num_processes and --process_id.')
  _MULTIHOST_FLAGS['coordinator_address'] = flags.DEFINE_string(
      'coordinator_address', None, 'host:port of process 0 (with --multihost).')
  _MULTIHOST_FLAGS['num_processes'] = flags.DEFINE_integer(
      'num_processes', None, 'Number of processes (with --multihost).')
  _MULTIHOST_FLAGS['process_id'] = flags.DEFINE_integer(
      'process_id', None, 'This process\'s index, 0..num_processes-1 (with --multihost).')


def init_multihost():
  """Calls ``jax.distributed.initialize`` when --multihost is given. Must run
  before anything asks JAX for its devices."""
  if not _MULTIHOST_FLAGS or not _MULTIHOST_FLAGS['multihost'].value:
    for name in ('coordinator_address', 'num_processes', 'process_id'):
      if _MULTIHOST_FLAGS and _MULTIHOST_FLAGS[name].value is not None:
        raise app.UsageError(f'--{name} needs --multihost.')
    return
  explicit = {name: _MULTIHOST_FLAGS[name].value
              for name in ('coordinator_address', 'num_processes', 'process_id')
              if _MULTIHOST_FLAGS[name].value is not None}
  jax.distributed.initialize(**explicit)
  logging.info('Process %d of %d; %d local and %d global devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


class _DropLibraryChatter(logging.logging.Filter):
  """Hides the INFO lines Orbax writes for every save, restore and manager."""

  def filter(self, record):
    return record.levelno >= logging.logging.WARNING or '/orbax/' not in record.pathname


def quiet_libraries():
  """Keeps the console to our progress lines: no TFDS bars, no Orbax INFO."""
  logging.get_absl_handler().addFilter(_DropLibraryChatter())
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds.disable_progress_bar()


def parse_flags(argv):
  """absl's flag parser, plus one clear line for a mistyped --config.key.

  ml_collections raises a bare AttributeError (a traceback) for an unknown key;
  this names the flag, the closest key and the valid keys at that level.
  """
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


def run_main(argv, run):
  """The body of train's and evaluate's `main`: multi-host set-up, then
  `run(config, workdir)` on the configured split, or on every numbered split
  with --config.all_splits=True; user errors end in one line."""
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {" ".join(argv[1:])}')
  init_multihost()
  config, workdir = config_and_workdir()
  if config.all_splits:
    run_or_exit(lambda: for_each_split(config, workdir, run))
  else:
    run_or_exit(lambda: run(config, workdir))
