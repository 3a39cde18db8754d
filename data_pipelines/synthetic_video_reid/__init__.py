"""Synthetic video re-ID dataset; importing this package registers the TFDS builder
``synthetic_video_reid`` (configs ``default`` and ``tiny``)."""

from data_pipelines.synthetic_video_reid.synthetic_video_reid_dataset_builder import Builder
from data_pipelines.synthetic_video_reid.synthetic_video_reid_dataset_builder import SyntheticConfig

__all__ = ['Builder', 'SyntheticConfig']
