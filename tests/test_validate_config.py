"""Issue 16, items 6 and 7: the whole config is checked before any work, every
user error is one line (exit status 2, no traceback), a full disk and Ctrl-C
are one line too, and search refuses a gallery of another checkpoint.

Expected lines are written out by hand here (the valid choices included), not
taken from the code under test.
"""

import errno
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import common, search, validate
from experiments.configs import tiny

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# conftest.py simulates 8 devices: batches must be multiples of 8.
DEVICES = 8


@pytest.fixture
def config():
  """The tiny config, unprepared: validate_config never prepares a dataset."""
  return tiny.get_config()


def _problems(config, **kwargs):
  with pytest.raises(validate.ConfigError) as e:
    validate.validate_config(config, **kwargs)
  return e.value.problems


@pytest.mark.parametrize('key,value,line', [
    ('eval.protocol', 'foo', "--config.eval.protocol='foo': unknown protocol; valid choices: "
     'mars_official, torchreid, with_query_in_gallery.'),
    ('eval.metric', 'manhattan', "--config.eval.metric='manhattan': unknown metric; valid "
     'choices: cosine, euclidean.'),
    ('eval.sampler', 'random', "--config.eval.sampler='random': unknown eval sampler; valid "
     'choices: all, evenly, full_chunks, sequence.'),
    ('train_sampler', 'random', "--config.train_sampler='random': unknown train sampler; "
     'valid choices: consecutive, evenly, restricted.'),
    ('optimizer', 'lamb', "--config.optimizer='lamb': unknown optimizer; valid choices: adam, "
     'adamw, sgd.'),
    ('schedule.kind', 'linear', "--config.schedule.kind='linear': unknown schedule; valid "
     'choices: cosine, step.'),
    ('dtype', 'float16', "--config.dtype='float16': unknown dtype; valid choices: bfloat16, "
     'float32.'),
    ('model_name', 'resnet', "--config.model_name='resnet': unknown model; valid choices: crf, "
     'mstn, rru, temporal_pooling, trsa, two_stream_m3d, video_resnet.'),
    ('dataset', 'mars2', "--config.dataset='mars2': unknown dataset; valid choices: "
     'dukemtmc_video_reid, ilids_vid, ls_vid, mars, prid2011, synthetic_video_reid, '
     'tracklet_folders.'),
    ('dataset_config', 'split_0', "--config.dataset_config='split_0': unknown config of "
     "dataset 'synthetic_video_reid'; valid choices: default, tiny, full_size."),
    ('eval.batch_size', 0, '--config.eval.batch_size=0: expected an integer >= 1.'),
    ('eval.batch_size', -8, '--config.eval.batch_size=-8: expected an integer >= 1.'),
    ('eval.batch_size', 12, '--config.eval.batch_size=12: the eval batch of 12 clips is not '
     f'divisible by the {DEVICES} devices of the data mesh; choose a multiple of {DEVICES}.'),
    ('clip_len', 0, '--config.clip_len=0: expected an integer >= 1.'),
    ('clip_len', -4, '--config.clip_len=-4: expected an integer >= 1.'),
    ('num_instances', 0, '--config.num_instances=0: expected an integer >= 1.'),
    ('height', -64, '--config.height=-64: expected an integer >= 1.'),
    ('width', 0, '--config.width=0: expected an integer >= 1.'),
    ('eval.clip_len', -1, '--config.eval.clip_len=-1: expected an integer >= 0 (0 = same as '
     'clip_len).'),
    ('num_train_steps', -1, '--config.num_train_steps=-1: expected an integer >= 0.'),
    ('epoch', 'frames', "--config.epoch='frames': unknown epoch; valid choices: identities, "
     'pairs, tracklets.'),
    ('learning_rate', 0.0, '--config.learning_rate=0.0: expected a number > 0.'),
    ('learning_rate', float('nan'), '--config.learning_rate=nan: expected a number > 0.'),
    ('num_identities', 3, '--config.num_identities=3 --config.num_instances=2: the train batch '
     f'P * K of 6 clips is not divisible by the {DEVICES} devices of the data mesh; choose a '
     f'multiple of {DEVICES}.'),
])
def test_each_bad_value_is_one_line_naming_flag_value_and_choices(config, key, value, line):
  node, leaf = config, key
  while '.' in leaf:
    head, leaf = leaf.split('.', 1)
    node = node[head]
  node[leaf] = value
  assert _problems(config) == [line]


