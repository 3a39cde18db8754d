"""End to end, as a user runs it: train + evaluate a tiny config, resume, re-evaluate
from the checkpoint, and the command line's one-line errors for bad input."""

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from data_pipelines import datasets
from experiments import evaluate, extract, search, train
from jaxreid.models import MODELS
from jaxreid.training import run_record

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

  # Ranked-list pictures, flip test-time augmentation and re-ranking, from the checkpoint.
  tiny_config.eval.num_visualize, tiny_config.eval.flip, tiny_config.eval.use_rerank = 2, True, True
  reranked = evaluate.evaluate(tiny_config, workdir)
  assert reranked['rerank'] == {'k1': 20, 'k2': 6, 'lambda_value': 0.3}
  # The two worst queries by (re-ranked) AP, as saved per query with the evaluation.
  ap = [np.inf if a is None else a for a in reranked['per_query']['ap']]
  worst = sorted(np.argsort(ap, kind='stable')[:2])
  pictures = sorted(os.listdir(os.path.join(workdir, 'ranked_lists', '6')))
  assert [p.split('_pid')[0] for p in pictures] == [f'query_{i:04d}' for i in worst]
  assert len(reranked['per_query']['first_match_rank']) == reranked['num_query']
  tiny_config.eval.num_visualize, tiny_config.eval.flip, tiny_config.eval.use_rerank = 0, False, False

  # Export the gallery, then search it with one of its tracklets saved as a
  # folder of PNG frames: that tracklet must come first, at distance ~0.
  out = str(tmp_path / 'gallery.npz')
  arrays = extract.extract(tiny_config, workdir, out, splits=['gallery'])
  with np.load(out) as saved:
    assert saved['features'].shape == arrays['features'].shape
    assert saved['features'].shape[0] == saved['pid'].shape[0] == results['num_gallery'] + \
        int((saved['pid'] == -1).sum())
  builder = datasets.get_builder('synthetic_video_reid', 'tiny', tiny_config.data_dir)
  source = builder.as_data_source('gallery')
  example = next(source[i] for i in range(len(source)) if source[i]['tracklet'] == 5)
  folder = tmp_path / 'my_tracklet'
  folder.mkdir()
  for i, frame in enumerate(example['frames']):
    Image.fromarray(frame).save(folder / f'frame_{i}.png')
  (name, rows), = search.search(tiny_config, workdir, out, str(folder), top_k=3)
  assert name == str(folder)
  assert rows[0][1] == "gallery/5", rows
  assert rows[0][4] < 1e-3 * rows[1][4], rows  # same frames: distance ~0

  # More steps in the same workdir resume from step 6 instead of starting over.
  tiny_config.num_train_steps = 8
  resumed = train.train_and_evaluate(tiny_config, workdir)
  assert resumed['step'] == 8


def test_workdir_record_best_checkpoint_and_evaluating_a_workdir_alone(tmp_path, tiny_config):
  """config.json, eval_history.jsonl, log.txt; the best checkpoint by mAP (Orbax
  keeps it); --step=best|N; evaluate with --workdir alone, overrides on top;
  and the checkpoint evaluated on another dataset (cross-dataset)."""
  workdir = str(tmp_path / 'run')
  tiny_config.eval_every_steps, tiny_config.best_checkpoint_metric = 3, 'mAP'
  train.train_and_evaluate(tiny_config, workdir)
  record = run_record.read_config_record(workdir)
  assert record['config']['best_checkpoint_metric'] == 'mAP'
  assert record['config']['data_dir'] == tiny_config.data_dir and record['code']['jaxreid_version']
  history = run_record.read_eval_history(workdir)
  assert [h['step'] for h in history] == [3, 6]
  assert history[0]['dataset_config'] == 'tiny' and history[0]['settings']['protocol'] == 'torchreid'
  (kept,) = os.listdir(os.path.join(workdir, 'checkpoints_best'))
  maps = {h['step']: h['results']['mAP'] for h in history}
  assert maps[int(kept)] == max(maps.values())
  # Each checkpoint reproduces the numbers recorded when it was evaluated.
  assert evaluate.evaluate(tiny_config, workdir, step='best')['mAP'] == pytest.approx(
      maps[int(kept)], abs=1e-6)
  assert evaluate.evaluate(tiny_config, workdir, step='3')['mAP'] == pytest.approx(maps[3],
                                                                                 abs=1e-6)
  # --workdir alone: the recorded config, with an override on top; log.txt gets the log.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-m', 'experiments.evaluate', f'--workdir={workdir}',
                         '--config.eval.metric=cosine'], cwd=REPO, capture_output=True,
                        text=True, env=env, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  last = run_record.read_eval_history(workdir)[-1]
  assert last['settings']['metric'] == 'cosine' and last['step'] == 6
  with open(os.path.join(workdir, 'log.txt')) as f:
    assert 'Evaluation at step 6' in f.read()
  proc = subprocess.run([sys.executable, '-m', 'experiments.evaluate', f'--workdir={workdir}',
                         '--step=5'], cwd=REPO, capture_output=True, text=True, env=env,
                        timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines()[-1].endswith(
      'holds the steps 3, 6 (config.keep_checkpoints keeps the newest N).')
  # Cross-dataset: the synthetic checkpoint on a tracklet_folders tree.
  tree = tmp_path / 'tree'
  for split, pids in (('train', (0,)), ('query', (1, 2)), ('gallery', (1, 2, 3))):
    for pid in pids:
      for cam in ('c0', 'c1') if split != 'query' else ('c0',):
        folder = tree / split / f'p{pid}' / cam / 't'
        folder.mkdir(parents=True)
        for i in range(3):
          Image.fromarray(np.full((16, 8, 3), 40 * pid + i, np.uint8)).save(folder / f'{i}.png')
  other = copy.deepcopy(tiny_config)
  other.dataset, other.dataset_config, other.manual_dir = 'tracklet_folders', '', str(tree)
  other.data_dir = str(tmp_path / 'tfds')  # not the session's shared tiny data_dir
  crossed = evaluate.evaluate(other, workdir)
  assert crossed['num_query'] == 2 and run_record.read_eval_history(workdir)[-1]['dataset'] == \
      'tracklet_folders'


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run([sys.executable, '-m', 'experiments.train',
                         '--config=experiments/configs/tiny.py', *args],
                        cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  return proc.returncode, proc.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize('args,message', [
    (['--config.model_name=resnet', '--workdir={tmp}/w'],
     f"error: --config.model_name='resnet': unknown model; valid choices: "
     f"{', '.join(sorted(MODELS))}."),
    (['--config.dataset=mars2', '--workdir={tmp}/w'],
     "error: --config.dataset='mars2': unknown dataset; valid choices: dukemtmc_video_reid, "
     'ilids_vid, ls_vid, mars, prid2011, synthetic_video_reid, tracklet_folders.'),
    (['--workdir={tmp}/missing/w'], 'the parent folder'),
    (['--config.lerning_rate=0.1', '--workdir={tmp}/w'],
     "--config.lerning_rate: no such config key (did you mean 'learning_rate'?)"),
])
def test_bad_input_gives_one_clear_line(tmp_path, tiny_data_dir, args, message):
  args = [a.format(tmp=tmp_path) for a in args] + [f'--config.data_dir={tiny_data_dir}']
  code, last_line = _run(*args)
  assert code != 0
  assert message in last_line
