r"""Table 1 'Baseline + L_v + SAM + Reg': the temporal regularization (lambda = 1) added.

Config argument: the dataset, ilids_vid (default) or prid2011; see trsa_ablation.py.

  python -m experiments.train --config=experiments/configs/trsa_ablation_reg.py:ilids_vid \
      --workdir=workdir/trsa_ablation_reg --config.pretrained=resnet50.safetensors
"""

from experiments.configs import trsa_ablation


def get_config(dataset: str = 'ilids_vid'):
  return trsa_ablation.ablation(dataset, attention=True, losses={'ce': 1.0, 'triplet': 1.0, 'temporal_reg': 1.0})