def test_several_problems_are_all_reported_one_line_each(config):
  config.eval.protocol, config.num_instances = 'foo', 0
  problems = _problems(config)
  assert len(problems) == 2
  assert problems[0].startswith("--config.eval.protocol='foo'")
  assert problems[1] == '--config.num_instances=0: expected an integer >= 1.'


def test_model_arguments_of_another_model_are_named(config):
  config.model_name = 'crf'  # the tiny config's model arguments are temporal_pooling's
  valid = ('activation, branch_classifiers, branches, color, conv_padding, dropout, feature, '
           'feature_dim, filters, input_projection, kernel_size, normalization, '
           'recurrent_dropout, region, use_flow')
  assert _problems(config) == [
      f"--config.model.{key}: not an argument of model 'crf'; valid keys: {valid}."
      for key in ('backbone', 'backbone_width', 'last_stride')]


def test_loss_terms_weights_and_options(config):
  config.losses.ce.weight = -1.0
  assert _problems(config) == ['--config.losses.ce.weight=-1.0: expected a weight >= 0.']
  config.losses.ce.weight = 1.0
  # A config file's typos (flags cannot add keys).
  config.losses['cross_entropy'] = {'weight': 1.0}
  config.losses.triplet['margn'] = 0.5
  assert _problems(config) == [
      '--config.losses.cross_entropy: unknown loss term; valid choices: aux_ce, ce, '
      'ce_streams, contrastive, focal, part_triplet, temporal_reg, triplet.',
      "--config.losses.triplet.margn: not an option of loss term 'triplet'; valid keys: "
      'margin, metric, soft_margin, weight.']


def test_durations_in_steps_or_in_epochs(config):
  config.num_train_epochs = 3  # beside the tiny config's num_train_steps = 6
  config.log_every_epochs = 1  # a period may be given in both forms (the sooner wins)
  assert _problems(config) == [
      '--config.num_train_steps=6 and --config.num_train_epochs=3.0: give this duration in '
      'steps or in epochs, not both (a flag can change the form its config file uses; a config '
      'file sets the other to None).']
  config.num_train_steps = None
  validate.validate_config(config)  # epochs only: fine before the dataset's size is known
  config.schedule.decay_steps = None
  config.checkpoint_every_steps, config.checkpoint_every_epochs = None, 0
  assert _problems(config) == [
      '--config.checkpoint_every_epochs=0.0: expected a number > 0.',
      '--config.schedule.decay_steps and --config.schedule.decay_epochs are both None; set '
      'one of them.']
  config.schedule.decay_epochs, config.checkpoint_every_epochs = (1, -2), 1
  assert _problems(config) == ['--config.schedule.decay_epochs=(1, -2): expected numbers >= 0.']


def test_dataset_config_of_a_dataset_without_configs(config):
  config.dataset, config.dataset_config = 'mars', 'split_0'
  assert _problems(config) == ["--config.dataset_config='split_0': dataset 'mars' has no "
                               'builder configs; leave it empty.']


def test_missing_manual_dir_of_an_unprepared_dataset(config, tmp_path):
  config.dataset, config.dataset_config = 'mars', ''
  config.data_dir = str(tmp_path / 'tfds')
  config.manual_dir = str(tmp_path / 'no_such_release')
  problems = _problems(config)
  assert problems == [f"--config.manual_dir='{tmp_path}/no_such_release': {tmp_path}/"
                      "no_such_release does not exist, and dataset 'mars' is not prepared in "
                      f'{tmp_path}/tfds; download its release and extract it there (see the '
                      'MANUAL_DOWNLOAD_INSTRUCTIONS in data_pipelines.mars).']
  (tmp_path / 'empty').mkdir()
  config.manual_dir = str(tmp_path / 'empty')
  assert f'{tmp_path}/empty is empty' in _problems(config)[0]
  # Nothing was prepared or created in the data_dir.
  assert not os.path.exists(tmp_path / 'tfds' / 'mars')


def test_pairs_sampler_sizes(config):
  config.batch_sampler, config.num_pairs = 'pairs', 3  # as the CRF configs add them
  assert _problems(config) == ['--config.num_pairs=3: expected an even number >= 2 (half '
                               'positive and half negative pairs).']
  config.num_pairs = 2
  assert _problems(config) == ['--config.num_pairs=2: 4 clips, but num_identities * '
                               'num_instances = 8; set --config.num_identities=2 '
                               '--config.num_instances=2.']


