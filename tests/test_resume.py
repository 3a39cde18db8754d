"""Exact resume: a training run killed at any moment (SIGKILL at a random step,
SIGKILL while a checkpoint is being written, SIGTERM, then its newest
checkpoint damaged) and restarted with the same command ends bitwise equal to
an uninterrupted run: parameters, optimizer state, BN statistics, logged
training metrics and eval results. The lock a SIGKILLed run leaves is taken
over by the restart (its pid is dead).

Each run is `python -m experiments.train` in a subprocess, as a user or a
cluster scheduler runs it.
"""

import glob
import json
import os
import random
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_STEPS = 8


def _command(workdir, data_dir, kill_during_save=None):
  """experiments.train on the tiny config; with `kill_during_save`, through
  tests/train_with_faults.py, which SIGKILLs it during the save of that step."""
  train = ([os.path.join(REPO, 'tests', 'train_with_faults.py'),
            f'--kill_during_save={kill_during_save}'] if kill_during_save is not None
           else ['-m', 'experiments.train'])
  return [sys.executable, *train, '--config=experiments/configs/tiny.py',
          f'--workdir={workdir}', f'--config.data_dir={data_dir}',
          f'--config.num_train_steps={NUM_STEPS}', '--config.checkpoint_every_steps=2',
          '--config.log_every_steps=1']


def _run(workdir, data_dir, kill_after_step=None, sig=signal.SIGKILL, kill_during_save=None):
  """Runs training; with `kill_after_step`, sends `sig` once the log line of
  that step appears. Returns (exit status, log text)."""
  env = dict(os.environ, JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2')  # 8 devices: conftest.py
  proc = subprocess.Popen(_command(workdir, data_dir, kill_during_save), cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  lines = []
  for line in proc.stdout:
    lines.append(line)
    if kill_after_step is not None and re.search(rf'step {kill_after_step}/{NUM_STEPS} ',
                                                 line):
      proc.send_signal(sig)
      kill_after_step = None
  return proc.wait(timeout=120), ''.join(lines)


def _train_metrics(log: str) -> dict:
  """{step: 'accuracy=... grad_norm=... loss=...'} from the loop's console lines
  ('step 3/8 (38%)  accuracy=0.125 ... learning_rate=0.001  2.94 steps/s  ETA ...')."""
  return dict(re.findall(rf'step (\d+)/{NUM_STEPS} \(\d+%\)  (accuracy=.*?)  [\d.]+ steps/s',
                         log))


def _final_state(workdir):
  mngr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                               item_names=('state', 'meta'))
  step = mngr.latest_step()
  state = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))['state']
  mngr.close()
  return step, jax.device_get(state)


def _assert_same_run(workdir, reference_dir):
  step, state = _final_state(workdir)
  ref_step, ref_state = _final_state(reference_dir)
  assert step == ref_step == NUM_STEPS
  for key in ('params', 'opt_state', 'batch_stats', 'step'):
    leaves, ref_leaves = jax.tree.leaves(state[key]), jax.tree.leaves(ref_state[key])
    assert len(leaves) == len(ref_leaves) > 0 or key == 'step'
    for a, b in zip(leaves, ref_leaves):
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=key)  # bitwise
  with open(os.path.join(workdir, 'eval_results.json')) as f, \
      open(os.path.join(reference_dir, 'eval_results.json')) as g:
    assert json.load(f) == json.load(g)


def _latest_complete_step(workdir):
  mngr = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'),
                               item_names=('state', 'meta'),
                               options=ocp.CheckpointManagerOptions(read_only=True))
  step = mngr.latest_step()
  mngr.close()
  return step


