r"""A seconds-long smoke run for tests and CI: tiny ResNet, tiny synthetic data.

  python -m experiments.train --config=experiments/configs/tiny.py --workdir=/tmp/jaxreid/tiny
"""

from experiments.configs import synthetic_baseline


def get_config():
  c = synthetic_baseline.get_config()
  c.dataset_config = 'tiny'
  c.height, c.width = 64, 32
  c.num_identities, c.num_instances = 4, 2
  c.model.backbone = 'resnet_tiny'
  c.model.backbone_width = 8
  c.num_train_steps = 6
  c.schedule.warmup_steps = 2
  c.schedule.decay_steps = (4,)
  c.log_every_steps = 2
  c.checkpoint_every_steps = 3
  c.eval.batch_size = 16
  return c
