r"""Two-stream M3D + RAL on iLIDS-VID (10 splits), the paper's settings
(experiments/configs/m3d_mars.py has them all).

  python -m experiments.train --config=experiments/configs/m3d_ilids_vid.py \
      --workdir=workdir/m3d_ilids_vid --config.pretrained=resnet50.safetensors

150 training identities x 2 cameras = 300 tracklets, batch 24: 12 steps per
epoch, 400 epochs.
"""

from experiments.configs import m3d_mars


def get_config():
  c = m3d_mars.get_config()
  c.dataset = 'ilids_vid'
  c.dataset_config = 'split_0'
  c.all_splits = True  # the 10 standard splits, mean and std
  c.eval.protocol = 'torchreid'  # cam1 queries against cam2
  return c
