"""LS-VID video re-ID dataset; importing this package registers the TFDS builder ``ls_vid``."""

from data_pipelines.ls_vid.ls_vid_dataset_builder import Builder
from data_pipelines.ls_vid.ls_vid_dataset_builder import lsvid_split_index

__all__ = ['Builder', 'lsvid_split_index']
