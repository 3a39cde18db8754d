"""PRID-2011 video re-ID dataset; importing this package registers the TFDS builder
``prid2011`` (configs ``split_0`` .. ``split_9``)."""

from data_pipelines.prid2011.prid2011_dataset_builder import Builder
from data_pipelines.video_reid_common import SplitConfig

__all__ = ['Builder', 'SplitConfig']
