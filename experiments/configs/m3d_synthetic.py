r"""The M3D paper's models on the built-in synthetic dataset, one small config each.

A variant is chosen after the file name (default two_stream):

  python -m experiments.train --config=experiments/configs/m3d_synthetic.py:m3d_ral \
      --workdir=/tmp/jaxreid/m3d_ral

  2d          the 2D network (frame features averaged), the same head as the others
  m3d         M3D layers at the first block of each stage
  m3d_ral     M3D + RAL after stages 1-3
  two_stream  2D stream + M3D + RAL stream, embeddings concatenated
  i3d, p3d_a, p3d_b, p3d_c   Table 1's 3D baselines in every block

Clips are the paper's: T = 8 consecutive frames from a random start (its
official code's sampler), so eq. 6 gives n = 3 temporal kernels per M3D layer
(dilations 1, 2, 3), and tests take the tracklet in consecutive chunks of 8.
Everything else is the pooling baseline's (synthetic_baseline.py: ResNet-18 at
width 16 on 128 x 64, P = 8 x K = 4 clips, Adam, CE with label smoothing +
batch-hard triplet, base.py's 500 steps), so the variants train with the same
budget and objective; the two-stream model's CE is 'ce_streams' (one per
stream). In a ResNet-18's basic blocks the temporal block replaces the first
3x3.
"""

import ml_collections

from experiments.configs import base

VARIANTS = ('2d', 'm3d', 'm3d_ral', 'two_stream', 'i3d', 'p3d_a', 'p3d_b', 'p3d_c')


def get_config(variant: str = 'two_stream'):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown m3d_synthetic variant {variant!r}; valid choices: '
                     f'{", ".join(VARIANTS)}.')
  c = base.get_config()
  c.clip_len = 8  # the paper's 8 consecutive frames
  c.train_sampler = 'consecutive'
  model = dict(backbone='resnet18', backbone_width=16, last_stride=1, clip_len=c.clip_len,
               feature_dim=0,
               p3d_norm='per_path')  # P3D: the M3D authors' BN per path, or AP3D's 'after_block'
  ce = {'weight': 1.0, 'label_smoothing': 0.1}  # the pooling baseline's
  if variant == 'two_stream':
    c.model_name = 'two_stream_m3d'
    model.update(temporal='m3d', ral='sct', normalize_streams=False)
    c.losses = ml_collections.ConfigDict({'ce_streams': ce, 'triplet': {'weight': 1.0}})
  else:
    c.model_name = 'video_resnet'
    model.update(temporal='m3d' if variant == 'm3d_ral' else variant,
                 ral='sct' if variant == 'm3d_ral' else '')
    c.losses = ml_collections.ConfigDict({'ce': ce, 'triplet': {'weight': 1.0}})
  c.model = ml_collections.ConfigDict(model)
  c.eval.clip_len = c.clip_len  # RAL's temporal branch has T-sized weights
  c.eval.sampler = 'full_chunks'  # the paper's test protocol
  return c
