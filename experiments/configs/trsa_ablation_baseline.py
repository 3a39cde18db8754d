r"""Table 1 'Baseline': ResNet-50 (last stride 1), GAP + temporal average pooling, softmax CE.

Config argument: the dataset, ilids_vid (default) or prid2011; see trsa_ablation.py.

  python -m experiments.train --config=experiments/configs/trsa_ablation_baseline.py:ilids_vid \
      --workdir=workdir/trsa_ablation_baseline --config.pretrained=resnet50.safetensors
"""

from experiments.configs import trsa_ablation


def get_config(dataset: str = 'ilids_vid'):
  return trsa_ablation.ablation(dataset, attention=False, losses={'ce': 1.0})
