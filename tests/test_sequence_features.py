"""Whole-sequence eval features (eval.sampler 'sequence'): the pipeline's
chunks and their 'real_frames', and their assembly into one sequence per
tracklet, checked with frames whose value is their index (hand-computed
sums), across batch boundaries and padded lengths."""

import io

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from data_pipelines import pipeline, sampling
from experiments import evaluate, family_configs, train, validate
from experiments.configs import tiny
from jaxreid import inference, sharding
from jaxreid.evaluation import sequence_features

NUM_FRAMES = [1, 3, 4, 9, 17, 5]  # 17 pads to 32 (4 * 2^3); 13 clips: tracklet 4 spans two batches
CHUNK = 4


def _value(tracklet, frame):
  return 10 * tracklet + frame


def _png(value):
  buffer = io.BytesIO()
  Image.fromarray(np.full((4, 2, 3), value, np.uint8)).save(buffer, 'PNG')
  return buffer.getvalue()


def _batches(sampler='sequence'):
  config = ml_collections.ConfigDict(dict(
      height=4, width=2, clip_len=CHUNK, use_flow=False,
      eval=dict(clip_len=0, sampler=sampler, max_chunks=0,
                batch_size=8)))  # a multiple of the tests' 8 host devices
  frame_bytes = lambda t, picks: [_png(_value(t, int(i))) for i in picks]
  n = len(NUM_FRAMES)
  return list(pipeline.eval_batches(config, np.array(NUM_FRAMES), frame_bytes,
                                    np.arange(n), np.zeros(n, np.int64)))


def _frames_fn(state, inputs, *extras):
  del state
  return ({'v': inputs['frames'][:, :, 0, 0, :1].astype(jnp.float32)}, *extras)  # (B, T, 1)


def _sequence_fn(state, features, frame_mask):
  """[sum, count, first, last] of each tracklet's frame values."""
  del state
  v = features['v'][..., 0]  # (R, L)
  count = frame_mask.sum(axis=1)
  last = jnp.take_along_axis(v, jnp.maximum(count - 1, 0)[:, None], axis=1)[:, 0]
  return jnp.stack([jnp.where(frame_mask, v, 0).sum(axis=1), count, v[:, 0], last], axis=1)


def test_sequence_batches_mark_the_real_frames():
  batches = _batches()
  rows = [(int(t), int(r)) for b in batches
          for t, r, m in zip(b['tracklet'], b['real_frames'], b['mask']) if m]
  expected = [(t, min(CHUNK, n - s)) for t, n in enumerate(NUM_FRAMES) for s in range(0, n, CHUNK)]
  assert rows == expected
  assert 'real_frames' not in _batches('all')[0]  # only the sequence sampler adds it
  assert sampling.eval_chunks(9, CHUNK, 'sequence').tolist() == \
      sampling.eval_chunks(9, CHUNK, 'all').tolist()


def test_each_tracklet_is_one_sequence_of_its_own_frames():
  embedder = inference.SequenceEmbedder(jax.jit(_frames_fn), jax.jit(_sequence_fn))
  feats = sequence_features.extract_sequence_features(
      embedder, None, _batches(), len(NUM_FRAMES), sharding.make_mesh(), 'test')
  expected = [[sum(_value(t, i) for i in range(n)), n, _value(t, 0), _value(t, n - 1)]
              for t, n in enumerate(NUM_FRAMES)]
  np.testing.assert_array_equal(feats, np.array(expected, np.float32))


def test_whole_sequence_eval_needs_a_sequence_model_and_no_flip():
  config = tiny.get_config()
  config.eval.sampler, config.eval.flip = 'sequence', True  # tiny: temporal_pooling
  with pytest.raises(validate.ConfigError) as error:
    validate.validate_config(config, uses_dataset=False)
  assert error.value.problems == [
      "--config.eval.sampler='sequence': model 'temporal_pooling' has no sequence part to run "
      'over a whole tracklet (models that do: crf, mstn, rru); use eval.sampler \'all\'.',
      "--config.eval.flip=True: flip test-time augmentation is not available with "
      "--config.eval.sampler='sequence'; set one of them off."]


def test_padded_lengths():
  assert [sequence_features.padded_length(n, 8) for n in (1, 8, 9, 16, 17, 100)] == \
      [8, 8, 16, 16, 32, 128]


@pytest.mark.slow
def test_train_then_evaluate_whole_sequences(tmp_path, tiny_data_dir):
  """A tiny CRF (optical flow in the batches) trained, then evaluated on whole
  sequences from its checkpoint, as `experiments.evaluate
  --config.eval.sampler=sequence` does."""
  config = family_configs.tiny(family_configs.CONFIGS['crf'](), tiny_data_dir)
  workdir = str(tmp_path / 'crf')
  chunked = train.train_and_evaluate(config, workdir)
  config.eval.sampler = 'sequence'
  whole = evaluate.evaluate(config, workdir)
  assert 0.0 <= whole['rank1'] <= 1.0 and whole['num_query'] == chunked['num_query']
  assert whole['mAP'] != chunked['mAP']  # the recurrence no longer restarts every T frames
