r"""Default: the temporal-pooling baseline on the built-in synthetic dataset.

A ResNet-18 at a quarter of its width, softmax (label smoothing) + batch-hard
triplet with a BNNeck, Adam; data and budget are base.py's. The dataset
stores 64 x 32 frames; the pipeline feeds the network 128 x 64
(docs/design.md: XLA's CPU convolutions are very slow on the 2-pixel-wide
maps a 64 x 32 input would give). Trains and evaluates in about eight minutes
on an idle 2-core CPU (README, "Results").

  python -m experiments.train --config=experiments/configs/synthetic_baseline.py \
      --workdir=/tmp/jaxreid/synthetic_baseline
"""

import ml_collections

from experiments.configs import base


def get_config():
  c = base.get_config()  # every field documented there

  c.model_name = 'temporal_pooling'
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet18',  # resnet_tiny | resnet18 | resnet34 | resnet50 (| inception_v3 for rru)
      backbone_width=16,  # channels of the first stage; 0 = the published width (64)
      last_stride=1))  # stride of the last stage (1 = twice the final map, as in BoT)

  c.losses = ml_collections.ConfigDict({
      'ce': {'weight': 1.0,
             'label_smoothing': 0.1},  # of the softmax cross-entropy (0 = plain softmax)
      'triplet': {'weight': 1.0}})  # batch-hard, margin 0.3, Euclidean distance
  return c
