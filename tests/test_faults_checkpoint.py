"""Fault injection on the checkpoint side (issue 16, items 3-5): a damaged newest
checkpoint is reported, moved aside (never deleted) and the previous one used;
none intact is one error; a checkpoint names what it was trained with
(optimizer, data) and refuses evaluation on its own training persons while
cross-dataset evaluation stays possible; settings that would lose the model
are refused before any work; one training run per workdir (a live lock
refuses a second run, leaving the first one's files unchanged; a dead run's
lock is taken over).

Most cases use a toy train state (no model to compile); the few subprocess
ones run experiments.train on the tiny config.
"""

import glob
import json
import logging
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import tiny
from jaxreid.training import checkpoint, checkpoint_record as record, loop, nonfinite
from jaxreid.training import state as state_lib, workdir_lock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- a toy train state -------------------------------------------------------

def _state(tx=None, width=4, scale=1.0):
  params = {'backbone': {'kernel': scale * jnp.arange(3.0 * width).reshape(3, width)},
            'head': {'bias': scale * jnp.ones(width)}}
  return state_lib.TrainState.create(apply_fn=None, params=params, tx=tx or optax.adam(1e-3),
                                     batch_stats={'bn': {'mean': jnp.zeros(width)}})


def _abstract(state):
  return jax.eval_shape(lambda: state)


META = {'model_name': 'toy', 'model': {'width': 4}, 'num_classes': 4, 'dataset': 'a',
        'dataset_config': '', 'optimizer': 'adam'}


def _save_steps(workdir, steps=(1, 2), tx=None, meta=META):
  ckpt = checkpoint.Checkpointer(workdir, max_to_keep=5)
  for s in steps:
    ckpt.save(s, _state(tx, scale=float(s)).replace(step=s), meta)
  ckpt.close()
  return ckpt.directory


def _files(root):
  """{relative path: (size, mtime_ns)} of every file under `root`."""
  out = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      st = os.stat(path)
      out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime_ns)
  return out


def _truncate_array_file(step_dir):
  # The OCDBT data files of the state; the largest holds the arrays.
  path = max(glob.glob(os.path.join(step_dir, 'state', 'd', '*')), key=os.path.getsize)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)
  return path


def _delete_array_file(step_dir):
  path = sorted(glob.glob(os.path.join(step_dir, 'state', 'd', '*')))[0]
  os.remove(path)
  return path


def _corrupt_meta_json(step_dir):
  path = os.path.join(step_dir, 'meta', 'metadata')
  with open(path, 'w') as f:
    f.write('{"model_name": "toy", "num_cla')  # cut short, as by a full disk
  return path


DAMAGE = {'truncated file': _truncate_array_file, 'deleted file': _delete_array_file,
          'corrupt JSON': _corrupt_meta_json}


