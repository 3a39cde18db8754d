"""Pieces shared by the TFDS builders of the real video re-ID releases.

Every builder stores the same features (``video_reid_features``): the original
encoded frames of a tracklet in frame order, the dataset's person id, a 0-based
camera, the tracklet's position in its split and its number of frames. The
helpers here:

* ``video_reid_features(encoding_format)``: the ``FeaturesDict``.
* ``dataset_info(builder, ...)``: a builder's ``DatasetInfo`` with those features
  (frame order kept: ``disable_shuffling``; a ``MetadataDict`` for split facts).
* ``Tracklet(pid, camid, frames)``: one example to write; ``frames`` are paths
  (relative to a root given later) already in frame order.
* ``SplitConfig`` / ``split_configs(dataset, ...)``: one builder config per
  standard train/test split (iLIDS-VID, PRID-2011).
* ``generate_examples(tracklets, root, encoding_format, split=...)``: the
  ``_generate_examples`` body: yields ``(tracklet_index, example)`` in order,
  reading and decoding frames in a few threads.
* ``split_stats(tracklets)``: ids / tracklets / frames / cameras of a split.

Finding and checking the release's files is ``release_files.py``; what a
prepared copy was built from (the ``'source'`` metadata entry that
``datasets.prepare`` compares with the release) is ``provenance.py``.

Original bytes: TFDS's ``Image`` feature stores ``bytes`` (and the content of a
path) as given and only encodes NumPy arrays and PIL images, so passing the
file's bytes keeps the release's JPEG/PNG bit-exact (no decode/re-encode loss);
the builders' tests check this.

Integrity, in two steps. First the markers: a JPEG must start with FF D8 and end
with FF D9 (trailing NUL/whitespace padding allowed), a PNG must start with its
signature and IHDR chunk and end with the IEND chunk; this catches empty and
truncated files (interrupted extraction or copy), the common damage, with a
message that says so. Then every frame is decoded once with the decoder the
pipelines use (``decoding.decode_error``): a file whose start and end are intact
but whose body is corrupt fails here, naming its path and tracklet, instead of
being stored and crashing training when it is first sampled. The decode costs
about 0.2 ms (64 x 32) to 0.6 ms (256 x 128) of CPU per frame, i.e. 15-20 and
43-58 core-seconds per 100k frames: about 10 core-minutes for MARS (1.2M frames),
shared by the reader threads (measured in docs/design.md, "Faults").
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import pathlib
from typing import Iterator, Sequence

import numpy as np
import tensorflow_datasets as tfds

from data_pipelines import release_files

SPLITS = ('train', 'query', 'gallery')


def video_reid_features(encoding_format: str = 'jpeg') -> tfds.features.FeaturesDict:
  """The features every video re-ID builder stores (see data_pipelines/pipeline.py)."""
  return tfds.features.FeaturesDict({
      'frames': tfds.features.Sequence(
          tfds.features.Image(shape=(None, None, 3), encoding_format=encoding_format)),
      'pid': np.int32,
      'camid': np.int32,
      'tracklet': np.int32,
      'num_frames': np.int32,
  })


def dataset_info(builder: tfds.core.DatasetBuilder, *, description: str,
                 encoding_format: str, homepage: str | None = None,
                 citation: str | None = None) -> tfds.core.DatasetInfo:
  """The ``_info()`` of a video re-ID builder: ``video_reid_features``, stored in order."""
  return tfds.core.DatasetInfo(
      builder=builder,
      description=description,
      features=video_reid_features(encoding_format),
      supervised_keys=None,
      disable_shuffling=True,
      homepage=homepage,
      citation=citation,
      metadata=tfds.core.MetadataDict(),
  )


@dataclasses.dataclass(frozen=True)
class Tracklet:
  """One example: person id as in the release, 0-based camera, frame paths in order."""
  pid: int
  camid: int
  frames: tuple[str, ...]


@dataclasses.dataclass(eq=False)
class SplitConfig(tfds.core.BuilderConfig):
  """One of a dataset's standard train/test splits (``split_index`` 0-based)."""

  split_index: int = 0


def split_configs(dataset: str, num_test: int, num_train: int,
                  num_splits: int = 10) -> list[SplitConfig]:
  """``split_0`` .. ``split_<num_splits - 1>``: one builder config per standard split."""
  return [
      SplitConfig(name=f'split_{i}', split_index=i,
                  description=f'{dataset} standard split {i} (0-based; {num_train} train '
                  f'persons, {num_test} test persons).')
      for i in range(num_splits)
  ]


def _num_workers() -> int:
  env = os.environ.get('JAXREID_PREPARE_WORKERS')
  if env:
    return max(1, int(env))
  return max(1, min(4, os.cpu_count() or 1))


def _ordered_map(fn, items: Sequence, workers: int) -> Iterator:
  """``map(fn, items)`` computed ``workers`` at a time, in order, with a bounded window."""
  if workers <= 1 or len(items) < 2:
    yield from map(fn, items)
    return
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    pending = collections.deque()
    for item in items:
      pending.append(pool.submit(fn, item))
      if len(pending) >= 4 * workers:
        yield pending.popleft().result()
    while pending:
      yield pending.popleft().result()


def generate_examples(tracklets: Sequence[Tracklet], root, encoding_format: str = 'jpeg',
                      workers: int | None = None, split: str = '') -> Iterator[tuple[int, dict]]:
  """``(i, example)`` for each tracklet, i = position in ``tracklets``; frames read from ``root``.

  The frames are the files' original bytes (TFDS stores ``bytes`` unchanged),
  checked with ``release_files.check_image_bytes`` and then decoded once with
  the pipelines' decoder (``release_files.check_decodes``), so nothing is
  stored that training could not decode. ``split`` names the split in
  messages. Reads and decodes run in threads (file I/O and TensorFlow's
  decoder release the GIL); set
  ``JAXREID_PREPARE_WORKERS`` to change their number (default min(4, CPUs)).

  Raises:
    release_files.ReleaseError: a missing, truncated or undecodable frame, naming its path and
      its tracklet (position in the split, person, camera).
  """
  root = pathlib.Path(root)
  split_name = f'split {split!r}' if split else 'its split'

  def read(item: tuple[int, Tracklet]) -> list[bytes]:
    i, tracklet = item
    frames = []
    for k, f in enumerate(tracklet.frames):
      data = release_files.read_frame(root / f, encoding_format)
      release_files.check_decodes(
          data, root / f, encoding_format,
          f'frame {k + 1} of {len(tracklet.frames)} of tracklet {i} of {split_name} '
          f'(person {tracklet.pid}, camera {tracklet.camid + 1})')
      frames.append(data)
    return frames

  for i, (tracklet, frames) in enumerate(
      zip(tracklets, _ordered_map(read, list(enumerate(tracklets)), workers or _num_workers()))):
    yield i, {
        'frames': frames,
        'pid': np.int32(tracklet.pid),
        'camid': np.int32(tracklet.camid),
        'tracklet': np.int32(i),
        'num_frames': np.int32(len(frames)),
    }


def split_stats(tracklets: Sequence[Tracklet]) -> dict:
  """{'tracklets', 'ids', 'frames', 'cameras'} of one split (pid -1 and 0 count as ids)."""
  return {
      'tracklets': len(tracklets),
      'ids': len({t.pid for t in tracklets}),
      'frames': sum(len(t.frames) for t in tracklets),
      'cameras': len({t.camid for t in tracklets}),
  }

