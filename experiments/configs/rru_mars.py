r"""RRU + STIM on MARS: rru_ilids_vid.py with MARS's data, protocol and epoch length.

625 training identities, N = 10 per batch: 62 steps per epoch, 900 epochs at
a constant rate (the official code's schedule, see rru_ilids_vid.py). One
train/test partition (Zheng et al. 2016); the MARS evaluation (mAP and CMC)
with the paper's cosine distance.

  python -m experiments.train --config=experiments/configs/rru_mars.py \
      --workdir=workdir/rru_mars --config.pretrained=inception_v3.safetensors
"""

from experiments.configs import rru_ilids_vid


def get_config():
  c = rru_ilids_vid.get_config()
  c.dataset = 'mars'
  c.dataset_config = ''
  c.all_splits = False
  c.eval.protocol = 'mars_official'  # the MARS evaluation code
  c.eval.batch_size = 32
  return c