def test_inference_commands_do_not_check_the_train_batch(config):
  config.num_identities = 3  # 6 clips: trained elsewhere, on other devices
  validate.validate_config(config, command='evaluate')
  validate.validate_config(config, command='search', uses_dataset=False)


def test_num_identities_larger_than_the_training_identities(config):
  config.num_identities = 12
  with pytest.raises(validate.ConfigError) as e:
    validate.check_training_data(config, 10)
  assert str(e.value) == ('--config.num_identities=12: more than the 10 training identities '
                          'of synthetic_video_reid/tiny; choose at most 10.')
  validate.check_training_data(config, 12)


def test_workdir_that_is_a_file_missing_or_read_only(config, tmp_path, monkeypatch):
  afile = tmp_path / 'afile'
  afile.write_text('x')
  for command in validate.COMMANDS:
    assert _problems(config, workdir=str(afile), command=command) == [
        f'--workdir={afile}: is a file, not a folder; choose another --workdir.']
  assert _problems(config, workdir=str(tmp_path / 'none'), command='search') == [
      f'--workdir={tmp_path}/none: no such folder; give the --workdir of a training run '
      '(python -m experiments.train --workdir=...).']

  def read_only(folder):
    raise OSError(errno.EROFS, 'Read-only file system', folder)

  monkeypatch.setattr(validate, '_probe_write', read_only)
  assert _problems(config, workdir=str(tmp_path / 'new'), command='train') == [
      f'--workdir={tmp_path}/new: cannot write in {tmp_path} (Read-only file system); make '
      'it writable or choose another --workdir.']
  validate.validate_config(config, workdir=str(tmp_path), command='extract')  # only reads


# --- run_or_exit: one line and the exit status -------------------------------


@pytest.fixture(autouse=True)
def _no_hard_exit(monkeypatch):
  """run_or_exit ends a Ctrl-C or full disk with os._exit; here, SystemExit."""
  monkeypatch.setattr(common, '_terminate', sys.exit)


def _exit(capsys, fn, **kwargs):
  with pytest.raises(SystemExit) as e:
    common.run_or_exit(fn, **kwargs)
  return e.value.code, capsys.readouterr().err.splitlines()


def _raise(error):
  def fn():
    raise error
  return fn


def test_user_errors_exit_2_one_line_each(capsys):
  code, lines = _exit(capsys, _raise(validate.ConfigError(['a: bad', 'b: bad'])))
  assert (code, lines) == (2, ['error: a: bad', 'error: b: bad'])
  code, lines = _exit(capsys, _raise(FileNotFoundError('--gallery=x: no such file')))
  assert (code, lines) == (2, ['error: --gallery=x: no such file'])


def test_full_disk_is_one_line_naming_the_kept_checkpoint(capsys, tmp_path):
  for step in ('3', '6', '9.orbax-checkpoint-tmp-1'):  # the last: an unfinished save
    (tmp_path / 'checkpoints' / step).mkdir(parents=True)
  code, lines = _exit(capsys, _raise(OSError(errno.ENOSPC, 'No space left on device',
                                             f'{tmp_path}/checkpoints/9/state')),
                      workdir=str(tmp_path))
  assert code == 1
  assert lines == [f'error: no space left on the device while writing {tmp_path}/checkpoints/9/'
                   f'state; the last checkpoint (step 6) is kept in {tmp_path}/checkpoints. Free '
                   'some space (or choose another --workdir) and run the same command again.']
  # TensorStore's way: a ValueError whose text carries the OS error.
  code, lines = _exit(capsys, _raise(ValueError('UNKNOWN: Error writing "d/state": [OS error '
                                                '28: No space left on device]')),
                      workdir=str(tmp_path))
  assert code == 1 and len(lines) == 1 and lines[0].startswith('error: no space left')


