"""Registered datasets and how to prepare them.

``DATASETS`` maps a dataset name (``config.dataset``) to the module whose import
registers its TFDS builder. Datasets are prepared in the ArrayRecord format,
which the pipelines read by random access.

A prepared copy is reused only while it matches what it was built from. The
builders of manually downloaded releases store a ``'source'`` record in the
copy's ``metadata.json`` (``provenance.source_record``: the absolute
manual_dir and a fingerprint of the release files read); a generated dataset
stores its generation parameters, and its builder lists them in
``provenance()``. ``prepare`` compares them with the present before TFDS's
"Reusing dataset" and stops with one line saying what changed; ``reprepare``
rebuilds the copy (the old one is kept until the new one is complete).
"""

import importlib
import json
import os
import shutil

from absl import logging
import tensorflow_datasets as tfds

from data_pipelines import provenance, record_index

DATASETS = {
    'dukemtmc_video_reid': 'data_pipelines.dukemtmc_video_reid',
    'ilids_vid': 'data_pipelines.ilids_vid',
    'ls_vid': 'data_pipelines.ls_vid',
    'mars': 'data_pipelines.mars',
    'prid2011': 'data_pipelines.prid2011',
    'synthetic_video_reid': 'data_pipelines.synthetic_video_reid',
    'tracklet_folders': 'data_pipelines.tracklet_folders',  # your own tracklets
}


def get_builder(name: str, config_name: str = '', data_dir: str = ''):
  """The TFDS builder of a registered dataset (not yet prepared).

  Raises:
    ValueError: unknown dataset or builder config, naming the valid choices.
  """
  if name not in DATASETS:
    raise ValueError(f'Unknown dataset {name!r}; valid choices: {", ".join(sorted(DATASETS))}.')
  importlib.import_module(DATASETS[name])
  builder_cls = tfds.builder_cls(name)
  configs = [c.name for c in (builder_cls.BUILDER_CONFIGS or [])]
  if config_name and configs and config_name not in configs:
    raise ValueError(f'Unknown config {config_name!r} of dataset {name!r}; valid choices: '
                     f'{", ".join(configs)}.')
  kwargs = {'data_dir': os.path.expanduser(data_dir)} if data_dir else {}
  if config_name:
    kwargs['config'] = config_name
  return builder_cls(file_format='array_record', **kwargs)


def prepare(name: str, config_name: str = '', data_dir: str = '', manual_dir: str = '',
            reprepare: bool = False):
  """Prepares the dataset once (a current prepared copy is reused) and returns its builder.

  TFDS writes into a temporary folder and renames it when complete, so an
  interrupted preparation never leaves a half-written dataset behind. A new
  copy then gets the per-tracklet index of each split (``write_indexes``). A copy
  prepared before is reused only if it matches its source (``provenance_problem``);
  otherwise nothing is touched and a ValueError says what changed and how to
  re-prepare.

  Args:
    name, config_name, data_dir: as for ``get_builder``.
    manual_dir: where the release was extracted ('' = TFDS's default,
      ``<data_dir>/downloads/manual``; a prepared copy is then checked against
      the release it was built from, wherever that was).
    reprepare: delete and rebuild the prepared copy. The old copy is moved aside
      and put back if the rebuild fails, so a failed rebuild loses nothing.

  Raises:
    ValueError: an unknown name or config, or a prepared copy that does not
      match its source.
  """
  builder = get_builder(name, config_name, data_dir)
  data_path = os.fspath(builder.data_path)
  if _restore_aside(data_path):  # a reprepare was interrupted: its old copy returns
    builder = get_builder(name, config_name, data_dir)
  download_config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
  reused = os.path.exists(data_path)  # what TFDS would reuse
  if reused:
    if reprepare:
      return _reprepare(builder, download_config, lambda: get_builder(name, config_name, data_dir))
    problem = provenance_problem(builder, manual_dir)
    if problem:
      raise ValueError(problem)
  builder.download_and_prepare(download_config=download_config)
  if not reused:  # a reused copy got its indexes when it was prepared (or gets them on first read)
    write_indexes(builder)
  return builder


