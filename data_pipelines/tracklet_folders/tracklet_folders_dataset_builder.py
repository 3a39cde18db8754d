"""`tracklet_folders`: your own tracklets, from a folder tree or a CSV manifest.

Usage::

  python -m experiments.train --config=experiments/configs/synthetic_baseline.py \\
      --config.dataset=tracklet_folders --config.manual_dir=ROOT --workdir=W

``ROOT`` holds ``{train,query,gallery}/<person>/<camera>/<tracklet>/<frames>``, or
a ``manifest.csv`` listing the frames (``layouts.py`` states both exactly). It is
prepared once, like the releases' builders: TFDS stores the frames' original
bytes under data_dir, and a later run reuses that copy only while ROOT is
unchanged (``datasets.prepare``; ``--config.reprepare=True`` rebuilds it).

Ids: the person names of all three splits, sorted, are numbered 0, 1, ... (the
``pid``), and so are the camera names (the ``camid``); a person's name means
the same person in every split. The names are kept: in each record
(``person_name``, ``camera_name``, ``tracklet_name``, beside the features every
builder stores; the pipeline reads only those) and in the metadata
(``person_names[pid]``, ``camera_names[camid]``). Train persons are relabelled
0..N-1 by the pipeline, as for every dataset; persons only in query/gallery are
the test persons, and a person in both train and query/gallery is an error
(evaluation would report results on persons the model was trained on).

Checked before anything is written, each one ``ReleaseError`` line: a missing
split folder or an empty split, a person or camera folder without folders, an
empty tracklet folder, a manifest row with a missing file. Every frame is then
decoded once while it is stored (``video_reid_common.generate_examples``); a
corrupt one fails the preparation, and TFDS removes its incomplete copy. A
query tracklet whose person has no gallery tracklet in another camera is only
a warning (the ``torchreid`` protocol skips such queries).
"""

from __future__ import annotations

import os
import pathlib

from absl import logging
import tensorflow_datasets as tfds

from data_pipelines import provenance
from data_pipelines import release_files
from data_pipelines import video_reid_common as common
from data_pipelines.tracklet_folders import layouts

DESCRIPTION = """\
Your own video re-ID tracklets: <manual_dir>/{train,query,gallery}/<person>/
<camera>/<tracklet>/<frames> (JPEG or PNG), or the frames listed in
<manual_dir>/manifest.csv (columns split,frame_path,person,camera,tracklet).
Persons and cameras are numbered in sorted name order; their names are kept in
the records and the metadata. Frames are stored as the original bytes, ordered
by the last number in their file name.
"""

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Nothing is downloaded: manual_dir is the root of your own tracklets, either

  <manual_dir>/train/<person>/<camera>/<tracklet>/<frames>   (and query/, gallery/)

with any folder names and JPEG/PNG frames numbered in their names
(frame_0001.jpg, ...), or any layout listed in <manual_dir>/manifest.csv:

  split,frame_path,person,camera,tracklet
  train,videos/cam1/000123.jpg,alice,cam1,walk_1

