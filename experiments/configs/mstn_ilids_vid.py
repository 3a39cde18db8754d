r"""MSTN on iLIDS-VID (10 random half/half splits, section 4.2); every other
setting is mstn_mars.py's (see there for what the paper says and what it
leaves open).

  python -m experiments.train --config=experiments/configs/mstn_ilids_vid.py \
      --workdir=workdir/mstn_ilids_vid --config.pretrained=resnet50.safetensors

150 training identities, P = 8 x K = 4: floor(150 * 4 / 32) = 18 steps per
epoch, 800 epochs = 14400 steps, decays at 3600, 7200, 10800. Test: cam1
queries against cam2 ('torchreid' protocol), the first four 8-frame chunks
of each tracklet.
"""

from experiments.configs import mstn_mars


def get_config():
  c = mstn_mars.get_config()
  c.dataset = 'ilids_vid'
  c.dataset_config = 'split_0'
  c.all_splits = True  # the 10 standard splits, mean and std
  c.eval.protocol = 'torchreid'  # cam1 queries against cam2
  return c
