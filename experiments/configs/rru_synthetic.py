r"""RRU + STIM (Liu et al., AAAI 2019) on the built-in synthetic dataset, one small
config per variant.

A variant is chosen after the file name (default full):

  python -m experiments.train --config=experiments/configs/rru_synthetic.py:rru_s \
      --workdir=/tmp/jaxreid/rru_s

  full       RRU + STIM, L_c + L_v + L_p (Table 1's last row)
  no_lp      RRU + STIM, L_c + L_v
  stim_only  STIM on the raw maps (no RRU), L_c + L_v (Table 2's first row)
  rru_s, rru_c, rru_ad, rru_od   the RRU's gate variants of Table 1 (+ STIM, L_p)
  rru_lstm   RRU + LSTM (256 hidden units) instead of STIM, L_c + L_v
  baseline   average pooling of the raw maps, L_c + L_v (Table 1's Baseline + L_v)

Clips are the paper's (its official code's sampler): T = 8 consecutive
frames from a random start. Budget and data are the pooling baseline's
(ResNet-18 at width 16, last stride 1, on 128 x 64 frames: 8 x 4 maps of 128
channels, so 8 strips; P = 8 x K = 4 clips; Adam 1e-3, 500 steps; its
augmentation), so the variants compare with the pooling baseline. The objective is the paper's (plain CE, margins
0.4; no auxiliary classifier: that is Inception-v3's). The heads are narrower
than the paper's (its 256-channel transition layer and STIM sit on 2048
channels; here C = 128): transition 64, spatial hidden 64 (H W = 32), STIM
128, classifier 256, so the head does not dominate the CPU budget. Test:
cosine distance (the paper), consecutive chunks of T = 8 frames averaged per
tracklet.
"""

import ml_collections

from experiments.configs import base

VARIANTS = ('full', 'no_lp', 'stim_only', 'rru_s', 'rru_c', 'rru_ad', 'rru_od', 'rru_lstm',
            'baseline')


def get_config(variant: str = 'full'):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown rru_synthetic variant {variant!r}; valid choices: '
                     f'{", ".join(VARIANTS)}.')
  c = base.get_config()
  c.clip_len = 8  # the paper's 8 consecutive frames
  c.train_sampler = 'consecutive'
  c.model_name = 'rru'
  rru = {'stim_only': 'none', 'baseline': 'none', 'rru_s': 's', 'rru_c': 'c',
         'rru_ad': 'ad', 'rru_od': 'od'}.get(variant, 'full')
  temporal = {'rru_lstm': 'lstm', 'baseline': 'mean'}.get(variant, 'stim')
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet18', backbone_width=16, last_stride=1,
      rru=rru, temporal=temporal,
      transition_features=64, spatial_hidden=64, stim_features=128, lstm_features=128,
      classifier_hidden=256, dropout=0.5, classifier_leaky_slope=0.0))
  with_lp = variant not in ('no_lp', 'stim_only', 'rru_lstm', 'baseline')
  c.losses = ml_collections.ConfigDict({
      'ce': {'weight': 1.0}, 'triplet': {'weight': 1.0, 'margin': 0.4},
      **({'part_triplet': {'weight': 1.0}} if with_lp else {})})  # part margin: 0.4
  c.eval.metric = 'cosine'
  return c
