"""DukeMTMC-VideoReID; importing this package registers the TFDS builder
``dukemtmc_video_reid``."""

from data_pipelines.dukemtmc_video_reid.dukemtmc_video_reid_dataset_builder import Builder
from data_pipelines.dukemtmc_video_reid.dukemtmc_video_reid_dataset_builder import duke_split_index

__all__ = ['Builder', 'duke_split_index']
