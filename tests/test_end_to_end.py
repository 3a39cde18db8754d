"""End to end, as a user runs it: train + evaluate a tiny config, resume, re-evaluate
from the checkpoint, and the command line's one-line errors for bad input."""

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
  pictures = sorted(os.listdir(os.path.join(workdir, 'ranked_lists')))
  assert len(pictures) == 2 and pictures[0].startswith('query_0000_pid')
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
     'ilids_vid, ls_vid, mars, prid2011, synthetic_video_reid.'),
    (['--workdir={tmp}/missing/w'], 'the parent folder'),
    (['--config.lerning_rate=0.1', '--workdir={tmp}/w'],
     "--config.lerning_rate: no such config key (did you mean 'learning_rate'?)"),
])
def test_bad_input_gives_one_clear_line(tmp_path, tiny_data_dir, args, message):
  args = [a.format(tmp=tmp_path) for a in args] + [f'--config.data_dir={tiny_data_dir}']
  code, last_line = _run(*args)
  assert code != 0
  assert message in last_line
