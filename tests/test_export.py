"""experiments.export: the SavedModel (TensorFlow) and the ONNX file (ONNX
Runtime) embed real clips of the tiny dataset as the trained Flax model does,
at two batch sizes; the layers rewritten for jax2onnx compute what lax's do;
bad workdirs and outputs get one line."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax import lax

from data_pipelines import datasets
from experiments import export

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# float32 throughout; the artefacts' kernels (the SavedModel's XLA program,
# ONNX Runtime's convolutions and reductions) sum in other orders than the
# jitted Flax reference. Measured on these clips, whose embedding values reach
# 0.31: max abs difference 0.9e-7 (SavedModel) and 2.8e-7 (ONNX), on a 2-core
# Xeon with jax 0.10.2 and onnxruntime 1.32.0. The tolerance is absolute, about
# 7x the worst: relative differences say little on elements near zero (an
# eager reference showed up to 1.3e-4 there).
ATOL = 2e-6


@pytest.fixture(scope='module')
def exported(tiny_data_dir, tmp_path_factory):
  """A tiny run trained for 6 steps, exported: (config, workdir, DIR, info)."""
  from experiments import train  # pylint: disable=g-import-not-at-top
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  config = tiny.get_config()
  config.data_dir = tiny_data_dir
  root = tmp_path_factory.mktemp('export')
  workdir, output = str(root / 'run'), str(root / 'exported')
  train.train_and_evaluate(config, workdir)
  info = export.export(config, workdir, output)
  return config, workdir, output, info


def _real_clips(config, count: int) -> np.ndarray:
  """The first T frames of `count` gallery tracklets: (count, T, H, W, 3) uint8."""
  builder = datasets.get_builder('synthetic_video_reid', 'tiny', config.data_dir)
  source = builder.as_data_source('gallery')
  clips = np.stack([np.stack(source[i]['frames'][:config.clip_len]) for i in range(count)])
  assert clips.shape == (count, config.clip_len, config.height, config.width, 3)
  return clips


@pytest.fixture(scope='module')
def embedders(exported):
  """(Flax reference, SavedModel, ONNX): each clips (B, T, H, W, 3) uint8 ->
  embeddings (B, D) as numpy, each artefact loaded once."""
  import jax  # pylint: disable=g-import-not-at-top
  import onnxruntime  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  config, workdir, output, _ = exported
  # The reference: the checkpoint's Flax model, applied in inference mode.
  api = export._inference_api()  # pylint: disable=protected-access
  state, _ = api.restore(config, workdir, api.make_mesh())
  variables = {'params': state.params}
  if state.batch_stats:
    variables['batch_stats'] = state.batch_stats
  apply = jax.jit(lambda clips: state.apply_fn(variables, clips, train=False)['embedding'])
  serving = tf.saved_model.load(os.path.join(output, 'saved_model')).signatures['serving_default']
  session = onnxruntime.InferenceSession(os.path.join(output, 'model.onnx'))
  return (lambda clips: np.asarray(apply(clips)),
          lambda clips: serving(frames=tf.constant(clips))['embedding'].numpy(),
          lambda clips: session.run(['embedding'], {'frames': clips})[0])


@pytest.mark.slow
@pytest.mark.parametrize('batch', [2, 5])
def test_saved_model_and_onnx_embed_like_the_flax_model(exported, embedders, batch):
  flax_embed, saved_model_embed, onnx_embed = embedders
  clips = _real_clips(exported[0], batch)
  expected = flax_embed(clips)
  assert expected.shape == (batch, 64) and expected.dtype == np.float32
  for embed in (saved_model_embed, onnx_embed):
    got = embed(clips)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)


@pytest.mark.slow
def test_export_info_describes_the_artefacts(exported):
  config, workdir, output, info = exported
  assert sorted(os.listdir(output)) == ['export_info.json', 'model.onnx', 'saved_model']
  with open(os.path.join(output, 'export_info.json')) as f:
    assert json.load(f) == info
  assert info['model_name'] == config.model_name == 'temporal_pooling'
  assert info['inputs'] == {'frames': {'shape': [None, 4, 64, 32, 3], 'dtype': 'uint8'}}
  assert info['outputs'] == {'embedding': {'shape': [None, 64], 'dtype': 'float32'}}
  assert info['embedding_size'] == 64
  assert info['checkpoint_step'] == config.num_train_steps == 6
  assert info['checkpoint_workdir'] == os.path.realpath(workdir)
  assert len(info['checkpoint_fingerprint']) == 16
  assert info['jaxreid_version'] == '0.1.0'


def _layers_rewritten_for_onnx(x):
  """(B, T, H, W, 4) -> (B T', H', W', 5): the three kinds of layers the
  exporter rewrites for jax2onnx (docs/design.md, "Export"): a 3D convolution
  (strided and padded in time), a padding with a crop, a 2D max pool."""
  kernel = np.random.RandomState(1).randn(3, 3, 3, 4, 5).astype(np.float32)  # (KD, KH, KW, I, O)
  y = lax.conv_general_dilated(x, kernel, (2, 1, 1), ((1, 1), (1, 1), (0, 0)),
                               dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))
  y = lax.pad(y, np.float32(0.5), ((0, 0, 0), (1, -1, 0), (2, 0, 0), (0, 1, 0), (0, 0, 0)))
  y = y.reshape(-1, *y.shape[2:])  # time folded into the batch
  return lax.reduce_window(y, -np.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                           ((0, 0), (1, 1), (1, 1), (0, 0)))


def test_layers_rewritten_for_onnx_compute_what_lax_computes(tmp_path):
  import onnxruntime  # pylint: disable=g-import-not-at-top
  rewrite = export._eval_for_onnx  # pylint: disable=protected-access
  path = str(tmp_path / 'layers.onnx')
  export._write_onnx(export._import_jax2onnx(), _layers_rewritten_for_onnx,  # pylint: disable=protected-access
                     {'frames': np.zeros((1, 5, 8, 6, 4), np.float32)}, path)
  session = onnxruntime.InferenceSession(path)
  for batch in (1, 3):
    x = np.random.RandomState(batch).randn(batch, 5, 8, 6, 4).astype(np.float32)
    expected = np.asarray(_layers_rewritten_for_onnx(x))  # lax's own layers
    closed = jax.make_jaxpr(_layers_rewritten_for_onnx)(x)
    rewritten = jax.make_jaxpr(lambda x: rewrite(closed.jaxpr, closed.consts, x))(x)  # pylint: disable=cell-var-from-loop
    shapes = {(e.primitive.name, e.invars[0].aval.ndim) for e in rewritten.eqns}
    assert all(name != 'pad' for name, _ in shapes), shapes
    assert ('conv_general_dilated', 4) in shapes and ('conv_general_dilated', 5) not in shapes
    assert ('reduce_window_max', 3) in shapes, shapes  # N*C, H, W
    got_jax, = rewrite(closed.jaxpr, closed.consts, x)
    got_onnx, = session.run(['embedding'], {'frames': x})
    # The split 3D convolution sums its 108 products per output in another
    # order; values reach 29 here, and both results were at most 8.6e-6 from
    # lax's (float32). The tolerance is about 10x that.
    for got in (np.asarray(got_jax), got_onnx):
      assert got.shape == expected.shape == (batch * 3, 5, 3, 5)
      np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_without_config_the_recorded_one_is_used_or_asked_for(tmp_path):
  from experiments.configs import tiny  # pylint: disable=g-import-not-at-top
  from jaxreid.training import run_record  # pylint: disable=g-import-not-at-top
  os.makedirs(tmp_path / 'checkpoints' / '6')  # what the check looks for: a step folder
  with pytest.raises(ValueError, match='pass --config'):
    export.config_and_workdir(None, str(tmp_path))
  config = tiny.get_config()
  run_record.write_config(str(tmp_path), config)
  recorded, workdir = export.config_and_workdir(None, str(tmp_path))
  assert workdir == str(tmp_path)
  assert recorded.model_name == config.model_name
  assert recorded.model.to_dict() == config.model.to_dict()
  assert (recorded.clip_len, recorded.height, recorded.width) == (4, 64, 32)


def test_output_must_be_a_new_or_empty_folder(tmp_path):
  (tmp_path / 'full').mkdir()
  (tmp_path / 'full' / 'old.txt').write_text('x')
  with pytest.raises(ValueError, match='is not empty'):
    export._check_output(str(tmp_path / 'full'))  # pylint: disable=protected-access
  with pytest.raises(FileNotFoundError, match='does not exist'):
    export._check_output(str(tmp_path / 'no' / 'such'))  # pylint: disable=protected-access


def test_workdir_without_checkpoint_gives_one_line(tmp_path):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
  proc = subprocess.run(
      [sys.executable, '-m', 'experiments.export', '--config=experiments/configs/tiny.py',
       f'--workdir={tmp_path}', f'--output={tmp_path / "out"}'],
      cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
  assert proc.returncode == 2, proc.stderr
  assert 'Traceback' not in proc.stderr
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error:')]
  assert errors == [f'error: --workdir={tmp_path}: no checkpoint in {tmp_path}/checkpoints; '
                    f'train first with python -m experiments.train --workdir={tmp_path} ...']
  assert not os.path.exists(tmp_path / 'out')
