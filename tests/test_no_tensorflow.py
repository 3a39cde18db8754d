"""The library trains and evaluates on a machine without TensorFlow.

`jaxreid/` never imports TensorFlow (docs/design.md, "Layout and the one-way
dependency"): on a JAX-only GPU machine a user feeds numpy batches. Each test
runs a fresh interpreter in which `import tensorflow` (and TFDS, CLU's writers)
fails, as it does where TensorFlow is not installed.
"""

import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Makes `import tensorflow` raise ImportError, as on a machine without it.
_NO_TF = textwrap.dedent("""
    import sys
    for name in ('tensorflow', 'tensorflow_datasets'):
      sys.modules[name] = None
""")


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
  script = tmp_path / 'script.py'
  script.write_text(_NO_TF + textwrap.dedent(code))
  env = {**os.environ, 'PYTHONPATH': REPO, 'JAX_PLATFORMS': 'cpu'}
  return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                        env=env, cwd=str(tmp_path), timeout=900)


def test_training_loop_imports_without_tensorflow(tmp_path):
  out = _run("""
      import jaxreid.training.loop
      import jaxreid.evaluation.retrieval
      assert not any(m.startswith('tensorflow') and sys.modules[m] is not None
                     for m in sys.modules), 'TensorFlow was imported'
      print('OK')
  """, tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().endswith('OK')


def test_trains_and_evaluates_from_numpy_batches_without_tensorflow(tmp_path):
  """A few steps of the tiny config from in-memory batches, then evaluation;
  TensorBoard events are still written (TensorBoard's TF-free writer)."""
  out = _run("""
      import json, os
      import numpy as np
      from experiments.configs import tiny
      from jaxreid.training import loop

      T, H, W, IDS = 2, 64, 32, 4  # the tiny config's frame size
      rng = np.random.default_rng(0)
      # One fixed colour per identity, so that training has something to learn.
      colours = rng.integers(0, 256, (IDS, 3))

      def clip(pid):
        noise = rng.integers(-20, 21, (T, H, W, 3))
        return np.clip(colours[pid] + noise, 0, 255).astype(np.uint8)

      class NumpyData:
        num_train_ids = IDS

        def summary_rows(self):
          return [('train', IDS, 8, 2)]

        def train_batches(self, start_step):
          while True:
            pid = np.repeat(np.arange(IDS, dtype=np.int32), 2)  # P=4 x K=2
            yield {'frames': np.stack([clip(p) for p in pid]), 'pid': pid,
                   'camid': np.tile(np.array([0, 1], np.int32), IDS),
                   'tracklet': np.arange(8, dtype=np.int32)}

        def split_labels(self, split):
          pid = np.arange(IDS, dtype=np.int32)
          return {'pid': pid, 'camid': np.full(IDS, 0 if split == 'query' else 1, np.int32)}

        def eval_batches(self, split):
          pid = np.arange(IDS, dtype=np.int32)
          yield {'frames': np.stack([clip(p) for p in pid] + [clip(0)] * 4),
                 'tracklet': np.concatenate([pid, np.zeros(4, np.int32)]),
                 'mask': np.arange(8) < IDS}

      config = tiny.get_config()
      config.height, config.width, config.clip_len = H, W, T
      config.eval.batch_size = 8
      config.num_train_steps, config.log_every_steps, config.checkpoint_every_steps = 4, 2, 4
      results = loop.train_and_evaluate(config, 'run', NumpyData())
      assert results['step'] == 4 and results['num_query'] == IDS, results
      assert os.path.exists(os.path.join('run', 'eval_results.json'))
      assert any(f.startswith('events.out.tfevents') for f in os.listdir('run')), os.listdir('run')
      assert not any(m.startswith('tensorflow') and sys.modules[m] is not None
                     for m in sys.modules), 'TensorFlow was imported'
      print('OK', results['rank1'])
  """, tmp_path)
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'OK' in out.stdout
