r"""TRSA's Table 1 rows, each a few lines on top of the full model.

Every ``trsa_ablation_<row>.py`` takes the dataset as its config argument
(``ilids_vid``, the default, or ``prid2011``) and forks the full model's
config (trsa_ilids_vid.py / trsa_prid2011.py), as the paper runs every row
"of the same settings":

  python -m experiments.train \
      --config=experiments/configs/trsa_ablation_sam.py:prid2011 --workdir=...

| row (paper)                    | file                    | model              | losses            |
|--------------------------------|-------------------------|--------------------|-------------------|
| Baseline                       | trsa_ablation_baseline  | attention=False    | ce                |
| Baseline + L_v                 | trsa_ablation_lv        | attention=False    | ce + triplet      |
| Baseline + L_v + SAM           | trsa_ablation_sam       | attention=True     | ce + triplet      |
| Baseline + L_v + SAM + Reg     | trsa_ablation_reg       | attention=True     | ce + triplet + Reg|
| Baseline + L_f + SAM + Reg     | trsa_ilids_vid / _prid2011 (the full model)                     |

Softmax CE without label smoothing: the paper's "softmax cross-entropy".
"""

import ml_collections

from experiments.configs import trsa_ilids_vid
from experiments.configs import trsa_prid2011

BASES = {'ilids_vid': trsa_ilids_vid, 'prid2011': trsa_prid2011}


def base_config(dataset: str = ''):
  """The full TRSA config of `dataset` ('' = ilids_vid)."""
  dataset = dataset or 'ilids_vid'
  if dataset not in BASES:
    raise ValueError(f'Unknown TRSA dataset {dataset!r}; valid choices: '
                     f'{", ".join(sorted(BASES))}.')
  return BASES[dataset].get_config()


def ablation(dataset: str, *, attention: bool, losses: dict):
  """The full config of `dataset` with SAM on or off and the loss terms `losses`
  (term -> weight; every term with its default options)."""
  c = base_config(dataset)
  c.model.attention = attention
  c.losses = ml_collections.ConfigDict({term: {'weight': w} for term, w in losses.items()})
  return c
