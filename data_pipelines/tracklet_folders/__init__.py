"""Your own tracklets as a dataset; importing this package registers the TFDS builder
``tracklet_folders``."""

from data_pipelines.tracklet_folders.layouts import read_layout
from data_pipelines.tracklet_folders.tracklet_folders_dataset_builder import Builder

__all__ = ['Builder', 'read_layout']
