"""Registered datasets and how to prepare them.

``DATASETS`` maps a dataset name (``config.dataset``) to the module whose import
registers its TFDS builder. Datasets are prepared in the ArrayRecord format,
which the pipelines read by random access.
"""

import importlib
import os

import tensorflow_datasets as tfds

DATASETS = {
    'dukemtmc_video_reid': 'data_pipelines.dukemtmc_video_reid',
    'ilids_vid': 'data_pipelines.ilids_vid',
    'ls_vid': 'data_pipelines.ls_vid',
    'mars': 'data_pipelines.mars',
    'prid2011': 'data_pipelines.prid2011',
    'synthetic_video_reid': 'data_pipelines.synthetic_video_reid',
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


def prepare(name: str, config_name: str = '', data_dir: str = '', manual_dir: str = ''):
  """Prepares the dataset once (TFDS skips a prepared one) and returns its builder.

  TFDS writes into a temporary folder and renames it when complete, so an
  interrupted preparation never leaves a half-written dataset behind.
  """
  builder = get_builder(name, config_name, data_dir)
  download_config = tfds.download.DownloadConfig(
      manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
  builder.download_and_prepare(download_config=download_config)
  return builder


def split_configs(name: str) -> list:
  """Names of a dataset's numbered train/test splits ('split_0', ...), e.g. the
  10 splits of iLIDS-VID and PRID-2011; empty for datasets with one split."""
  get_builder(name)  # validates the name and registers the builder
  configs = tfds.builder_cls(name).BUILDER_CONFIGS or []
  return [c.name for c in configs if c.name.startswith('split_')]
