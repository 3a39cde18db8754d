r"""CRF (CNN + RNN fusion; [CRF] in docs/references.md) on iLIDS-VID, as the paper
and McLaughlin's code.

The paper takes its input and training set-up from McLaughlin et al. (its
[14]; official Torch7 code niallmcl/Recurrent-Convolutional-Video-ReID) and adds
x_C (eq. 6), the softmax of eq. 9 on x_F and the body-part fusion (eq. 10):

  * input: YUV + 2 optical-flow channels (Farneback here, Lucas-Kanade there;
    data_pipelines/optical_flow.py), frames resized to 64 x 48 (the code);
  * sequences of T = 16 consecutive frames (section 3.2), at a random start;
  * augmentation one draw per sequence: horizontal flip (flow mirrored, dx
    negated) and a random shift: the code crops 56 x 40 at offsets 1..8; here
    the frame is zero-padded by 4 and cropped back to 64 x 48 (shifts of
    -4..4, the same 9 x 9 positions but one input size for training and test,
    which the FC layer needs);
  * CNN 16/32/32 5x5 filters, ReLU (the paper; --config.model.activation=tanh
    for the code), FC to 128, dropout 0.6; recurrent layer eq. 3-4;
  * siamese pairs, half positive (cross-camera) and half negative per
    iteration (section 2.6): the code trains on one pair per iteration
    alternating positive and negative; the smallest batch with equal numbers
    in each iteration is one of each, num_pairs = 2 (4 sequences);
  * eq. 9 with W1 = W2 = W3 = 1: the 'ce' term averages the softmax loss over
    the batch's 2 x num_pairs sequences, i.e. (L_sof(x_i) + L_sof(x_j)) / 2
    per pair, hence its weight 2;  alpha = 2 (the contrastive margin);
  * SGD, lr 1e-3, momentum 0.9, no weight decay, constant rate (the code);
    the code also clamps every gradient element to +-5, which
    jaxreid/training/optim.py has no option for (not applied here);
  * epochs: the code's epoch is 2 x N_train pairs (``config.epoch =
    'pairs'``), its default 500 epochs (its README: 1000): with 2 pairs per
    step an epoch is N_train steps, 150 on iLIDS-VID, so 500 epochs = 75000
    steps (the paper itself only says "more than 10 epochs");
  * test: every frame in chunks of 16, chunk features x_F averaged per
    tracklet, Euclidean distance (section 3.2), over the 10 splits.

  python -m experiments.train --config=experiments/configs/crf_ilids_vid.py \
      --workdir=workdir/crf_ilids_vid [--config.model.region=upper]
"""

import ml_collections

from experiments.configs import base


def set_pairs(c, num_pairs: int) -> None:
  """Siamese-pair batches of `num_pairs` pairs (rows 2i, 2i + 1); the loop
  sizes batches as num_identities * num_instances clips."""
  c.batch_sampler = 'pairs'
  c.num_pairs = num_pairs
  c.num_identities, c.num_instances = num_pairs, 2


def get_config():
  c = base.get_config()  # every field documented there

  c.dataset = 'ilids_vid'
  c.dataset_config = 'split_0'
  c.all_splits = True
  c.manual_dir = ''  # where the i-LIDS-VID release was extracted
  c.height, c.width = 64, 48
  c.clip_len = 16
  c.train_sampler = 'consecutive'
  c.use_flow = True  # the pipeline adds batch['flow'] (B, T, H, W, 2)
  set_pairs(c, 2)
  c.augment.flip, c.augment.pad, c.augment.random_erasing = True, 4, 0.0

  c.model_name = 'crf'
  c.model = ml_collections.ConfigDict(dict(
      color='yuv', use_flow=True,
      normalization='frame',  # per-frame channel standardization; 'mclaughlin': the code's
      region='full',  # full | upper | lower (section 2.7; crf_fusion.py fuses them)
      branches='cnn_rnn',  # Table 3: cnn | rnn | cnn_rnn
      feature='',
      filters=(16, 32, 32), kernel_size=5, conv_padding=4,
      activation='relu',  # paper; 'tanh': the code
      feature_dim=128, dropout=0.6, recurrent_dropout=0.6,
      input_projection=True,  # eq. 3's W_i; False: the code's o_t = f_t + W_s r_{t-1}
      branch_classifiers=False))
  c.pretrained = ''

  c.losses = ml_collections.ConfigDict({  # eq. 9
      'contrastive': {'weight': 1.0},  # eq. 7, alpha = 2; form='hinge': the code's criterion
      'ce': {'weight': 2.0}})

  c.optimizer = 'sgd'
  c.learning_rate = 1e-3
  c.momentum = 0.9
  c.nesterov = False
  c.weight_decay = 0.0
  c.pretrained_lr_mult = 1.0
  # McLaughlin's 500 epochs at a constant rate.
  c.epoch = 'pairs'  # 2 x N_train pairs
  c.num_train_steps, c.num_train_epochs = None, 500
  c.schedule.kind = 'step'
  c.schedule.warmup_steps = 0
  c.schedule.decay_steps = (10**9,)  # constant learning rate
  c.schedule.decay_factor = 1.0
  c.log_every_steps, c.log_every_epochs = None, 1
  c.checkpoint_every_steps, c.checkpoint_every_epochs = None, 50

  c.eval.clip_len = 16
  c.eval.sampler = 'all'  # every frame, in chunks of 16, averaged per tracklet
  c.eval.batch_size = 16
  c.eval.metric = 'euclidean'
  c.eval.normalize_features = False
  return c
