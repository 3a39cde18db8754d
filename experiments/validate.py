"""The whole config checked before any work: names, sizes, paths.

Every entry point (train, evaluate, extract, search) calls `validate_config`
before it prepares a dataset or compiles anything, so that a mistyped name or
an impossible size is reported in one line naming the flag, the value and the
valid choices, instead of a TensorFlow or JAX traceback many minutes later:

  error: --config.eval.protocol='foo': unknown protocol; valid choices: mars_official, ...

The valid choices always come from the module that uses the value (its own
registry or tuple of names), never from a copy here. `check_training_data`
adds the one check that needs the dataset's index: P <= the training
identities. Problems raise `ConfigError` (a ValueError; one line per
problem), which ``common.run_or_exit`` prints and turns into exit status 2.
"""

import dataclasses
import importlib
import os
import tempfile

import jax

from data_pipelines import datasets, sampling
from experiments import durations
from jaxreid import losses
from jaxreid.evaluation import distance, ranking, visualize
from jaxreid.models import MODELS
from jaxreid.training import optim, settings, setup

# Commands that write into the workdir (checkpoints, events, eval_results.json);
# extract and search only read it.
WRITING_COMMANDS = ('train', 'evaluate')
COMMANDS = ('train', 'evaluate', 'extract', 'search')
# Eval results a best checkpoint can be chosen by (all: higher is better).
BEST_METRICS = ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'mINP')


class ConfigError(ValueError):
  """One or more config problems, one line each (no traceback)."""

  def __init__(self, problems):
    self.problems = list(problems)
    super().__init__('\n'.join(self.problems))


def _flag(key: str, value) -> str:
  return f'--config.{key}={value!r}'


def _choice(problems, key: str, value, choices, what: str):
  if value not in choices:
    problems.append(f'{_flag(key, value)}: unknown {what}; valid choices: '
                    f'{", ".join(sorted(choices))}.')