def test_orbax_thread_tracebacks_of_a_full_disk_are_dropped():
  import logging  # pylint: disable=g-import-not-at-top
  full = ValueError('RESOURCE_EXHAUSTED: Failed to write 375162 bytes to file 8: No space left '
                    "on device [os_error_code='28']")

  def record(path, error):
    return logging.LogRecord('absl', logging.ERROR, path, 1, 'save failed', (),
                             (type(error), error, None))

  keep = common._DropLibraryChatter().filter  # pylint: disable=protected-access
  assert not keep(record('/venv/orbax/checkpoint/_src/futures/future.py', full))
  assert keep(record('/venv/orbax/checkpoint/_src/futures/future.py', ValueError('other')))
  assert keep(record('/work/main/jaxreid/training/loop.py', full))


def test_ctrl_c_is_one_line_and_status_130(capsys, tmp_path):
  code, lines = _exit(capsys, _raise(KeyboardInterrupt()), workdir=str(tmp_path))
  assert (code, lines) == (130, ['interrupted; no checkpoint was saved.'])
  (tmp_path / 'checkpoints' / '4').mkdir(parents=True)
  code, lines = _exit(capsys, _raise(KeyboardInterrupt()), workdir=str(tmp_path))
  assert (code, lines) == (130, [f'interrupted; the last checkpoint (step 4) is kept in '
                                 f'{tmp_path}/checkpoints.'])


# --- search: --top_k and provenance ------------------------------------------


@pytest.mark.parametrize('top_k', [0, -1])
def test_top_k_below_one_is_refused_before_any_work(config, top_k):
  with pytest.raises(ValueError, match=rf'^--top_k={top_k}: expected a number >= 1 '):
    search.search(config, '/nonexistent', '/nonexistent.npz', '/nonexistent', top_k)


def _gallery(workdir='/runs/a', step=6, fingerprint='0123456789abcdef'):
  return {'checkpoint_workdir': np.array(workdir), 'checkpoint_step': np.array(step),
          'checkpoint_fingerprint': np.array(fingerprint)}


_CURRENT = {'checkpoint_workdir': '/runs/a', 'checkpoint_step': 6,
            'checkpoint_fingerprint': '0123456789abcdef'}


@pytest.mark.parametrize('gallery,diff', [
    (_gallery(step=3), 'step 3 (this --workdir: 6)'),
    (_gallery(workdir='/runs/b'), "workdir '/runs/b' (this --workdir: '/runs/a')"),
    (_gallery(fingerprint='ffffffffffffffff'),
     "fingerprint 'ffffffffffffffff' (this --workdir: '0123456789abcdef')"),
    ({}, 'it records no checkpoint (written by an older experiments.extract)'),
])
def test_gallery_of_another_checkpoint_is_refused_or_warned(gallery, diff, monkeypatch):
  search.check_provenance(_gallery(), _CURRENT, 'g.npz')  # same checkpoint: silent
  with pytest.raises(ValueError) as e:
    search.check_provenance(gallery, _CURRENT, 'g.npz')
  assert str(e.value) == (f'--gallery=g.npz was not extracted by the checkpoint that embeds '
                          f'the queries: {diff}. Extract it again with this --workdir, or pass '
                          '--allow_other_checkpoint to rank it anyway.')
  warnings = []
  monkeypatch.setattr(search.logging, 'warning', lambda fmt, *a: warnings.append(fmt % a))
  search.check_provenance(gallery, _CURRENT, 'g.npz', allow_other=True)
  assert len(warnings) == 1 and diff in warnings[0] and 'Ranking it anyway' in warnings[0]


# --- end to end: the entry points, as a user runs them -----------------------


def _run(module, *args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-m', f'experiments.{module}',
                         '--config=experiments/configs/tiny.py', *args],
                        cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  return proc.returncode, proc.stderr


