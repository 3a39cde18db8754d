"""One config of every model family, and how to shrink it to seconds.

``experiments/record_behaviour.py`` trains these to check that a refactor
changes nothing; ``tests/test_every_parameter_learns.py`` builds them to check
that every parameter gets a gradient. No absl flags here, so tests can import it.
"""

from experiments.configs import (crf_synthetic, m3d_synthetic, mstn_synthetic, rru_synthetic,
                                 synthetic_baseline, trsa_synthetic)

STEPS = 20  # optimizer steps of a tiny run

CONFIGS = {
    'baseline': synthetic_baseline.get_config,
    'mstn': mstn_synthetic.get_config,
    'rru': rru_synthetic.get_config,
    'rru_stim_only': lambda: rru_synthetic.get_config('stim_only'),
    'm3d': lambda: m3d_synthetic.get_config('m3d'),
    'm3d_ral': lambda: m3d_synthetic.get_config('m3d_ral'),
    'i3d': lambda: m3d_synthetic.get_config('i3d'),
    'p3d_c': lambda: m3d_synthetic.get_config('p3d_c'),
    'two_stream': m3d_synthetic.get_config,
    'trsa': trsa_synthetic.get_config,
    'crf': crf_synthetic.get_config,
}


def tiny(config, data_dir: str):
  """`config` shrunk to seconds: tiny dataset, backbone and budget."""
  config.data_dir = data_dir
  config.dataset_config = 'tiny'
  config.height, config.width = 64, 32
  config.num_identities, config.num_instances = 4, 2
  if config.batch_sampler == 'pairs':  # CRF: P pairs of two clips
    config.num_pairs = 4
  if 'backbone' in config.model:
    config.model.backbone, config.model.backbone_width = 'resnet_tiny', 8
  config.num_train_steps = STEPS
  config.schedule.warmup_steps = 2
  if config.schedule.kind == 'step':
    config.schedule.decay_steps = (10, 15)
  config.log_every_steps = 1
  config.checkpoint_every_steps = STEPS
  config.eval_every_steps = 0
  config.eval.batch_size = 16
  return config
