"""MARS video re-ID dataset; importing this package registers the TFDS builder ``mars``."""

from data_pipelines.mars.mars_dataset_builder import Builder
from data_pipelines.mars.mars_dataset_builder import mars_split_index
from data_pipelines.mars.mars_dataset_builder import read_mars_info

__all__ = ['Builder', 'mars_split_index', 'read_mars_info']