def _one_error_line(stderr):
  assert 'Traceback' not in stderr, stderr[-3000:]
  errors = [l for l in stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1, stderr[-3000:]
  return errors[0]


@pytest.mark.slow
def test_train_refuses_a_bad_protocol_before_anything(tmp_path):
  workdir = tmp_path / 'w'
  code, stderr = _run('train', f'--workdir={workdir}', f'--config.data_dir={tmp_path}/tfds',
                      '--config.eval.protocol=foo')
  assert code == 2
  assert _one_error_line(stderr) == ("error: --config.eval.protocol='foo': unknown protocol; "
                                     'valid choices: mars_official, torchreid, '
                                     'with_query_in_gallery.')
  assert not workdir.exists() and not (tmp_path / 'tfds').exists()  # nothing prepared


@pytest.mark.slow
def test_search_refuses_top_k_below_one(tmp_path):
  code, stderr = _run('search', f'--workdir={tmp_path}', '--gallery=g.npz', '--query=q',
                      '--top_k=-1')
  assert code == 2
  assert _one_error_line(stderr) == ('error: --top_k=-1: expected a number >= 1 (gallery '
                                     'tracklets listed per query).')


@pytest.mark.slow
def test_train_refuses_too_many_identities_before_the_first_step(tmp_path, tiny_data_dir):
  workdir = tmp_path / 'w'
  code, stderr = _run('train', f'--workdir={workdir}', f'--config.data_dir={tiny_data_dir}',
                      '--config.num_identities=1000')
  assert code == 2
  line = _one_error_line(stderr)
  assert line.startswith('error: --config.num_identities=1000: more than the '), line
  assert line.endswith(' training identities of synthetic_video_reid/tiny; choose at most '
                       f'{line.split("choose at most ")[1]}'), line
  assert not (workdir / 'checkpoints').exists()


@pytest.mark.slow
def test_extract_records_its_checkpoint_and_search_refuses_another(tmp_path, tiny_config,
                                                                   capsys):
  from experiments import extract, train  # pylint: disable=g-import-not-at-top
  workdir = str(tmp_path / 'run')
  tiny_config.num_train_steps, tiny_config.checkpoint_every_steps = 2, 2
  train.train_and_evaluate(tiny_config, workdir)
  out = str(tmp_path / 'gallery.npz')
  extract.extract(tiny_config, workdir, out, splits=['gallery'])
  with np.load(out) as saved:
    assert saved['checkpoint_workdir'].item() == os.path.realpath(workdir)
    assert saved['checkpoint_step'].item() == 2
    assert len(saved['checkpoint_fingerprint'].item()) == 16
  query = tmp_path / 'query'
  query.mkdir()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for i in range(4):
    Image.fromarray(np.full((64, 32, 3), 40 * i, np.uint8)).save(query / f'frame_{i}.png')
  (_, rows), = search.search(tiny_config, workdir, out, str(query), top_k=2)
  assert len(rows) == 2

  # The same gallery as another checkpoint of this run would have written it
  # (step 1; training again to get one would double this test's time).
  other = str(tmp_path / 'other.npz')
  with np.load(out) as saved:
    np.savez(other, **{**{k: saved[k] for k in saved.files}, 'checkpoint_step': np.array(1)})
  capsys.readouterr()
  code, lines = _exit(capsys, lambda: search.search(tiny_config, workdir, other, str(query), 2))
  assert (code, lines) == (2, [f'error: --gallery={other} was not extracted by the checkpoint '
                               'that embeds the queries: step 1 (this --workdir: 2). Extract it '
                               'again with this --workdir, or pass --allow_other_checkpoint to '
                               'rank it anyway.'])
  (_, rows), = search.search(tiny_config, workdir, other, str(query), top_k=1000,
                             allow_other_checkpoint=True)
  assert len(rows) == len(np.load(out)['name'])  # top_k beyond the gallery lists it all


@pytest.mark.slow
def test_crf_fusion_refuses_a_missing_region_workdir_before_anything(tmp_path):
  code, stderr = _run('crf_fusion', f'--workdir={tmp_path}/fusion', f'--full_workdir={tmp_path}',
                      f'--upper_workdir={tmp_path}', f'--lower_workdir={tmp_path}/none',
                      f'--config.data_dir={tmp_path}/tfds')
  assert code == 2
  assert _one_error_line(stderr) == (
      f'error: --lower_workdir={tmp_path}/none: expected the workdir of the lower-body model '
      '(python -m experiments.train --config.model.region=lower ...), found no such folder.')
  assert not (tmp_path / 'tfds').exists() and not (tmp_path / 'fusion').exists()


def test_twins_together_needs_the_synthetic_datasets_pk_batches(config):
  config.train_twins_together = True
  validate.validate_config(config)  # the fixture's synthetic dataset and PK batches: fine
  config.dataset, config.dataset_config = 'ilids_vid', ''
  line = ('--config.train_twins_together=True: needs PK batches of the synthetic dataset, whose '
          'generator knows its gait twins (--config.dataset=synthetic_video_reid, '
          '--config.batch_sampler=pk); set it False.')
  assert line in _problems(config)
