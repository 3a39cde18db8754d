"""The workdir's record: config.json, log.txt and eval_history.jsonl."""

import json
import os

import ml_collections
from absl import logging

from jaxreid.training import run_record


def _config(lr=1e-3):
  return ml_collections.ConfigDict({'learning_rate': lr, 'model': {'backbone': 'resnet18'},
                                    'decay_steps': (3, 4)})


def test_config_json_holds_the_resolved_config_and_the_code_version(tmp_path):
  path = run_record.write_config(str(tmp_path), _config())
  with open(path) as f:
    record = json.load(f)
  assert record['config'] == {'learning_rate': 1e-3, 'model': {'backbone': 'resnet18'},
                              'decay_steps': [3, 4]}
  assert record['code']['jaxreid_version']  # installed with pip install -e .
  commit = record['code']['git_commit']
  assert commit is None or len(commit) == 40
  assert run_record.read_config_record(str(tmp_path)) == record


def test_a_resumed_run_with_other_settings_keeps_the_old_record(tmp_path):
  run_record.write_config(str(tmp_path), _config(1e-3))
  run_record.write_config(str(tmp_path), _config(1e-3))  # same: nothing kept aside
  assert sorted(os.listdir(tmp_path)) == ['config.json']
  run_record.write_config(str(tmp_path), _config(5e-4))
  kept = [n for n in os.listdir(tmp_path) if n != 'config.json']
  assert len(kept) == 1 and kept[0].startswith('config.') and kept[0].endswith('Z.json')
  with open(tmp_path / kept[0]) as f:
    assert json.load(f)['config']['learning_rate'] == 1e-3
  assert run_record.read_config_record(str(tmp_path))['config']['learning_rate'] == 5e-4


def test_log_file_receives_absl_lines_and_appends(tmp_path):
  logging.set_verbosity(logging.INFO)  # as the entry points' absl app sets it
  for text in ('first run', 'second run'):
    with run_record.LogFile(str(tmp_path)):
      logging.info('hello from the %s', text)
  logging.info('not recorded')
  with open(tmp_path / 'log.txt') as f:
    lines = f.read().splitlines()
  assert [line.split('] ', 1)[1] for line in lines] == ['hello from the first run',
                                                        'hello from the second run']
  assert lines[0].startswith('I')  # absl's format: severity, date, time, ...


def test_eval_history_appends_one_line_per_evaluation(tmp_path):
  config = ml_collections.ConfigDict({
      'dataset': 'synthetic_video_reid', 'dataset_config': 'tiny',
      'eval': {'protocol': 'torchreid', 'metric': 'cosine', 'sampler': 'all', 'clip_len': 0,
               'max_chunks': 0, 'flip': True, 'use_rerank': False,
               'rerank': {'k1': 20, 'k2': 6, 'lambda_value': 0.3},
               'normalize_features': False, 'batch_size': 16, 'num_visualize': 0}})
  for step, rank1 in ((3, 0.25), (6, 0.5)):
    run_record.append_eval_history(
        str(tmp_path), run_record.eval_record(config, None, step, {'rank1': rank1}))
  history = run_record.read_eval_history(str(tmp_path))
  assert [(h['step'], h['results']['rank1']) for h in history] == [(3, 0.25), (6, 0.5)]
  assert history[0]['dataset_config'] == 'tiny'
  assert history[0]['settings'] == {  # batch size and pictures do not change the numbers
      'protocol': 'torchreid', 'metric': 'cosine', 'sampler': 'all', 'clip_len': 0,
      'max_chunks': 0, 'flip': True, 'use_rerank': False,
      'rerank': {'k1': 20, 'k2': 6, 'lambda_value': 0.3}, 'normalize_features': False}


def test_tensorflow_free_writer_writes_png_images(tmp_path):
  """Ranked-list pictures reach TensorBoard without TensorFlow (writers.EventFileWriter)."""
  import io  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_file_loader  # pylint: disable=g-import-not-at-top
  from jaxreid.training import writers  # pylint: disable=g-import-not-at-top
  image = np.zeros((1, 6, 4, 3), np.uint8)
  image[0, 2, 1] = (255, 0, 0)
  writer = writers.EventFileWriter(str(tmp_path))
  writer.write_images(7, {'ranked_lists/query_0003': image})
  writer.close()
  (events,) = os.listdir(tmp_path)
  values = [(e.step, v) for e in event_file_loader.LegacyEventFileLoader(str(tmp_path / events)).Load()
            for v in e.summary.value]
  (step, value), = values
  assert step == 7 and value.tag == 'ranked_lists/query_0003'
  np.testing.assert_array_equal(
      np.asarray(Image.open(io.BytesIO(value.image.encoded_image_string))), image[0])


def test_a_record_lacking_fields_reads_back_with_base_defaults(tmp_path, caplog):
  """An older version's config.json (fields added since missing) reads back with
  base.py's defaults for those fields, every recorded value kept, and a warning
  naming the missing fields; a complete record reads back unchanged."""
  from experiments.configs import base, from_workdir, mstn_synthetic  # pylint: disable=g-import-not-at-top
  config = mstn_synthetic.get_config('two_stage')
  config.learning_rate, config.eval.batch_size = 5e-4, 16
  run_record.write_config(str(tmp_path), config)
  assert from_workdir.get_config(str(tmp_path)).to_dict() == config.to_dict()
  with open(tmp_path / 'config.json') as f:
    record = json.load(f)
  del record['config']['eval']['flip'], record['config']['best_checkpoint_metric']
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump(record, f)
  read = from_workdir.get_config(str(tmp_path))
  defaults = base.get_config()
  assert read.eval.flip == defaults.eval.flip
  assert read.best_checkpoint_metric == defaults.best_checkpoint_metric
  read.eval.flip, read.best_checkpoint_metric = config.eval.flip, config.best_checkpoint_metric
  assert read.to_dict() == config.to_dict()
  assert 'lacks best_checkpoint_metric, eval.flip' in caplog.text
