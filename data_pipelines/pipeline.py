"""Train and eval input pipelines over a prepared TFDS dataset.

Datasets are prepared in the ArrayRecord format and read by random access, so
a PK batch can pick any tracklets, and only the sampled frames of each are
decoded. Start-up reads each split's per-tracklet index (``record_index``), no
frame bytes. Training is tf.data from the step number on: a parallel map plans
each step and reads, parses and picks its clips' frames (``train_step_clips``),
a second one decodes, resizes and augments them; both keep their order.

Every builder stores the same features (see ``datasets.py``): 'frames' (a
sequence of encoded images), 'pid', 'camid', 'tracklet', 'num_frames'; extra
per-tracklet flags (e.g. the synthetic 'gait_twin') become query subsets.

Batches are dicts of numpy arrays (docs/design.md, "Data contract"):
  train: frames (B, T, H, W, 3) uint8, pid (B,) int32 labels 0..num_ids-1,
         camid (B,), tracklet (B,);
  eval:  frames, pid, camid, tracklet, mask (B,) bool (False on padding rows).
With ``config.use_flow`` both also carry flow (B, T, H, W, 2) float32: the
optical flow of every clip frame to the next stored frame of its tracklet
(``optical_flow.py``), computed in tf.data on the decoded, resized, clean
frames, then flipped and cropped with them. ``config.batch_sampler = 'pairs'``
makes train batches siamese pairs (rows 2i, 2i + 1; ``sampling.plan_pair_batch``)
instead of P x K.
"""

from typing import Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from data_pipelines import augment, datasets, decoding, optical_flow, record_index, sampling


def _picked_frames(record: bytes, frame_indices) -> list:
  """The encoded frames ``frame_indices`` of one serialized tracklet record."""
  values = tf.train.Example.FromString(record).features.feature['frames'].bytes_list.value
  return [values[int(i)] for i in frame_indices]


def _frame_bytes(source, position: int, frame_indices) -> list:
  return _picked_frames(source[int(position)], frame_indices)


# JPEG with the accurate IDCT, else PNG/BMP/GIF: the decoder that preparation and
# the folder reader check every frame with (decoding.py), so what passed those
# checks decodes here.
_decode_image = decoding.decode_image


def _decode_clip(encoded, height: int, width: int):
  """(T,) encoded images -> (T, height, width, 3) uint8. Each frame is resized
  on its own (the same bilinear resize as a whole clip's), so a tracklet whose
  crops were saved at different sizes decodes too."""
  decode = lambda e: augment.resize_clip(_decode_image(e)[None], height, width)[0]
  return tf.map_fn(decode, encoded,
                   fn_output_signature=tf.TensorSpec([height, width, 3], tf.uint8))


def stack_frames(frames) -> np.ndarray:
  """(H_i, W_i, 3) uint8 frames -> (n, H, W, 3), the size of the first; frames
  of another size are resized to it (for pictures of tracklets whose crops
  differ in size)."""
  h, w = frames[0].shape[:2]
  return np.stack([f if f.shape[:2] == (h, w) else
                   augment.resize_clip(f[None], h, w)[0].numpy() for f in frames])


def _flow_sources(num_frames: int, frame_indices):
  """The stored frames a clip and its flow need, each once: (sorted frame
  indices (U,), (3, T) int32 positions in them of the clip's frames and of
  each frame's flow pair, see ``optical_flow.partner_frames``)."""
  first, second = optical_flow.partner_frames(num_frames, frame_indices)
  stored, inverse = np.unique(np.concatenate([np.asarray(frame_indices, np.int64), first, second]),
                              return_inverse=True)
  return stored, inverse.reshape(3, -1).astype(np.int32)


def _decode_clip_and_flow(encoded, positions, height: int, width: int):
  """(U,) encoded stored frames and their (3, T) positions -> the clip
  (T, height, width, 3) uint8 and its flow (T, height, width, 2) float32,
  computed on the resized frames (before any augmentation)."""
  stored = _decode_clip(encoded, height, width)  # (U, H, W, 3)
  frames = tf.gather(stored, positions[0])
  flow = tf.numpy_function(optical_flow.flow_between,
                           [tf.gather(stored, positions[1]), tf.gather(stored, positions[2])],
                           tf.float32, stateful=False)
  return frames, tf.ensure_shape(flow, [None, height, width, 2])


