r"""CRF ([CRF] in docs/references.md) on the built-in synthetic dataset; Table 3's
variants after the file name.

  python -m experiments.train --config=experiments/configs/crf_synthetic.py:cnn_rnn \
      --workdir=/tmp/jaxreid/crf_synthetic [--config.model.region=upper]

  cnn       x_C only (no recurrent layer)
  rnn       x_R only (McLaughlin's RCN)
  cnn_rnn   x_F = x_C + x_R (the CRF network; default)

The paper's network, input and objective (crf_ilids_vid.py: YUV + Farneback
flow, 16/32/32 5x5 CNN with ReLU and the code's zero padding 4, FC 128,
eq. 3-4, siamese (alpha = 2) + softmax per sequence, pairs half positive
(cross-camera) and half negative), on a budget that trains in 10-20 minutes
on a shared 2-core CPU (XLA:CPU's convolution gradients with 5 input channels
are slow: ~1.5 s per step of 8 pairs x 8 frames at 64 x 32, measured):
frames at the stored 64 x 32 (not resized to the code's 64 x 48), T = 8
consecutive frames (the synthetic tracklets have 8..48), 8 pairs (16
sequences) per step, shifts of +-2 (pad 2), Adam 1e-3 (the synthetic
comparisons' optimizer; the paper's SGD 1e-3 needs hundreds of epochs) for 800
steps, decayed at 600 and 700. Evaluation as the paper: every frame in chunks
of T, features averaged per tracklet, Euclidean distance.
"""

from experiments.configs import crf_ilids_vid

VARIANTS = ('cnn', 'rnn', 'cnn_rnn')


def get_config(variant: str = 'cnn_rnn'):
  if variant not in VARIANTS:
    raise ValueError(f'Unknown crf_synthetic variant {variant!r}; valid choices: '
                     f'{", ".join(VARIANTS)}.')
  c = crf_ilids_vid.get_config()
  c.dataset = 'synthetic_video_reid'
  c.dataset_config = ''
  c.all_splits = False
  c.height, c.width = 64, 32  # as stored
  c.clip_len = 8
  crf_ilids_vid.set_pairs(c, 8)
  c.augment.pad = 2
  c.model.branches = variant

  c.optimizer = 'adam'
  c.learning_rate = 1e-3
  c.weight_decay = 5e-4
  c.num_train_steps, c.num_train_epochs = 800, None
  c.schedule.warmup_steps = 50
  c.schedule.decay_steps, c.schedule.decay_factor = (600, 700), 0.1
  c.log_every_steps, c.log_every_epochs = 50, None
  c.checkpoint_every_steps, c.checkpoint_every_epochs = 400, None

  c.eval.clip_len = c.clip_len
  c.eval.batch_size = 64
  return c
