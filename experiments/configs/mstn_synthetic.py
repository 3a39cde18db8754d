r"""MSTN ([MSTN] in docs/references.md) and its Table 1 rows on the built-in synthetic dataset.

A variant is chosen after the file name (default full):

  python -m experiments.train --config=experiments/configs/mstn_synthetic.py:cnn \
      --workdir=/tmp/jaxreid/mstn_cnn

  cnn        multi-scale features f1 with adaptive average pooling (no recurrence)
  cnn_lstm   + two LSTM blocks on spatially averaged 'cut' features
  cnn_clstm  + two CLSTM blocks instead (the paper's network)
  full       CNN+CLSTM+Triplet: the paper's objective, eq. 5
  two_stage  full, trained in the paper's two stages: steps 0-249 train f1's
             modules on Loss_c alone (the rest held at init), steps 250-499
             everything on eq. 5 (the same 500 steps in all)

The first three train with softmax on f1 ('aux_ce', eq. 2) + label-smoothed
CE on the final feature ('ce', eq. 4); 'full' adds the batch-hard triplet
(eq. 3), as Table 1 adds it last.

Clips are the paper's "eight consecutive pictures": T = 8 consecutive frames
from a random start. Everything else is the pooling baseline's budget
(synthetic_baseline.py: ResNet-18 at width 16 on 128 x 64, P = 8 x K = 4
clips, Adam 1e-3 with
base.py's schedule and augmentation, 500 steps, label smoothing 0.1, margin
0.3), so the rows compare with the pooling baseline. The MSTN head is shrunk
with the backbone: 64 channels per scale (f1: 256; a quarter of the paper's
256, as width 16 is a quarter of 64), 'cut' and the recurrent blocks at 64
(an eighth of the paper's 512: at 128 a train step took 3.5x as long on the
shared 2-core CPU, docs/mstn.md).
Last stride 2 as the paper, so C2..C5 are 32x16, 16x8, 8x4, 4x2 and f1 lies
on C4's 8 x 4 grid.
"""

import ml_collections

from experiments.configs import base
from jaxreid.models import mstn

VARIANTS = ('cnn', 'cnn_lstm', 'cnn_clstm', 'full', 'two_stage')
RECURRENCE = {'cnn': 'none', 'cnn_lstm': 'lstm', 'cnn_clstm': 'clstm', 'full': 'clstm',
              'two_stage': 'clstm'}


def get_config(variant: str = 'full'):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown mstn_synthetic variant {variant!r}; valid choices: '
                     f'{", ".join(VARIANTS)}.')
  c = base.get_config()
  c.clip_len = 8  # "eight consecutive pictures"
  c.train_sampler = 'consecutive'
  c.model_name = 'mstn'
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet18', backbone_width=16, last_stride=2,
      scale_features=64, cut_features=64, lstm_features=64,
      recurrence=RECURRENCE[variant],
      clstm_kernel=3, peephole=False, forget_bias=0.0, residual=True,
      temporal_kernel=3, upsampling='nearest', bnneck=False))
  terms = {'aux_ce': {'weight': 1.0},  # eq. 2 is the plain softmax loss
           'ce': {'weight': 1.0, 'label_smoothing': 0.1}}
  if variant in ('full', 'two_stage'):
    terms['triplet'] = {'weight': 1.0}
  c.losses = ml_collections.ConfigDict(terms)
  if variant == 'two_stage':
    c.first_stage.steps = c.num_train_steps // 2
    c.first_stage.losses = mstn.FIRST_STAGE_LOSSES
    c.first_stage.modules = mstn.FIRST_STAGE_MODULES
  return c
