"""The seed table's numbers and verdicts, on hand-computed cases (no training)."""

from absl import app
import pytest

from experiments import seed_table


def _result(rank1, twins):
  return {'rank1': rank1, 'mAP': rank1 - 0.01, 'subsets': {'gait_twins': {'rank1': twins}}}


def test_table_means_stds_and_paired_verdicts():
  rows = {'pooling': [], 'better': [], 'noisy': []}
  results = {
      'pooling': {'0': _result(0.88, 0.60), '1': _result(0.89, 0.62), '2': _result(0.90, 0.64)},
      # gait-twin differences 10, 11, 9: mean 10.0, std 1.0 -> beyond 2 std
      'better': {'0': _result(0.88, 0.70), '1': _result(0.89, 0.73), '2': _result(0.90, 0.73)},
      # differences 1, -2, 6: mean 1.7, std 4.0 -> within
      'noisy': {'0': _result(0.88, 0.61), '1': _result(0.89, 0.60), '2': _result(0.90, 0.70)},
  }
  markdown, numbers = seed_table.table(rows, results, ['0', '1', '2'])
  lines = markdown.splitlines()
  assert lines[2] == '| pooling | 0,1,2 | 89.0 +- 1.0 | 88.0 +- 1.0 | 62.0 +- 2.0 |  |  |'
  assert lines[3].endswith('| 72.0 +- 1.7 | 10.0 +- 1.0 | yes |')
  assert lines[4].endswith('| 63.7 +- 5.5 | 1.7 +- 4.0 | no |')
  assert numbers['better']['gait_twin_difference'] == pytest.approx([10.0, 11.0, 9.0])


def test_missing_seeds_are_listed_not_invented():
  results = {'pooling': {'0': _result(0.9, 0.6)}, 'other': {}}
  markdown, _ = seed_table.table({'pooling': [], 'other': []}, results, ['0', '1'])
  assert '| pooling | 0 | 90.0 (n = 1) |' in markdown
  assert '| other | none | n/a | n/a | n/a |  |  |' in markdown


def test_one_paired_seed_shows_its_difference_without_a_verdict():
  results = {'pooling': {'0': _result(0.9, 0.60), '1': _result(0.9, 0.62)},
             'other': {'1': _result(0.8, 0.55)}}
  markdown, _ = seed_table.table({'pooling': [], 'other': []}, results, ['0', '1'])
  assert markdown.splitlines()[3].endswith('| 55.0 (n = 1) | -7.0 (n = 1) | one seed |')


def test_row_syntax():
  assert seed_table.parse_row('m3d=experiments/configs/m3d_synthetic.py:m3d --config.clip_len=8') \
      == ('m3d', ['--config=experiments/configs/m3d_synthetic.py:m3d', '--config.clip_len=8'])
  for bad in ('experiments/configs/tiny.py', 'x=', 'x=--config.seed=1'):
    with pytest.raises(app.UsageError, match='NAME=CONFIG'):
      seed_table.parse_row(bad)


def test_a_changed_row_does_not_reuse_an_old_run(tmp_path):
  flags = ['--config=experiments/configs/tiny.py']
  workdir = tmp_path / 'a' / 'seed_0'
  workdir.mkdir(parents=True)
  (workdir / 'seed_table_row.json').write_text('["--config=experiments/configs/tiny.py"]')
  seed_table.check_row('a', flags, '0', str(workdir))  # the same flags: reused
  with pytest.raises(SystemExit, match='trained for row .a. as --config=experiments/configs/'
                     'tiny.py, not .* --config.learning_rate=0.1') as e:
    seed_table.check_row('a', flags + ['--config.learning_rate=0.1'], '0', str(workdir))
  assert '\n' not in str(e.value)


def test_records_keep_metrics_and_provenance_and_refuse_changed_rows(tmp_path):
  flags = ['--config=experiments/configs/tiny.py']
  results = {'rank1': 0.9, 'rank5': 0.95, 'mAP': 0.8, 'mINP': 0.5, 'step': 500,
             'per_query': [1, 2, 3],
             'subsets': {'gait_twins': {'rank1': 0.6, 'mAP': 0.55, 'queries': [4, 5]}}}
  record = seed_table.make_record(flags, '1', results, 'abc1234', '2026-12-02', 61.27, 'cpu')
  assert record == {
      'train_flags': flags, 'seed': '1', 'commit': 'abc1234', 'date': '2026-12-02',
      'machine': 'cpu', 'wall_s': 61.3, 'results': {'rank1': 0.9, 'rank5': 0.95, 'mAP': 0.8, 'mINP': 0.5,
                                  'step': 500, 'subsets': {'gait_twins': {'rank1': 0.6,
                                                                          'mAP': 0.55}}}}
  assert seed_table.METRICS[2][1](record['results']) == 0.6  # the table reads records as is
  seed_table._write_json(str(tmp_path / 'a' / 'seed_1.json'), record)
  assert seed_table.read_record(str(tmp_path), 'a', flags, '1') == record
  assert seed_table.read_record(str(tmp_path), 'a', flags, '2') is None
  assert seed_table.read_record(None, 'a', flags, '1') is None
  with pytest.raises(SystemExit, match=r'seed_1.json records row .a. as .*tiny.py, not') as e:
    seed_table.read_record(str(tmp_path), 'a', flags + ['--config.seed=3'], '1')
  assert '\n' not in str(e.value)