(one row per frame; frame_path absolute or relative to manual_dir). Then
`python -m experiments.train ... --config.dataset=tracklet_folders
--config.manual_dir=<manual_dir>` (README, "Your own data").
"""

NAME_FEATURES = ('person_name', 'camera_name', 'tracklet_name')


def number(index: dict) -> tuple[dict, list[str], list[str]]:
  """({split: [Tracklet]}, person names by pid, camera names by camid) of named tracklets."""
  tracklets = [t for split in common.SPLITS for t in index[split]]
  persons = sorted({t.person for t in tracklets})
  cameras = sorted({t.camera for t in tracklets})
  pid = {name: i for i, name in enumerate(persons)}
  camid = {name: i for i, name in enumerate(cameras)}
  numbered = {split: [common.Tracklet(pid[t.person], camid[t.camera], t.frames)
                      for t in index[split]] for split in common.SPLITS}
  return numbered, persons, cameras


def check_splits(index: dict, source: pathlib.Path) -> None:
  """Every split has a tracklet, and no person is both a train and a test person.

  ``source`` (the root, or the manifest) is the path the messages name.

  Raises:
    ReleaseError: an empty split; persons in train and in query or gallery.
  """
  for split in common.SPLITS:
    if not index[split]:
      raise release_files.release_error(source, f'tracklets of each of the splits '
                                 f'{", ".join(common.SPLITS)}', f'It lists none of {split}. '
                                 f'{layouts.TODO}')
  train = {t.person for t in index['train']}
  both = sorted({t.person for s in ('query', 'gallery') for t in index[s]} & train)
  if both:
    raise release_files.release_error(
        source, 'each person either in train or in query/gallery (a person name is one '
        'person in every split)', f'{len(both)} of the {len(train)} training persons are in '
        f'query/gallery too (e.g. {", ".join(map(repr, both[:3]))}): evaluating on them would '
        'report results on persons the model was trained on. Rename them if they are other '
        'people, else move their tracklets into one side.')


def unmatched_queries(query: list, gallery: list) -> tuple[int, int]:
  """(query tracklets, query persons) with no gallery tracklet of the person in another camera."""
  gallery_cams = {}
  for t in gallery:
    gallery_cams.setdefault(t.pid, set()).add(t.camid)
  unmatched = [t for t in query if not gallery_cams.get(t.pid, set()) - {t.camid}]
  return len(unmatched), len({t.pid for t in unmatched})


def warn_unmatched_queries(query: list, gallery: list, source) -> None:
  """Logs a warning with the counts when some queries have no cross-camera match."""
  tracklets, persons = unmatched_queries(query, gallery)
  if tracklets:
    logging.warning(
        'tracklet_folders (%s): %d of the %d query tracklets (%d of the %d query persons) have '
        'no gallery tracklet of their person in another camera; the torchreid protocol skips '
        'such queries. Add gallery tracklets of those persons from other cameras to evaluate '
        'them.', source, tracklets, len(query), persons, len({t.pid for t in query}))


class Builder(tfds.core.GeneratorBasedBuilder):
  """DatasetBuilder for your own tracklets (a folder tree or a CSV manifest in manual_dir)."""

  name = 'tracklet_folders'
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release: a folder tree or a CSV manifest; names kept.'}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

  def _info(self) -> tfds.core.DatasetInfo:
    # encoding_format None: the frames are JPEG or PNG, stored as they are.
    core = common.video_reid_features(encoding_format=None)
    features = tfds.features.FeaturesDict({
        **{key: core[key] for key in core.keys()},
        **{key: tfds.features.Text() for key in NAME_FEATURES}})
    return tfds.core.DatasetInfo(builder=self, description=DESCRIPTION, features=features,
                                 supervised_keys=None, disable_shuffling=True,
                                 metadata=tfds.core.MetadataDict())

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = pathlib.Path(os.fspath(dl_manager.manual_dir))
    layout, named, paths = layouts.read_layout(root)
    source = root / layouts.MANIFEST if layout == 'manifest' else root
    check_splits(named, source)
    tracklets, persons, cameras = number(named)
    warn_unmatched_queries(tracklets['query'], tracklets['gallery'], source)
    self.info.metadata.update({
        'layout': layout,
        'person_names': persons,
        'camera_names': cameras,
        'split_stats': {s: common.split_stats(t) for s, t in tracklets.items()},
        provenance.SOURCE_KEY: provenance.source_record(root, paths),
    })
    return {split: self._generate_examples(named[split], tracklets[split], root, split)
            for split in common.SPLITS}

  def _generate_examples(self, named, tracklets, root, split):
    examples = common.generate_examples(tracklets, root, 'auto', split=split)
    for (i, example), tracklet in zip(examples, named):
      yield i, {**example, 'person_name': tracklet.person, 'camera_name': tracklet.camera,
                'tracklet_name': tracklet.name}