@pytest.mark.parametrize('how', list(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_to_the_previous(tmp_path, caplog, how):
  workdir = str(tmp_path / 'run')
  directory = _save_steps(workdir)
  damaged_file = DAMAGE[how](os.path.join(directory, '2'))
  before = _files(os.path.join(directory, '2'))

  ckpt = checkpoint.Checkpointer(workdir, max_to_keep=5)
  with caplog.at_level(logging.WARNING):
    state, meta = ckpt.restore(_abstract(_state()), META)
  assert int(state.step) == 1 and meta['model_name'] == 'toy'
  np.testing.assert_array_equal(state.params['head']['bias'], np.ones(4))  # step 1's values
  # One warning line naming the checkpoint's path and the reason.
  warning = [r.getMessage() for r in caplog.records if 'does not restore' in r.getMessage()]
  assert len(warning) == 1 and '\n' not in warning[0], warning
  assert os.path.join(directory, '2') in warning[0] and 'moved it to' in warning[0]
  # Moved aside, with every file as it was (the damaged one included): not deleted.
  moved, = glob.glob(os.path.join(directory, 'damaged', '2-*'))
  assert _files(moved) == before
  assert not os.path.exists(os.path.join(directory, '2'))
  if how != 'deleted file':
    assert os.path.exists(damaged_file.replace(os.path.join(directory, '2'), moved))
  # Training goes on: the next save and keep-N do not count the moved step.
  assert ckpt.latest_step() == 1
  ckpt.save(3, state.replace(step=3), META)
  ckpt.close()
  assert sorted(ckpt.manager.all_steps()) == [1, 3]


def test_no_intact_checkpoint_is_one_clear_error(tmp_path):
  workdir = str(tmp_path / 'run')
  directory = _save_steps(workdir)
  _truncate_array_file(os.path.join(directory, '2'))
  _corrupt_meta_json(os.path.join(directory, '1'))
  ckpt = checkpoint.Checkpointer(workdir)
  with pytest.raises(checkpoint.CheckpointDamagedError) as e:
    ckpt.restore(_abstract(_state()), META)
  message = str(e.value)
  assert message.startswith(f'No intact checkpoint in {directory}: step 2 (its ')
  assert 'step 1 (its record: JSONDecodeError' in message and '\n' not in message
  assert 'new --workdir' in message
  ckpt.close()
  assert len(glob.glob(os.path.join(directory, 'damaged', '*'))) == 2
  # Rerunning the same command does not silently start from scratch.
  ckpt = checkpoint.Checkpointer(workdir)
  with pytest.raises(checkpoint.CheckpointDamagedError, match='the damaged ones are in'):
    ckpt.restore(_abstract(_state()), META)
  ckpt.close()


def test_reader_skips_a_damaged_checkpoint_without_moving_it_while_a_run_holds_the_workdir(
    tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  directory = _save_steps(workdir)
  _truncate_array_file(os.path.join(directory, '2'))
  holder = _hold_lock_in_subprocess(workdir)
  try:
    ckpt = checkpoint.Checkpointer(workdir, for_training=False)
    with caplog.at_level(logging.WARNING):
      state, _ = ckpt.restore(_abstract(_state()), META, for_inference=True)
    ckpt.close()
  finally:
    holder.kill()
    holder.wait()
  assert int(state.step) == 1
  assert os.path.isdir(os.path.join(directory, '2'))  # left for the training run
  assert not os.path.exists(os.path.join(directory, 'damaged'))
  assert any('not moved: a training run' in r.getMessage() for r in caplog.records)


# --- what a checkpoint knows --------------------------------------------------

def test_optimizer_change_is_named_in_one_line(tmp_path):
  workdir = str(tmp_path / 'run')
  _save_steps(workdir, steps=(1,), tx=optax.sgd(0.1, momentum=0.9), meta={**META, 'optimizer': 'sgd'})
  ckpt = checkpoint.Checkpointer(workdir)
  with pytest.raises(checkpoint.CheckpointMismatchError) as e:
    ckpt.restore(_abstract(_state(optax.adam(1e-3))), META)
  assert "the checkpoint was trained with optimizer 'sgd'; this config says 'adam'" in str(e.value)
  # A record without the key (an older checkpoint): the tree check names the
  # optimizer state, in a few hundred characters, not Orbax's tree dump.
  old_meta = {k: v for k, v in META.items() if k != 'optimizer'}
  _save_steps(str(tmp_path / 'old'), steps=(1,), tx=optax.sgd(0.1, momentum=0.9), meta=old_meta)
  ckpt2 = checkpoint.Checkpointer(str(tmp_path / 'old'))
  with pytest.raises(checkpoint.CheckpointMismatchError) as e:
    ckpt2.restore(_abstract(_state(optax.adam(1e-3))), META)
  message = str(e.value)
  assert 'its optimizer state differ' in message and 'this config says' in message
  assert len(message) < 1200 and '\n' not in message
  # Neither checkpoint was taken for damaged.
  assert not glob.glob(str(tmp_path / '*' / 'checkpoints' / 'damaged'))
  ckpt.close()
  ckpt2.close()


def test_inference_needs_only_the_network_to_fit(tmp_path):
  """Another optimizer, dataset and split: restored (cross-dataset
  evaluation); another parameter shape: refused, naming the parameter."""
  workdir = str(tmp_path / 'run')
  _save_steps(workdir, steps=(1,), tx=optax.sgd(0.1, momentum=0.9), meta={**META, 'optimizer': 'sgd'})
  other = {**META, 'dataset': 'b', 'dataset_config': 'split_3'}
  ckpt = checkpoint.Checkpointer(workdir, for_training=False)
  state, meta = ckpt.restore(_abstract(_state(optax.adam(1e-3))), other, for_inference=True)
  np.testing.assert_array_equal(state.params['backbone']['kernel'],
                                np.arange(12.0).reshape(3, 4))
  assert meta['dataset'] == 'a'
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match=r'its parameters differ \(params/backbone/kernel: checkpoint \(3, 4\), '
                     r'config \(3, 5\)'):
    ckpt.restore(_abstract(_state(width=5)), other, for_inference=True)
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match="trained with num classes 4; this config says 5"):
    ckpt.restore(_abstract(_state()), {**other, 'num_classes': 5}, for_inference=True)
  ckpt.close()


class _FakeData:
  """The two things the overlap check reads of the data object."""

  def __init__(self, query, gallery, dataset_config=''):
    self._pids = {'query': np.array(query), 'gallery': np.array(gallery)}
    self.builder = type('B', (), {'builder_config': type('C', (), {'name': dataset_config})})()

  def split_labels(self, split):
    return {'pid': self._pids[split]}


def _config(dataset='prid2011', dataset_config='split_1'):
  c = tiny.get_config()
  c.dataset, c.dataset_config = dataset, dataset_config
  return c


def test_evaluation_on_training_persons_is_refused():
  meta = {'dataset': 'prid2011', 'dataset_config': 'split_0', 'train_pids': [1, 2, 3, 7]}
  # split_1 tests persons 3 and 7, which split_0 trained on.
  with pytest.raises(ValueError) as e:
    record.check_not_trained_on(meta, _config(), _FakeData([3, 4], [3, 4, 7, 8]))
  assert str(e.value) == (
      "The checkpoint was trained on prid2011 'split_0'; evaluating it on prid2011 'split_1' "
      'would report leaked results: 2 of its query/gallery person ids (e.g. 3, 7) are '
      'training persons of the checkpoint. Evaluate with --config.dataset_config=split_0, '
      'or on another dataset.')
  # Its own split (disjoint test persons) and junk ids: allowed.
  record.check_not_trained_on(meta, _config(dataset_config='split_0'),
                             _FakeData([4, 5], [-1, 0, 4, 5, 6]))
  # Another dataset (its person ids name other people): allowed.
  record.check_not_trained_on(meta, _config('ilids_vid'), _FakeData([1, 2], [1, 2, 3]))
  # An older record without the training ids: another numbered split is refused by name,
  # the builder default ('' = split_0) counts as split_0.
  old = {'dataset': 'prid2011', 'dataset_config': 'split_0'}
  with pytest.raises(ValueError, match='numbered splits of a dataset share persons'):
    record.check_not_trained_on(old, _config(), _FakeData([3], [3]))
  record.check_not_trained_on(old, _config(dataset_config=''), _FakeData([3], [3], 'split_0'))


def test_checkpoint_meta_records_data_and_optimizer():
  c = _config()
  c.optimizer, c.schedule.kind = 'sgd', 'cosine'
  meta = record.checkpoint_meta(c, 89, train_pids=np.array([9, 2, 5]), dataset_config='split_1')
  assert meta['dataset'] == 'prid2011' and meta['dataset_config'] == 'split_1'
  assert meta['optimizer'] == 'sgd' and meta['schedule_kind'] == 'cosine'
  assert meta['train_pids'] == [2, 5, 9] and meta['backbone_lr_group'] is False
  json.dumps(meta)  # a JSON record
  assert set(checkpoint.INFERENCE_KEYS) <= set(meta)


# --- settings that lose the model ---------------------------------------------

@pytest.mark.parametrize('key,value', [('keep_checkpoints', 0), ('checkpoint_every_steps', 0),
                                       ('log_every_steps', 0), ('eval_every_steps', -1),
                                       ('max_skipped_fraction', 1.5)])
def test_settings_that_lose_the_model_are_refused_before_any_work(tmp_path, key, value):
  config = tiny.get_config()
  config[key] = value
  workdir = str(tmp_path / 'run')
  with pytest.raises(ValueError, match=rf'^--config\.{key}={value}: expected '):
    loop.train_and_evaluate(config, workdir, data=None)  # data is never touched
  assert not os.path.exists(workdir)


class _Ckpt:
  directory = '/w/checkpoints'

  def latest_step(self):
    return 4


def test_a_run_that_skips_too_many_steps_stops(caplog):
  guard = nonfinite.NonFiniteGuard(_Ckpt(), skip=True, skipped_before=0)
  with caplog.at_level(logging.WARNING):
    guard.count = jnp.asarray(1.0)
    guard.check_skipped(2, 0.1)  # one skipped step is always allowed
    guard.count = jnp.asarray(2.0)
    guard.check_skipped(20, 0.1)  # 2 of 20 = 10%: not more than the fraction
  lines = [r.getMessage() for r in caplog.records]
  assert lines == [
      'Skipped 1 non-finite step(s) since the last log line: 1 of 2 steps so far '
      '(config.max_skipped_fraction = 0.1).',
      'Skipped 1 non-finite step(s) since the last log line: 2 of 20 steps so far '
      '(config.max_skipped_fraction = 0.1).']
  guard.count = jnp.asarray(19.0)
  with pytest.raises(nonfinite.NonFiniteLossError) as e:
    guard.check_skipped(20, 0.1)
  assert str(e.value).startswith(
      'Skipped 19 of 20 steps as non-finite (95%), more than --config.max_skipped_fraction=0.1')
  assert 'the last good checkpoint (step 4) is kept in /w/checkpoints' in str(e.value)


# --- one writer per workdir ---------------------------------------------------

_HOLDER = ('import sys, time; from jaxreid.training import workdir_lock; '
           'workdir_lock.acquire(sys.argv[1]); print("locked", flush=True); time.sleep(600)')


def _hold_lock_in_subprocess(workdir):
  """A live process holding `workdir`'s lock, as a first training run does."""
  proc = subprocess.Popen([sys.executable, '-c', _HOLDER, workdir], cwd=REPO,
                          stdout=subprocess.PIPE, text=True,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def test_second_run_on_a_held_workdir_is_refused_and_changes_nothing(tmp_path):
  workdir = str(tmp_path / 'run')
  _save_steps(workdir)
  holder = _hold_lock_in_subprocess(workdir)
  try:
    before = _files(workdir)
    with pytest.raises(workdir_lock.WorkdirLockedError) as e:
      loop.train_and_evaluate(tiny.get_config(), workdir, data=None)
    assert str(e.value) == (
        f'another run (pid {holder.pid} on host {socket.gethostname()}) is using {workdir}; '
        'wait for it or choose another --workdir (if that run is gone, delete '
        f'{workdir}/.lock).')
    assert _files(workdir) == before  # the first run's files, its lock included
  finally:
    holder.kill()
    holder.wait()


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path, caplog):
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()  # exited and reaped: its pid names no process now
  with open(os.path.join(workdir, '.lock'), 'w') as f:
    json.dump({'pid': dead.pid, 'host': socket.gethostname()}, f)
  with caplog.at_level(logging.WARNING):
    with workdir_lock.hold(workdir) as path:
      with open(path) as f:
        assert json.load(f)['pid'] == os.getpid()
  assert not os.path.exists(path)  # released
  assert any(f'pid {dead.pid}' in r.getMessage() and 'taking it over' in r.getMessage()
             for r in caplog.records)
  # A lock of another host cannot be checked: refused, naming host and file.
  with open(path, 'w') as f:
    json.dump({'pid': 1234, 'host': 'elsewhere'}, f)
  with pytest.raises(workdir_lock.WorkdirLockedError, match='pid 1234 on host elsewhere'):
    workdir_lock.acquire(workdir)


def test_lock_is_released_when_the_run_raises(tmp_path):
  workdir = str(tmp_path / 'run')
  with pytest.raises(RuntimeError):
    with workdir_lock.hold(workdir):
      assert workdir_lock.live_holder(workdir) is None  # our own lock: not another run
      assert os.path.exists(os.path.join(workdir, '.lock'))
      raise RuntimeError('boom')
  assert not os.path.exists(os.path.join(workdir, '.lock'))


# --- as a user runs it ----------------------------------------------------------

def _train(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, '-m', 'experiments.train',
                         '--config=experiments/configs/tiny.py', *args],
                        cwd=REPO, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.slow
def test_command_line_refuses_keep_checkpoints_0_and_a_held_workdir(tmp_path, tiny_data_dir):
  workdir = str(tmp_path / 'run')
  proc = _train(f'--workdir={workdir}', f'--config.data_dir={tiny_data_dir}',
                '--config.keep_checkpoints=0')
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1].startswith(
      'error: --config.keep_checkpoints=0: expected at least 1'), proc.stderr[-2000:]
  assert not os.path.exists(workdir)
  holder = _hold_lock_in_subprocess(workdir)
  try:
    proc = _train(f'--workdir={workdir}', f'--config.data_dir={tiny_data_dir}')
  finally:
    holder.kill()
    holder.wait()
  assert proc.returncode != 0
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: another run (pid {holder.pid} on host {socket.gethostname()}) is using '
      f'{workdir}; wait for it or choose another --workdir (if that run is gone, delete '
      f'{workdir}/.lock).'), proc.stderr[-2000:]
  assert sorted(os.listdir(workdir)) == ['.lock']  # nothing else written
