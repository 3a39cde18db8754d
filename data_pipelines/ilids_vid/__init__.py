"""iLIDS-VID video re-ID dataset; importing this package registers the TFDS builder
``ilids_vid`` (configs ``split_0`` .. ``split_9``)."""

from data_pipelines.ilids_vid.ilids_vid_dataset_builder import Builder
from data_pipelines.video_reid_common import SplitConfig

__all__ = ['Builder', 'SplitConfig']
