r"""Table 1 'Baseline + L_v': the baseline with batch-hard triplet (m = 0.3) added to softmax CE.

Config argument: the dataset, ilids_vid (default) or prid2011; see trsa_ablation.py.

  python -m experiments.train --config=experiments/configs/trsa_ablation_lv.py:ilids_vid \
      --workdir=workdir/trsa_ablation_lv --config.pretrained=resnet50.safetensors
"""

from experiments.configs import trsa_ablation


def get_config(dataset: str = 'ilids_vid'):
  return trsa_ablation.ablation(dataset, attention=False, losses={'ce': 1.0, 'triplet': 1.0})