def test_killed_and_restarted_run_ends_bitwise_equal(tmp_path, tiny_data_dir):
  """One run interrupted three ways in turn (SIGKILL at a random step, SIGKILL
  during a checkpoint write, SIGTERM), each time restarted with the same
  command, against an uninterrupted run."""
  reference = str(tmp_path / 'reference')
  status, ref_log = _run(reference, tiny_data_dir)
  assert status == 0, ref_log[-3000:]
  ref_metrics = _train_metrics(ref_log)
  assert sorted(map(int, ref_metrics)) == list(range(1, NUM_STEPS + 1)), ref_log[-3000:]
  workdir = str(tmp_path / 'run')
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  logs = []

  # 1. SIGKILL after a random step (after the first checkpoint is complete).
  kill_step = random.Random(8).randint(5, NUM_STEPS - 1)
  status, log = _run(workdir, tiny_data_dir, kill_after_step=kill_step)
  logs.append(log)
  assert status == -signal.SIGKILL, log[-3000:]
  assert not os.path.exists(os.path.join(workdir, 'eval_results.json'))
  resumed = _latest_complete_step(workdir)
  assert resumed is not None and resumed < NUM_STEPS - 1

  # 2. Restarted; SIGKILLed right after the next save started (its
  # Checkpointer.save patched, tests/faults.py), while Orbax is still writing
  # its temporary folder.
  victim = resumed + 2
  status, log = _run(workdir, tiny_data_dir, kill_during_save=victim)
  logs.append(log)
  assert status == -signal.SIGKILL, log[-3000:]
  assert re.search(rf'Resumed from .* at step {resumed}\.', log), log[-3000:]
  names = os.listdir(ckpt_dir)
  assert any(n.startswith(f'{victim}.') and 'tmp' in n for n in names), names
  assert str(victim) not in names
  # The half-written checkpoint is ignored, never loaded.
  assert _latest_complete_step(workdir) == resumed

  # 3. Restarted; SIGTERM (preemption) after its first step: a final save, exit 143.
  status, log = _run(workdir, tiny_data_dir, kill_after_step=resumed + 1, sig=signal.SIGTERM)
  logs.append(log)
  assert status == 143, log[-3000:]
  assert re.search(rf'Resumed from .* at step {resumed}\.', log), log[-3000:]
  assert not [n for n in os.listdir(ckpt_dir) if 'tmp' in n]  # cleaned up
  saved = int(re.search(r'saved the checkpoint of step (\d+)', log).group(1))
  assert resumed < saved <= NUM_STEPS and _latest_complete_step(workdir) == saved

  # 4. The newest checkpoint is damaged after the stop (a file of its arrays
  # truncated, as by a full disk or an interrupted copy). Restarted: it is
  # reported, moved aside, and the run resumes from the previous one.
  previous = max(int(n) for n in os.listdir(ckpt_dir) if n.isdigit() and int(n) < saved)
  data_file = max(glob.glob(os.path.join(ckpt_dir, str(saved), 'state', 'd', '*')),
                  key=os.path.getsize)
  with open(data_file, 'r+b') as f:
    f.truncate(os.path.getsize(data_file) // 2)
  truncated_size = os.path.getsize(data_file)
  status, log = _run(workdir, tiny_data_dir)
  logs.append(log)
  assert status == 0, log[-3000:]
  assert re.search(rf'Checkpoint {re.escape(ckpt_dir)}/{saved} does not restore \(.*\); '
                   rf'moved it to {re.escape(ckpt_dir)}/damaged/{saved}-', log), log[-3000:]
  assert re.search(rf'Resumed from .* at step {previous}\.', log), log[-3000:]
  assert 'Task exception was never retrieved' not in log  # one line, no tracebacks
  # Kept, not deleted: the truncated file is in the moved folder.
  moved, = glob.glob(os.path.join(ckpt_dir, 'damaged', f'{saved}-*'))
  assert os.path.getsize(os.path.join(moved, os.path.relpath(
      data_file, os.path.join(ckpt_dir, str(saved))))) == truncated_size
  assert not os.path.exists(os.path.join(workdir, '.lock'))  # released at the end

  _assert_same_run(workdir, reference)
  # Logged training metrics of every step, those run twice included, agree.
  for log in logs:
    for step, line in _train_metrics(log).items():
      assert line == ref_metrics[step], step