def write_indexes(builder) -> None:
  """Writes the per-tracklet index of every split beside its records
  (``record_index``), so that starts read no frame bytes. One scan of the
  freshly written records: simpler and sturdier than collecting the metadata
  while TFDS writes and shards them."""
  for split in builder.info.splits:
    source = builder.as_data_source(
        split, deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
    record_index.build(builder, split, source)


def _aside_path(data_path: str) -> str:
  """Where ``reprepare`` keeps the old copy: a hidden sibling TFDS does not read."""
  parent, version = os.path.split(data_path.rstrip(os.sep))
  return os.path.join(parent, f'.{version}.before_reprepare')


def _restore_aside(data_path: str) -> bool:
  """Finishes an interrupted ``reprepare``; True if the old copy was put back."""
  aside = _aside_path(data_path)
  if not os.path.isdir(aside):
    return False
  if os.path.exists(data_path):  # the rebuild completed: the old copy is obsolete
    shutil.rmtree(aside)
    return False
  logging.warning('Restoring %s: a reprepare of it was interrupted.', data_path)
  os.rename(aside, data_path)
  return True


def _reprepare(builder, download_config, new_builder):
  """Rebuilds the prepared copy of ``builder``, keeping the old one until that worked."""
  data_path = os.fspath(builder.data_path)
  aside = _aside_path(data_path)
  logging.warning('reprepare=True: rebuilding %s (the old copy waits in %s until the new one '
                  'is complete).', data_path, aside)
  os.rename(data_path, aside)
  try:
    builder = new_builder()  # constructed without a prepared copy: TFDS builds one
    builder.download_and_prepare(download_config=download_config)
    write_indexes(builder)
  except BaseException:
    if not os.path.exists(data_path):  # TFDS renames only a complete copy into place
      os.rename(aside, data_path)
    raise
  shutil.rmtree(aside)
  return builder


def _reprepare_hint(data_path: str) -> str:
  return (f'rerun with reprepare=True (--config.reprepare=True), which rebuilds {data_path} '
          '(the old copy is kept until the new one is complete)')


_RECORD_KEYS = frozenset({'manual_dir', 'paths', 'files', 'bytes', 'newest_mtime_ns'})


def _stored_metadata(data_path: str) -> dict:
  try:
    with open(os.path.join(data_path, 'metadata.json')) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def provenance_problem(builder, manual_dir: str = '') -> str | None:
  """Why the prepared copy of ``builder`` must not be reused (one line), or None.

  * A builder with ``provenance()`` (a generated dataset): its stored metadata
    must hold the same entries (e.g. the synthetic generation parameters).
  * A builder of a manually downloaded release: its ``'source'`` record must
    exist; a non-empty ``manual_dir`` must be the one it was built from; the
    fingerprint of the release files it read must be unchanged. If none of those
    files exists any more (the release was deleted after preparing, or the copy
    was moved to another machine), nothing can be checked: a warning is logged
    and the copy is used.
  """
  data_path = os.fspath(builder.data_path)
  stored = _stored_metadata(data_path)
  what = f'{builder.name}: the prepared copy {data_path}'
  if hasattr(builder, 'provenance'):
    expected = json.loads(json.dumps(builder.provenance()))  # as stored: tuples -> lists
    changed = sorted(k for k, v in expected.items() if stored.get(k) != v)
    if changed:
      return (f'{what} was generated with other {", ".join(changed)} than the builder config '
              f'{builder.builder_config.name!r} now has; {_reprepare_hint(data_path)}.')
    return None
  if not builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    return None
  record = stored.get(provenance.SOURCE_KEY)
  if not isinstance(record, dict) or not _RECORD_KEYS <= set(record):
    where = f' in {manual_dir}' if manual_dir else ''
    return (f'{what} does not record what it was built from (it was prepared by an older '
            f'version), so whether it matches the release{where} cannot be checked; to use it, '
            f'{_reprepare_hint(data_path)}.')
  built_from = record['manual_dir']
  if manual_dir:
    configured = os.path.abspath(os.path.expanduser(manual_dir))
    if os.path.realpath(configured) != os.path.realpath(built_from):
      return (f'{what} was built from manual_dir {built_from}, but manual_dir is now '
              f'{configured}. To build it from {configured}, {_reprepare_hint(data_path)}; to '
              f'use the prepared copy, set manual_dir back to {built_from} (or leave it empty).')
  paths = record['paths']
  if not any(os.path.exists(p) for p in paths):
    logging.warning('%s was built from the release in %s, which is not there any more: cannot '
                    'check that it is current; using it.', what, built_from)
    return None
  now = provenance.fingerprint(paths)
  then = {k: record.get(k) for k in now}
  if now != then:
    return (f'{what} was built from the release in {built_from} when it had '
            f'{provenance.describe_fingerprint(then)}; it now has '
            f'{provenance.describe_fingerprint(now)}, so the release changed since (a file '
            f'repaired, added or removed). To rebuild the copy from the release as it is now, '
            f'{_reprepare_hint(data_path)}.')
  return None


def split_configs(name: str) -> list:
  """Names of a dataset's numbered train/test splits ('split_0', ...), e.g. the
  10 splits of iLIDS-VID and PRID-2011; empty for datasets with one split."""
  get_builder(name)  # validates the name and registers the builder
  configs = tfds.builder_cls(name).BUILDER_CONFIGS or []
  return [c.name for c in configs if c.name.startswith('split_')]
