"""End to end, as a user runs it: train + evaluate a tiny config, resume, re-evaluate
from the checkpoint, and the command line's one-line errors for bad input."""

import json
import os
import subprocess
import sys

import pytest

from experiments import evaluate, train

pytestmark = pytest.mark.slow

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_train_resume_and_evaluate(tmp_path, tiny_config):
  workdir = str(tmp_path / 'run')
  results = train.train_and_evaluate(tiny_config, workdir)
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    saved = json.load(f)
  for key in ('rank1', 'rank5', 'rank10', 'rank20', 'mAP', 'protocol', 'num_query',
              'num_gallery'):
    assert key in saved, key
  assert saved['protocol'] == 'torchreid' and saved['step'] == 6
  assert 0.0 <= saved['rank1'] <= saved['rank5'] <= saved['rank10'] <= 1.0
  assert saved['num_query'] == results['num_query'] > 0
  assert 'gait_twins' in saved['subsets']

  # Evaluating the checkpoint gives the numbers the training run reported.
  again = evaluate.evaluate(tiny_config, workdir)
  assert again['rank1'] == pytest.approx(results['rank1'])
  assert again['mAP'] == pytest.approx(results['mAP'], abs=1e-6)

  # More steps in the same workdir resume from step 6 instead of starting over.
  tiny_config.num_train_steps = 8
  resumed = train.train_and_evaluate(tiny_config, workdir)
  assert resumed['step'] == 8


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-m', 'experiments.train',
                         '--config=experiments/configs/tiny.py', *args],
                        cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  return proc.returncode, proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize('args,message', [
    (['--config.model_name=resnet', '--workdir={tmp}/w'],
     "error: Unknown model 'resnet'; valid choices: temporal_pooling."),
    (['--config.dataset=mars2', '--workdir={tmp}/w'],
     "error: Unknown dataset 'mars2'; valid choices: synthetic_video_reid."),
    (['--workdir={tmp}/missing/w'], 'the parent folder'),
    (['--config.lerning_rate=0.1', '--workdir={tmp}/w'],
     "--config.lerning_rate: no such config key (did you mean 'learning_rate'?)"),
])
def test_bad_input_gives_one_clear_line(tmp_path, tiny_data_dir, args, message):
  args = [a.format(tmp=tmp_path) for a in args] + [f'--config.data_dir={tiny_data_dir}']
  code, last_line = _run(*args)
  assert code != 0
  assert message in last_line
