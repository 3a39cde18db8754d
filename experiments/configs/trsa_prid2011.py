r"""TRSA on PRID-2011: trsa_ilids_vid.py with PRID's data and epoch length.

The builder reads the standard split file (torchreid's splits_prid2011.json:
10 splits of 89 train + 89 test of the same 178 persons): with 89 training
identities and P = 8, K = 4 an epoch is floor(89 * 4 / 32) = 11 steps, so 600 epochs = 6600 steps, decays at
2200 and 4400.

  python -m experiments.train --config=experiments/configs/trsa_prid2011.py \
      --workdir=workdir/trsa_prid2011 --config.pretrained=resnet50.safetensors
"""

from experiments.configs import trsa_ilids_vid


def get_config():
  c = trsa_ilids_vid.get_config()
  c.dataset = 'prid2011'
  c.dataset_config = 'split_0'
  return c
