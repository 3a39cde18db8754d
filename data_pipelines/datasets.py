"""Registered datasets and how to prepare them.

``DATASETS`` maps a dataset name (``config.dataset``) to the module whose import
registers its TFDS builder. Datasets are prepared in the ArrayRecord format,
which the pipelines read by random access.
"""

import importlib
import os

import tensorflow_datasets as tfds

DATASETS = {
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