def _at_least(problems, key: str, value, low, what: str = 'an integer', note: str = ''):
  """`value` >= `low` (NaN and non-numbers fail too)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
    problems.append(f'{_flag(key, value)}: expected {what} >= {low}{note}.')


def _check_names(config, problems):
  """Model, dtype, samplers, protocol, metric, optimizer, schedule, losses."""
  _choice(problems, 'model_name', config.model_name, MODELS, 'model')
  if config.model_name in MODELS and dataclasses.is_dataclass(MODELS[config.model_name]):
    # Flax modules are dataclasses: an argument the model lacks would be a
    # TypeError deep in set-up (e.g. after switching model_name). The loop
    # passes num_classes and dtype itself (setup.build_model).
    fields = {f.name for f in dataclasses.fields(MODELS[config.model_name])
              if f.init and f.name not in ('parent', 'name', 'num_classes', 'dtype')}
    for key in sorted(set(config.model) - fields):
      problems.append(f'--config.model.{key}: not an argument of model '
                      f'{config.model_name!r}; valid keys: {", ".join(sorted(fields))}.')
  _choice(problems, 'dtype', config.dtype, setup.DTYPES, 'dtype')
  _choice(problems, 'train_sampler', config.train_sampler, sampling.TRAIN_SAMPLERS,
          'train sampler')
  _choice(problems, 'batch_sampler', config.batch_sampler, sampling.BATCH_SAMPLERS,
          'batch sampler')
  _choice(problems, 'eval.sampler', config.eval.sampler, sampling.EVAL_SAMPLERS, 'eval sampler')
  if config.get('train_twins_together') and (config.dataset != 'synthetic_video_reid'
                                              or config.batch_sampler != 'pk'):
    problems.append(f'{_flag("train_twins_together", True)}: needs PK batches of the synthetic '
                    "dataset, whose generator knows its gait twins (--config.dataset="
                    "synthetic_video_reid, --config.batch_sampler=pk); set it False.")
  if config.eval.sampler == 'sequence':
    model = MODELS.get(config.model_name)
    if model is not None and not getattr(model, 'sequence_parts', False):
      with_parts = sorted(n for n, m in MODELS.items() if getattr(m, 'sequence_parts', False))
      problems.append(f"{_flag('eval.sampler', 'sequence')}: model {config.model_name!r} has "
                      f"no sequence part to run over a whole tracklet (models that do: "
                      f"{', '.join(with_parts)}); use eval.sampler 'all'.")
    if config.eval.flip:
      problems.append(f"{_flag('eval.flip', True)}: flip test-time augmentation is not "
                      "available with --config.eval.sampler='sequence'; set one of them off.")
  _choice(problems, 'eval.protocol', config.eval.protocol, ranking.PROTOCOLS, 'protocol')
  _choice(problems, 'eval.metric', config.eval.metric, distance.METRICS, 'metric')
  _choice(problems, 'eval.visualize_queries', config.eval.visualize_queries,
          visualize.QUERY_CHOICES, 'choice of ranked-list queries')
  if config.best_checkpoint_metric:
    _choice(problems, 'best_checkpoint_metric', config.best_checkpoint_metric,
            BEST_METRICS, 'metric (or \'\' for no best checkpoint)')
  _choice(problems, 'optimizer', config.optimizer, optim.OPTIMIZERS, 'optimizer')
  _choice(problems, 'schedule.kind', config.schedule.kind, optim.SCHEDULES, 'schedule')
  _choice(problems, 'epoch', config.epoch, durations.EPOCHS, 'epoch')
  # Terms, weights and each term's option names, against the term functions.
  problems.extend(losses.config_problems(config.losses))


def _check_sizes(config, problems, training: bool):
  """Positive sizes; batches divisible by the device count (the train batch
  only for training: a run trained on 8 devices may be evaluated on 1)."""
  for key in ('height', 'width', 'clip_len', 'num_identities', 'num_instances'):
    _at_least(problems, key, config[key], 1)
  _at_least(problems, 'eval.batch_size', config.eval.batch_size, 1)
  _at_least(problems, 'eval.clip_len', config.eval.clip_len, 0, note=' (0 = same as clip_len)')
  _at_least(problems, 'eval.max_chunks', config.eval.max_chunks, 0, note=' (0 = no limit)')
  _at_least(problems, 'eval.num_visualize', config.eval.num_visualize, 0)
  problems.extend(durations.problems(config))  # steps or epochs, each in range
  _at_least(problems, 'eval_every_steps', config.eval_every_steps, 0,
            note=' (0 = at the end only)')
  _at_least(problems, 'schedule.warmup_steps', config.schedule.warmup_steps, 0)
  _at_least(problems, 'weight_decay', config.weight_decay, 0, 'a number')
  if not config.learning_rate > 0:  # also catches NaN
    problems.append(f'{_flag("learning_rate", config.learning_rate)}: expected a number > 0.')
  if config.batch_sampler == 'pairs':
    # sampling.plan_pair_batch: half positive, half negative pairs; the loop
    # sizes and shards the batch as P * K clips.
    pairs = config.num_pairs
    if pairs < 2 or pairs % 2:
      problems.append(f'{_flag("num_pairs", pairs)}: expected an even number >= 2 (half '
                      'positive and half negative pairs).')
    elif 2 * pairs != config.num_identities * config.num_instances:
      problems.append(f'{_flag("num_pairs", pairs)}: {2 * pairs} clips, but num_identities * '
                      f'num_instances = {config.num_identities * config.num_instances}; set '
                      f'--config.num_identities={pairs} --config.num_instances=2.')
  # As sharding.check_batch_divisible: the data mesh spans every device.
  devices = jax.device_count()
  batches = [(_flag('eval.batch_size', config.eval.batch_size), 'the eval batch',
              config.eval.batch_size)]
  if training and config.num_identities >= 1 and config.num_instances >= 1:
    batches.append((f'{_flag("num_identities", config.num_identities)} '
                    f'{_flag("num_instances", config.num_instances)}', 'the train batch P * K',
                    config.num_identities * config.num_instances))
  for flags, what, size in batches:
    if isinstance(size, int) and size >= 1 and size % devices:
      problems.append(f'{flags}: {what} of {size} clips is not divisible by the {devices} '
                      f'devices of the data mesh; choose a multiple of {devices}.')


def _check_first_stage(config, problems):
  """Two-stage training (``config.first_stage``, jaxreid/training/optim.py)."""
  stage = config.get('first_stage')
  if not stage or not stage.steps:
    return
  _at_least(problems, 'first_stage.steps', stage.steps, 0, note=' (0 = one stage)')
  steps = config.num_train_steps
  if isinstance(steps, int) and isinstance(stage.steps, int) and stage.steps >= steps:
    problems.append(f'{_flag("first_stage.steps", stage.steps)}: the whole run is '
                    f'{steps} steps (--config.num_train_steps), so it would never reach '
                    'the second stage; choose fewer.')
  unknown = sorted(set(stage.losses or ()) - set(config.losses))
  if not stage.losses or unknown:
    problems.append(f'{_flag("first_stage.losses", stage.losses)}: expected some of the '
                    f'loss terms of --config.losses ({", ".join(sorted(config.losses))}).')
  if not stage.modules:
    problems.append(f'{_flag("first_stage.modules", stage.modules)}: name the top-level '
                    'modules that train in the first stage, e.g. (\'backbone\',).')
  if config.pretrained_lr_mult != 1.0:
    problems.append(f'{_flag("first_stage.steps", stage.steps)} with '
                    f'{_flag("pretrained_lr_mult", config.pretrained_lr_mult)}: not supported '
                    'together; set one of them off.')


def _check_dataset(config, problems):
  """The dataset, its builder config and, if it is not prepared yet, its
  manual_dir; reads the builder class, prepares nothing."""
  if config.dataset not in datasets.DATASETS:
    _choice(problems, 'dataset', config.dataset, datasets.DATASETS, 'dataset')
    return
  importlib.import_module(datasets.DATASETS[config.dataset])  # registers the builder
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder_cls = tfds.builder_cls(config.dataset)
  names = [c.name for c in (builder_cls.BUILDER_CONFIGS or [])]
  config_name = config.dataset_config
  if config.all_splits:
    # for_each_split runs every split_<k> (and says so when there is none);
    # they share one release, so the first one tells whether it is needed.
    splits = [n for n in names if n.startswith('split_')]
    if not splits:
      return
    config_name = splits[0]
  elif config.dataset_config and not names:
    problems.append(f'{_flag("dataset_config", config.dataset_config)}: dataset '
                    f'{config.dataset!r} has no builder configs; leave it empty.')
    return
  elif config.dataset_config and config.dataset_config not in names:
    problems.append(f'{_flag("dataset_config", config.dataset_config)}: unknown config of '
                    f'dataset {config.dataset!r}; valid choices: {", ".join(names)}.')
    return
  if not builder_cls.MANUAL_DOWNLOAD_INSTRUCTIONS:
    return
  builder = datasets.get_builder(config.dataset, config_name, config.data_dir)
  if builder.is_prepared():
    return
  # TFDS's own default when manual_dir is not given (DatasetBuilder._make_download_manager).
  manual = (os.path.expanduser(config.manual_dir) if config.manual_dir
            else os.path.join(str(builder.data_dir_root), 'downloads', 'manual'))
  if not os.path.isdir(manual) or not os.listdir(manual):
    state = 'is empty' if os.path.isdir(manual) else 'does not exist'
    problems.append(
        f'--config.manual_dir={config.manual_dir!r}: {manual} {state}, and dataset '
        f'{config.dataset!r} is not prepared in {builder.data_dir_root}; download its release '
        f'and extract it there (see the MANUAL_DOWNLOAD_INSTRUCTIONS in '
        f'{datasets.DATASETS[config.dataset]}).')


def _probe_write(folder: str):
  """Creates and removes a file in `folder`: the one test that is right for
  every user (root ignores permission bits), mount and ACL."""
  with tempfile.TemporaryFile(dir=folder):
    pass


def check_workdir(workdir: str, command: str, given: str = ''):
  """A workdir that can hold this command's files.

  Raises:
    ConfigError: a regular file; a missing parent (train) or a missing folder
      (the other commands, which read a training run); not writable (train,
      evaluate).
  """
  flag = f'--workdir={given or workdir}'
  if os.path.exists(workdir) and not os.path.isdir(workdir):
    raise ConfigError([f'{flag}: is a file, not a folder; choose another --workdir.'])
  if command != 'train' and not os.path.isdir(workdir):
    raise ConfigError([f'{flag}: no such folder; give the --workdir of a training run '
                       '(python -m experiments.train --workdir=...).'])
  if command not in WRITING_COMMANDS:
    return
  folder = workdir if os.path.isdir(workdir) else os.path.dirname(workdir)
  if not os.path.isdir(folder):
    raise ConfigError([f'{flag}: the parent folder {folder} does not exist; create it first '
                       'or choose another path.'])
  try:
    _probe_write(folder)
  except OSError as e:
    raise ConfigError([f'{flag}: cannot write in {folder} ({e.strerror or e}); make it '
                       'writable or choose another --workdir.']) from e


def validate_config(config, workdir: str = '', command: str = 'train', workdir_flag: str = '',
                    uses_dataset: bool = True):
  """Checks every name, size and path of `config` for `command` (one of
  COMMANDS) before any work; prepares nothing and compiles nothing.

  Args:
    config: the experiment config.
    workdir: the absolute --workdir ('' = not checked); `workdir_flag` the
      value as given, for messages.
    command: one of COMMANDS.
    uses_dataset: False when the command reads folders of frames instead of
      the configured dataset (search, extract --folder): its builder config
      and manual_dir are then not checked.

  Raises:
    ConfigError: every problem found, one line each, naming the flag, the value
      and the valid choices.
  """
  if command not in COMMANDS:
    raise ValueError(f'validate_config: unknown command {command!r}; valid: {COMMANDS}.')
  if workdir:
    check_workdir(workdir, command, workdir_flag)
  problems = []
  if command == 'train' and not durations.problems(config):
    # Bookkeeping that would lose the model or divide by zero, in steps: the
    # dataset's size is not known yet, so epochs count one step each here
    # (what is checked, a count of 0 or below, does not depend on the size).
    try:
      settings.check_settings(durations.resolve(config.copy_and_resolve_references(), 1))
    except ValueError as e:
      problems.append(str(e))
  _check_names(config, problems)
  _check_sizes(config, problems, training=command == 'train')
  _check_first_stage(config, problems)
  if uses_dataset:
    _check_dataset(config, problems)
  else:
    _choice(problems, 'dataset', config.dataset, datasets.DATASETS, 'dataset')
  if problems:
    raise ConfigError(problems)


def check_training_data(config, num_train_ids: int):
  """P <= the training identities (PK batches); at least 2 of them (pairs).
  Call once the dataset's index is read, before the first step.

  Raises:
    ConfigError: naming the flag, the value and the largest valid value.
  """
  name = f'{config.dataset}' + (f'/{config.dataset_config}' if config.dataset_config else '')
  if config.batch_sampler == 'pk' and config.num_identities > num_train_ids:
    raise ConfigError([f'{_flag("num_identities", config.num_identities)}: more than the '
                       f'{num_train_ids} training identities of {name}; choose at most '
                       f'{num_train_ids}.'])
  if config.batch_sampler == 'pairs' and num_train_ids < 2:
    raise ConfigError([f'{_flag("batch_sampler", "pairs")}: {name} has {num_train_ids} '
                       'training identity; negative pairs need at least 2.'])
