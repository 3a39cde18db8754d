r"""A seconds-long smoke run for tests and CI: the pooling baseline's model and
objective (synthetic_baseline.py) with a tiny ResNet, on tiny synthetic data.

  python -m experiments.train --config=experiments/configs/tiny.py --workdir=/tmp/jaxreid/tiny
"""

import ml_collections

from experiments.configs import base


def get_config():
  c = base.get_config()
  c.dataset_config = 'tiny'
  c.height, c.width = 64, 32
  c.num_identities, c.num_instances = 4, 2
  c.model_name = 'temporal_pooling'
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet_tiny', backbone_width=8, last_stride=1))
  c.losses = ml_collections.ConfigDict({'ce': {'weight': 1.0, 'label_smoothing': 0.1},
                                        'triplet': {'weight': 1.0}})
  c.num_train_steps = 6
  c.schedule.warmup_steps = 2
  c.schedule.decay_steps = (4,)
  c.log_every_steps = 2
  c.checkpoint_every_steps = 3
  c.eval.batch_size = 16
  return c
