r"""MSTN on PRID-2011 (10 splits of the 178 persons seen by both cameras, half
for training, section 4.2); every other setting is mstn_mars.py's.

  python -m experiments.train --config=experiments/configs/mstn_prid2011.py \
      --workdir=workdir/mstn_prid2011 --config.pretrained=resnet50.safetensors

89 training identities, P = 8 x K = 4: floor(89 * 4 / 32) = 11 steps per
epoch, 800 epochs = 8800 steps, decays at 2200, 4400, 6600. Test: cam_a
queries against cam_b, the first four 8-frame chunks of each tracklet.
"""

from experiments.configs import mstn_mars


def get_config():
  c = mstn_mars.get_config()
  c.dataset = 'prid2011'
  c.dataset_config = 'split_0'
  c.all_splits = True  # the 10 standard splits, mean and std
  c.eval.protocol = 'torchreid'  # cam_a queries against cam_b
  return c
