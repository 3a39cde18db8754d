r"""Two-stream M3D + RAL on PRID-2011 (10 splits), the paper's settings
(experiments/configs/m3d_mars.py has them all).

  python -m experiments.train --config=experiments/configs/m3d_prid2011.py \
      --workdir=workdir/m3d_prid2011 --config.pretrained=resnet50.safetensors

89 training identities x 2 cameras = 178 tracklets, batch 24: 7 steps per
epoch, 400 epochs.
"""

from experiments.configs import m3d_mars


def get_config():
  c = m3d_mars.get_config()
  c.dataset = 'prid2011'
  c.dataset_config = 'split_0'
  c.all_splits = True  # the 10 standard splits, mean and std
  c.eval.protocol = 'torchreid'  # cam_a queries against cam_b
  return c