_ENCODED_WITH_FLOW = (tf.TensorSpec([None], tf.string), tf.TensorSpec([3, None], tf.int32))


class ReIDData:
  """A prepared re-ID dataset and the pipelines the training loop reads.

  Args:
    config: the experiment config (dataset, dataset_config, data_dir,
      manual_dir, reprepare, height, width, clip_len, train_sampler,
      num_identities, num_instances, batch_sampler 'pk' | 'pairs' with
      num_pairs, use_flow, seed, augment.*, eval.*; all declared in
      experiments/configs/base.py).
    process_index, process_count: this process's slice of every train batch.
    wait_for_peers: a barrier of all processes. Process 0 prepares before it,
      the others after it: concurrent builds of one shared copy collide.
  """

  def __init__(self, config, process_index: int = 0, process_count: int = 1,
               wait_for_peers=lambda: None):
    self.config = config
    self.process_index, self.process_count = process_index, process_count
    if process_index > 0:
      wait_for_peers()  # until process 0's copy is complete (or its preparation failed)
    try:
      self.builder = datasets.prepare(config.dataset, config.dataset_config,
                                      data_dir=config.data_dir, manual_dir=config.manual_dir,
                                      # One rebuild per run (process 0), not one per process.
                                      reprepare=config.reprepare and process_index == 0)
    finally:  # on failure too: the others then meet the same error themselves
      if process_index == 0:  # (a no-op with one process)
        wait_for_peers()
    self._sources, self.index = {}, {}
    for split in ('train', 'query', 'gallery'):
      self._sources[split] = self.builder.as_data_source(
          split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
      self.index[split] = record_index.read(self.builder, split, self._sources[split])
    # Training labels: dataset person ids in sorted order -> 0..num_ids-1.
    train_pids = self.index['train'].pid
    self.train_pid_values, self.train_labels = np.unique(train_pids, return_inverse=True)
    self.num_train_ids = len(self.train_pid_values)
    self.partners = None  # (num_ids,) twin label of each label, or -1 (train_twins_together)
    if config.get('train_twins_together'):
      from data_pipelines.synthetic_video_reid import splits  # pylint: disable=g-import-not-at-top
      self.partners = splits.train_twin_partners(self.builder.builder_config.params,
                                                 self.train_pid_values)

  @property
  def num_train_tracklets(self) -> int:
    """Tracklets of the training split (an epoch's length in experiments/durations.py)."""
    return len(self.index['train'])

  def summary_rows(self):
    """(subset, #ids, #tracklets, #cameras) for the console table."""
    return [[split, len(np.unique(ix.pid)), len(ix), len(np.unique(ix.camid))]
            for split, ix in self.index.items()]

  def split_labels(self, split: str) -> dict:
    """Per-tracklet 'pid', 'camid' and boolean 'subsets' of an eval split."""
    ix = self.index[split]
    return {'pid': ix.pid, 'camid': ix.camid,
            'subsets': {name + 's': mask for name, mask in ix.extras.items()}}

  def tracklet_name(self, split: str, tracklet: int) -> str:
    """The tracklet's name in its source (datasets that store one, such as
    tracklet_folders: person/camera/tracklet), else ''; for picture captions."""
    index = self.index[split]
    feature = tf.train.Example.FromString(
        self._sources[split][int(index.position[tracklet])]).features.feature
    names = [feature[k].bytes_list.value[0].decode()
             for k in ('person_name', 'camera_name', 'tracklet_name')
             if k in feature and feature[k].bytes_list.value]
    return '/'.join(names)

  def tracklet_frames(self, split: str, tracklet: int, num_frames: int) -> np.ndarray:
    """`num_frames` evenly spaced frames of one tracklet, (n, H, W, 3) uint8 as
    stored (for pictures, not for the model; frames of another size than the
    first are resized to it)."""
    index = self.index[split]
    picks = sampling.evenly_spaced(index.num_frames[tracklet], num_frames)
    encoded = _frame_bytes(self._sources[split], index.position[tracklet], picks)
    return stack_frames([_decode_image(tf.constant(e)).numpy() for e in encoded])

  # --- train -----------------------------------------------------------------

  def plan(self, step: int) -> sampling.BatchPlan:
    """This process's rows of the global batch of `step` (PK, or siamese
    pairs with ``config.batch_sampler = 'pairs'``)."""
    c = self.config
    sampler = c.batch_sampler
    if sampler == 'pk':
      plan = sampling.plan_pk_batch(
          self.index['train'], self.train_labels, seed=c.seed, step=step,
          num_identities=c.num_identities, num_instances=c.num_instances,
          clip_len=c.clip_len, clip_sampler=c.train_sampler, partners=self.partners)
    elif sampler == 'pairs':
      # The training loop sizes and shards batches as P * K clips.
      if 2 * c.num_pairs != c.num_identities * c.num_instances:
        raise ValueError(
            f'config.batch_sampler = pairs: config.num_pairs = {c.num_pairs} pairs make '
            f'{2 * c.num_pairs} clips but config.num_identities * config.num_instances = '
            f'{c.num_identities * c.num_instances}; set num_identities = num_pairs and '
            'num_instances = 2.')
      plan = sampling.plan_pair_batch(
          self.index['train'], self.train_labels, seed=c.seed, step=step,
          num_pairs=c.num_pairs, clip_len=c.clip_len, clip_sampler=c.train_sampler)
    else:
      raise ValueError(f'Unknown config.batch_sampler {sampler!r}; valid choices: '
                       f'{", ".join(sampling.BATCH_SAMPLERS)}.')
    start, stop = sampling.process_rows(len(plan.labels), self.process_index, self.process_count)
    return plan.rows(start, stop)

  def train_plan_arrays(self, step: int) -> tuple:
    """The serial part of the train pipeline, for one step: what the batch plan
    says about this process's clips, no record read. (B,) record positions,
    (B, T) frame indices, (B,) frame counts, labels, camids, tracklets and
    (B, 2) augmentation seeds."""
    plan, index = self.plan(step), self.index['train']
    t = plan.tracklets
    return (index.position[t].astype(np.int64), plan.frames.astype(np.int64),
            index.num_frames[t].astype(np.int64), plan.labels.astype(np.int32),
            index.camid[t].astype(np.int32), t.astype(np.int64), plan.aug_seeds.astype(np.int32))

  def train_step_clips(self, step: int) -> tuple:
    """This process's clips of ``step`` before decoding: the plan
    (``train_plan_arrays``) with each clip's encoded frames. Returns (encoded
    frames, (B,) labels, camids, tracklets, (B, 2) aug seeds); the encoded
    frames are (B, T) bytes, or with ``config.use_flow`` the stored frames of
    every clip concatenated, their (B,) counts and the (B, 3, T) positions of
    each clip's frames and flow partners among them (``_flow_sources``)."""
    position, frames, num_frames, *rest = self.train_plan_arrays(step)
    # One read for the step: ArrayRecord reads the records in parallel, without the GIL.
    records = self._sources['train'].__getitems__([int(p) for p in position])
    if not self.config.use_flow:
      return (np.array([_picked_frames(r, f) for r, f in zip(records, frames)], object), *rest)
    stored, positions = zip(*(_flow_sources(n, f) for n, f in zip(num_frames, frames)))
    encoded = [e for r, s in zip(records, stored) for e in _picked_frames(r, s)]
    return (np.array(encoded, object), np.array([len(s) for s in stored], np.int64),
            np.stack(positions), *rest)

  def train_clips(self, start_step: int, threads: int = 0) -> tf.data.Dataset:
    """The clips of steps start_step, ... as encoded frames, before decoding.

    Steps are a tf.data range, and each step's plan, record reads, parses and
    frame picks (``train_step_clips``) run in tf.data's parallel map, several
    steps at once. In one Python generator before, they fed ~1,600 clips/s at
    most, short of the ~2,400 clips/s a GPU step can take (and tf.data's
    from_generator alone caps near 1,000 elements/s). The map keeps its order
    (``deterministic``), so the batch of step s stays a pure function of
    (seed, s): the same bytes as when this was serial. ``threads`` > 0 fixes
    tf.data's threads (benchmarks); 0 lets tf.data tune them. Elements:
    (encoded (T,), or with ``config.use_flow`` (stored frames (U,), (3, T)
    positions), label, camid, tracklet, aug seed).
    """
    use_flow = self.config.use_flow
    rest_types = (tf.int32, tf.int32, tf.int64, tf.int32)
    rest_shapes = ([None], [None], [None], [None, 2])
    if use_flow:  # stored frames of all clips, their counts, (B, 3, T) positions
      head_types, head_shapes = (tf.string, tf.int64, tf.int32), ([None], [None], [None, 3, None])
    else:  # (B, T) frames
      head_types, head_shapes = (tf.string,), ([None, None],)

    # No TF op reads ArrayRecord, hence one Python call per step. It holds the
    # GIL for the plan and the protobuf parse and pick of each record (29 us
    # against 320 us for the read of a 16-frame 256 x 128 record, measured),
    # not for the reads. (A TF parse op, which copies every frame of the
    # tracklet, made this stage 2x slower in a trial.)
    @tf.autograph.experimental.do_not_convert
    def step_clips(step):
      out = tf.numpy_function(lambda s: self.train_step_clips(int(s)), [step],
                              head_types + rest_types, stateful=False)
      out = [tf.ensure_shape(a, shape) for a, shape in zip(out, head_shapes + rest_shapes)]
      if not use_flow:
        return tuple(out)
      encoded, counts, positions, *rest = out
      return ((tf.RaggedTensor.from_row_lengths(encoded, counts), positions), *rest)

    ds = tf.data.Dataset.range(start_step, np.iinfo(np.int64).max)  # endless
    ds = ds.map(step_clips, num_parallel_calls=threads or tf.data.AUTOTUNE, deterministic=True)
    ds = ds.unbatch()
    if threads:
      options = tf.data.Options()
      options.threading.private_threadpool_size = threads
      options.threading.max_intra_op_parallelism = 1
      ds = ds.with_options(options)
    return ds

  def train_batches(self, start_step: int, threads: int = 0) -> Iterator[dict]:
    """Endless numpy batches for steps start_step, start_step + 1, ...
    (``threads``: see ``train_clips``)."""
    c = self.config
    local_batch = c.num_identities * c.num_instances // self.process_count
    use_flow = c.use_flow

    # Plain TF ops, no Python control flow on tensors: AutoGraph has nothing to convert.
    @tf.autograph.experimental.do_not_convert
    def decode_and_augment(encoded, label, camid, tracklet, seed):
      if use_flow:
        frames, flow = _decode_clip_and_flow(*encoded, c.height, c.width)
      else:
        frames = _decode_clip(encoded, c.height, c.width)
      frames = augment.augment_clip(frames, seed, flip=c.augment.flip, pad=c.augment.pad,
                                    erasing=c.augment.random_erasing,
                                    jitter=c.augment.color_jitter.to_dict())
      frames = tf.ensure_shape(frames, [c.clip_len, c.height, c.width, 3])
      out = {'frames': frames, 'pid': label, 'camid': camid,
             'tracklet': tf.cast(tracklet, tf.int32)}
      if use_flow:  # the same flip and crop draws as the frames
        flow = augment.augment_flow(flow, seed, flip=c.augment.flip, pad=c.augment.pad)
        out['flow'] = tf.ensure_shape(flow, [c.clip_len, c.height, c.width, 2])
      return out

    ds = self.train_clips(start_step, threads)
    ds = ds.map(decode_and_augment, num_parallel_calls=threads or tf.data.AUTOTUNE,
                deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True).prefetch(2)
    return ds.as_numpy_iterator()

  # --- eval ------------------------------------------------------------------

  def eval_batches(self, split: str) -> Iterator[dict]:
    """Every tracklet of `split` as clips of T frames, in fixed-size batches
    padded with mask=False rows (one compiled eval step for all batches)."""
    source, index = self._sources[split], self.index[split]
    return eval_batches(self.config, index.num_frames,
                        lambda t, picks: _frame_bytes(source, index.position[t], picks),
                        index.pid, index.camid)


def eval_batches(config, num_frames, frame_bytes, pids, camids) -> Iterator[dict]:
  """Eval clips of tracklets given by their frame counts and a byte getter.

  Args:
    config: uses height, width, clip_len, use_flow and eval.{clip_len,
      sampler, max_chunks, batch_size}.
    num_frames: (N,) frames per tracklet.
    frame_bytes: (tracklet, frame indices) -> list of encoded images.
    pids, camids: (N,) labels copied into the batches.
  Yields:
    {'frames' (B, T, H, W, 3) uint8, ['flow'], 'tracklet', 'mask', 'pid',
    'camid' (B,)}, and with eval.sampler 'sequence' 'real_frames' (B,): how
    many leading frames of each clip are its tracklet's own. A tracklet's
    clips come in order, one after another.
  """
  c = config
  clip_len = c.eval.clip_len or c.clip_len
  if c.use_flow:
    ds = _eval_clips_with_flow(c, clip_len, num_frames, frame_bytes)
  else:
    def clips():
      for t in range(len(num_frames)):
        for chunk in sampling.eval_chunks(num_frames[t], clip_len, c.eval.sampler,
                                          c.eval.max_chunks):
          yield frame_bytes(t, chunk), (t, sampling.real_frames(num_frames[t], chunk))

    ds = tf.data.Dataset.from_generator(clips, output_signature=(
        tf.TensorSpec([clip_len], tf.string), _TRACKLET_AND_REAL))
    ds = ds.map(lambda enc, t: {'frames': tf.ensure_shape(
        _decode_clip(enc, c.height, c.width), [clip_len, c.height, c.width, 3]),
                                **_tracklet_entries(t, c.eval.sampler)},
                num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  ds = ds.batch(c.eval.batch_size).prefetch(2)
  for batch in ds.as_numpy_iterator():
    yield _pad_batch(batch, c.eval.batch_size, pids, camids)


def _eval_clips_with_flow(c, clip_len: int, num_frames, frame_bytes):
  """`eval_batches`' clips with their 'flow' (no augmentation): each frame's
  flow to the next stored frame of its tracklet, as in training."""

  def clips():
    for t in range(len(num_frames)):
      for chunk in sampling.eval_chunks(num_frames[t], clip_len, c.eval.sampler,
                                        c.eval.max_chunks):
        stored, positions = _flow_sources(num_frames[t], chunk)
        real = sampling.real_frames(num_frames[t], chunk)
        yield (frame_bytes(t, stored), positions), (t, real)

  def decode(encoded, t):
    frames, flow = _decode_clip_and_flow(*encoded, c.height, c.width)
    return {'frames': tf.ensure_shape(frames, [clip_len, c.height, c.width, 3]),
            'flow': tf.ensure_shape(flow, [clip_len, c.height, c.width, 2]),
            **_tracklet_entries(t, c.eval.sampler)}

  ds = tf.data.Dataset.from_generator(clips, output_signature=(
      _ENCODED_WITH_FLOW, _TRACKLET_AND_REAL))
  return ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# An eval clip's tracklet and how many of its leading frames are the tracklet's own.
_TRACKLET_AND_REAL = (tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int64))


def _tracklet_entries(tracklet_and_real, sampler: str) -> dict:
  """'tracklet', and 'real_frames' for the 'sequence' sampler (the only reader)."""
  tracklet, real = tracklet_and_real
  entries = {'tracklet': tf.cast(tracklet, tf.int32)}
  if sampler == 'sequence':
    entries['real_frames'] = tf.cast(real, tf.int32)
  return entries


def _pad_batch(batch: dict, size: int, pids, camids) -> dict:
  n = len(batch['tracklet'])
  out = {k: np.concatenate([v, np.zeros((size - n,) + v.shape[1:], v.dtype)])
         for k, v in batch.items()}
  out['mask'] = np.arange(size) < n
  out['pid'] = np.asarray(pids)[out['tracklet']]
  out['camid'] = np.asarray(camids)[out['tracklet']]
  return out
