"""What a newcomer meets first: the README's quick start as CI reads it, --help
of each entry point, and show_config's field listing."""

import os
import runpy
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ci_reads_the_two_quick_start_commands_from_the_readme():
  reader = runpy.run_path(os.path.join(REPO, '.ci', 'readme_commands.py'))
  with open(os.path.join(REPO, 'README.md')) as f:
    first, second = reader['quick_start_commands'](f.read())
  # The main job installs without extras and trains; then the tests.
  assert "pip install -e . " in first and 'experiments.train' in first
  assert '[test]' not in first
  assert "'.[test]'" in second and 'pytest' in second


def test_ci_refuses_a_readme_without_two_commands():
  reader = runpy.run_path(os.path.join(REPO, '.ci', 'readme_commands.py'))
  one = '## Quick start\n\n```sh\necho one\n```\n\n## Next\n'
  with pytest.raises(SystemExit, match='exactly two commands, found 1'):
    reader['quick_start_commands'](one)


def _help(module: str, *args) -> str:
  out = subprocess.run([sys.executable, '-m', module, '--help', *args], capture_output=True,
                       text=True, cwd=REPO, timeout=300)
  assert out.returncode in (0, 1), out.stderr[-2000:]  # absl's --help exits with 1
  assert 'Traceback' not in out.stderr, out.stderr[-2000:]
  return out.stdout


@pytest.mark.parametrize('module, own_flag', [
    ('experiments.train', '--multihost'), ('experiments.evaluate', '--multihost'),
    ('experiments.extract', '--output'), ('experiments.search', '--top_k')])
def test_help_lists_the_entry_points_flags(module, own_flag):
  text = _help(module)
  for flag in ('--config:', '--workdir:', own_flag):
    assert flag in text, (module, flag)


def test_benchmark_help_lists_suites_and_their_flags():
  text = _help('experiments.benchmark')
  for suite in ('pipeline', 'ranking', 'scaling', 'train_step', 'scan_compile', 'init_compile'):
    assert f'{suite}:' in text, suite
  for flag in ('--train_step_clips', '--pipeline_batches', '--scaling_devices',
               '--scan_compile_frames', '--init_compile_models', '--mars_info_dir'):
    assert flag in text, flag


def test_show_config_prints_every_field_with_value_and_comment(tmp_path):
  config = tmp_path / 'my_config.py'
  config.write_text(
      'import ml_collections\n'
      'from experiments.configs import synthetic_baseline\n\n'
      'def get_config():\n'
      '  c = synthetic_baseline.get_config()\n'
      '  c.learning_rate = 0.05  # my own rate\n'
      '  return c\n')
  out = subprocess.run(
      [sys.executable, '-m', 'experiments.show_config', f'--config={config}',
       '--config.clip_len=6'], capture_output=True, text=True, cwd=REPO, timeout=300,
      env={**os.environ, 'PYTHONPATH': REPO})
  assert out.returncode == 0, out.stderr[-2000:]
  lines = {l.split(' = ')[0]: l for l in out.stdout.splitlines()}
  assert lines['learning_rate'].split('#')[1].strip() == 'my own rate'  # the file's own comment
  assert '0.05' in lines['learning_rate']
  assert lines['clip_len'].startswith('clip_len = 6 ')  # the override, with the base's comment
  assert lines['clip_len'].endswith('# T frames per training clip')
  assert lines['eval.metric'].endswith("# euclidean | cosine")
  assert 'eval.rerank.k1' in lines and 'augment.flip' in lines  # nested leaves too
  # A loss term's option, commented in synthetic_baseline.py; a field declared in base.py.
  assert lines['losses.ce.label_smoothing'].endswith('# of the softmax cross-entropy (0 = plain '
                                                      'softmax)')
  assert lines['num_train_epochs'].startswith('num_train_epochs = None ')


def test_a_workdir_without_a_recorded_config_asks_for_config_in_one_line(tmp_path):
  out = subprocess.run([sys.executable, '-m', 'experiments.evaluate', f'--workdir={tmp_path}'],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
  assert out.returncode == 1 and 'Traceback' not in out.stderr, out.stderr[-2000:]
  assert out.stderr.strip().splitlines()[-1] == (
      'FATAL Flags parsing error: --config: required: a config file (e.g. '
      f'--config=experiments/configs/synthetic_baseline.py), since --workdir={tmp_path} holds '
      'no recorded config.json (no training run has started there).')
