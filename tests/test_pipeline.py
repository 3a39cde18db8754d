"""tf.data pipelines on the prepared tiny synthetic dataset: the batch contract
of docs/design.md ("Data contract"), determinism across restarts and process counts, and
eval batches that cover every frame exactly as the chunking rule says."""

import numpy as np
import pytest

from data_pipelines import datasets, pipeline


@pytest.fixture(scope='module')
def data(tiny_data_dir):
  from experiments.configs import tiny
  config = tiny.get_config()
  config.data_dir = tiny_data_dir
  return pipeline.ReIDData(config)


def test_train_batch_contract(data):
  c = data.config
  batch = next(data.train_batches(0))
  b = c.num_identities * c.num_instances
  assert batch['frames'].shape == (b, c.clip_len, c.height, c.width, 3)
  assert batch['frames'].dtype == np.uint8
  assert batch['pid'].dtype == np.int32 and batch['pid'].shape == (b,)
  labels = batch['pid'].reshape(c.num_identities, c.num_instances)
  assert len(set(labels[:, 0])) == c.num_identities and (labels == labels[:, :1]).all()
  assert labels.max() < data.num_train_ids


def test_train_batches_resume_identically(data):
  it = data.train_batches(0)
  batches = [next(it) for _ in range(3)]
  resumed = next(data.train_batches(2))
  for key in batches[2]:
    np.testing.assert_array_equal(resumed[key], batches[2][key])
  assert not np.array_equal(batches[0]['frames'], batches[1]['frames'])


def test_process_slices_make_the_global_batch(data):
  whole = next(data.train_batches(4))
  halves = [next(pipeline.ReIDData(data.config, i, 2).train_batches(4)) for i in range(2)]
  for key in whole:
    np.testing.assert_array_equal(np.concatenate([h[key] for h in halves]), whole[key])


def test_decoded_frames_are_the_stored_frames(data):
  """Without augmentation, a train clip holds exactly the planned stored frames."""
  config = data.config.copy_and_resolve_references()
  config.augment.flip, config.augment.pad, config.augment.random_erasing = False, 0, 0.0
  plain = pipeline.ReIDData(config)
  batch = next(plain.train_batches(1))
  plan = plain.plan(1)
  builder = datasets.get_builder('synthetic_video_reid', 'tiny', config.data_dir)
  stored = builder.as_data_source('train')  # fully decoded, by TFDS itself
  for row in (0, 3):
    t = plan.tracklets[row]
    example = stored[int(plain.index['train'].position[t])]
    assert example['tracklet'] == t
    expected = np.stack([example['frames'][i] for i in plan.frames[row]])
    np.testing.assert_array_equal(batch['frames'][row], expected)


def test_eval_batches_cover_every_frame_once_per_chunk(data):
  c = data.config
  index = data.index['gallery']
  seen = np.zeros(len(index), int)
  for batch in data.eval_batches('gallery'):
    assert batch['frames'].shape[0] == c.eval.batch_size
    assert not batch['mask'][~batch['mask']].any()
    seen += np.bincount(batch['tracklet'][batch['mask']], minlength=len(index))
    np.testing.assert_array_equal(batch['pid'][batch['mask']],
                                  index.pid[batch['tracklet'][batch['mask']]])
  expected_chunks = -(-index.num_frames // c.clip_len)  # ceil(n / T) chunks per tracklet
  np.testing.assert_array_equal(seen, expected_chunks)


def test_summary_and_subsets(data):
  rows = {r[0]: r[1:] for r in data.summary_rows()}
  assert set(rows) == {'train', 'query', 'gallery'}
  assert rows['train'][1] == len(data.index['train'])
  labels = data.split_labels('query')
  assert set(labels['subsets']) == {'gait_twins'}
  assert labels['subsets']['gait_twins'].dtype == bool


def test_unknown_dataset_and_config_name_choices(tiny_data_dir):
  with pytest.raises(ValueError, match="Unknown dataset 'marz'; valid choices: dukemtmc_video_reid, ilids_vid, ls_vid, mars"):
    datasets.get_builder('marz')
  with pytest.raises(ValueError, match="Unknown config 'huge' of dataset 'synthetic_video_reid'"):
    datasets.get_builder('synthetic_video_reid', 'huge', tiny_data_dir)


def test_frames_of_different_sizes_decode_each_resized_on_its_own():
  import tensorflow as tf
  rng = np.random.default_rng(0)
  frames = [rng.integers(0, 256, size, np.uint8) for size in ((64, 32, 3), (80, 40, 3),
                                                               (64, 32, 3))]
  encoded = tf.constant([tf.io.encode_png(f).numpy() for f in frames])
  clip = pipeline._decode_clip(encoded, 64, 32).numpy()  # (3, 64, 32, 3)
  assert clip.shape == (3, 64, 32, 3)
  np.testing.assert_array_equal(clip[0], frames[0])  # the right size: untouched
  np.testing.assert_array_equal(clip[2], frames[2])
  # The 80 x 40 frame: TF's antialiased bilinear resize of that frame alone, rounded.
  expected = tf.image.resize(frames[1][None].astype(np.float32), (64, 32), antialias=True)
  np.testing.assert_array_equal(clip[1], np.clip(np.round(expected[0].numpy()), 0, 255))
  stacked = pipeline.stack_frames([frames[1], frames[0]])  # pictures: the first one's size
  assert stacked.shape == (2, 80, 40, 3)
  np.testing.assert_array_equal(stacked[0], frames[1])


def test_twin_partners_are_the_generators_training_twins(data):
  from data_pipelines.synthetic_video_reid import splits  # pylint: disable=g-import-not-at-top
  pairs = splits.train_twin_pids(data.builder.builder_config.params)
  partners = splits.train_twin_partners(data.builder.builder_config.params, data.train_pid_values)
  assert pairs  # the tiny config has twins (twin_fraction 0.5)
  pid = data.train_pid_values
  got = {(int(pid[a]), int(pid[b])) for a, b in enumerate(partners) if b >= 0 and a < b}
  assert got == {tuple(sorted(p)) for p in pairs}
  # The twin flag the builder stores agrees: exactly the paired pids are twins.
  ix = data.index['train']
  assert set(ix.pid[ix.extras['gait_twin']].tolist()) == {x for p in pairs for x in p}
