r"""CRF on PRID-2011: crf_ilids_vid.py with PRID's data and epoch length.

The builder reads the standard split file (10 splits of 89 train + 89 test
of the 178 persons seen by both cameras; McLaughlin's code takes the first 200
persons and splits them 100/100 at random): 500 of the code's epochs of
2 x 89 pairs, 2 pairs per step, = 44500 steps.

  python -m experiments.train --config=experiments/configs/crf_prid2011.py \
      --workdir=workdir/crf_prid2011 [--config.model.region=upper]
"""

from experiments.configs import crf_ilids_vid


def get_config():
  c = crf_ilids_vid.get_config()
  c.dataset = 'prid2011'
  c.dataset_config = 'split_0'
  return c
