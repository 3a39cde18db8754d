r"""RRU + STIM on PRID-2011: rru_ilids_vid.py with PRID's data and epoch length.

The builder reads the standard split file (10 splits of 89 train + 89 test
of the 178 persons with more than 21 frames); with 89 training identities
and N = 10 an epoch is 8 steps, so 900 epochs = 7200 steps, constant rate.

  python -m experiments.train --config=experiments/configs/rru_prid2011.py \
      --workdir=workdir/rru_prid2011 --config.pretrained=inception_v3.safetensors
"""

from experiments.configs import rru_ilids_vid


def get_config():
  c = rru_ilids_vid.get_config()
  c.dataset = 'prid2011'
  c.dataset_config = 'split_0'
  return c
