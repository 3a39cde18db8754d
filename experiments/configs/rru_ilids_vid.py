r"""RRU + STIM (Liu, Yuan, Zhou, Li, AAAI 2019) on iLIDS-VID, as the paper.

Inception-v3 (ImageNet, through ``config.pretrained``) on 299 x 299 frames,
Mixed_7c maps (8 x 8 x 2048) refined by the RRU, integrated by STIM into the
256-d video feature; L = L_c (identity CE + Inception auxiliary CE) + L_v
(batch-hard triplet on f, m = 0.4) + L_p (batch-hard triplet per strip of the
RRU output, averaged, m = 0.4) (eq. 7, 8, 10). N = 10 identities x K = 2
tracklets x T = 8 consecutive frames per batch; no data augmentation. SGD,
Nesterov momentum 0.9, learning rate 0.01 with 0.1x for the pretrained
backbone, weight decay 5e-4. Test: cosine distance between video features.

  python -m experiments.train --config=experiments/configs/rru_ilids_vid.py \
      --workdir=workdir/rru_ilids_vid --config.pretrained=inception_v3.safetensors

Schedule: the paper gives none. The official code (yolomax/person-reid-lib)
never decays the rate (its MultiStepLR milestone is never reached) and
tests every 20 epochs up to 900; an epoch is one pass of its
identity-exhausting sampler, floor(num_ids / N) batches (150 training
identities -> 15 steps; ``config.epoch = 'identities'``, counted on the
prepared data by experiments/durations.py). So: 900 epochs at a constant rate.

Test: the paper feeds all frames of a tracklet at once; the pipeline feeds
chunks of T = 8 frames (the last padded by cycling its own frames) and
averages their features per tracklet (``eval.sampler='all'``;
``--config.eval.clip_len`` for longer chunks).

Table 1's rows: ``--config.model.rru=none|s|c|ad|od|full``,
``--config.model.temporal=mean|lstm|stim``, and the loss terms (Baseline:
``--config.losses="{'ce': {'weight': 1}, 'aux_ce': {'weight': 1}}"``).
"""

import ml_collections

from experiments.configs import base


def get_config():
  c = base.get_config()  # every field documented there

  c.dataset = 'ilids_vid'
  c.dataset_config = 'split_0'
  c.all_splits = True  # the 10 standard splits, mean (and std) reported
  c.manual_dir = ''  # where the i-LIDS-VID release was extracted
  c.height, c.width = 299, 299  # "each input video frame is resized to 299 x 299"
  c.clip_len = 8  # T
  c.train_sampler = 'consecutive'  # the official code: 8 consecutive frames
  c.num_identities, c.num_instances = 10, 2  # N, K
  c.augment.flip, c.augment.pad, c.augment.random_erasing = False, 0, 0.0  # none

  c.model_name = 'rru'
  c.model = ml_collections.ConfigDict(dict(
      backbone='inception_v3',
      rru='full',  # none | full | s | c | ad | od (Table 1)
      temporal='stim',  # stim | lstm | mean (Table 1)
      transition_features=256, spatial_hidden=128, stim_features=256,
      classifier_hidden=512, dropout=0.5,
      classifier_leaky_slope=0.0,  # 0.1: the official code's LeakyReLU
      aux_classifier=True,  # Inception-v3's auxiliary classifier (L_c)
      inception_transform_input=True))  # Google's (x - 0.5) / 0.5 input scale
  # ImageNet Inception-v3 (torchvision layout, experiments/convert_weights.py);
  # the paper starts from it. '' trains from scratch.
  c.pretrained = ''

  # Eq. 7: L_c (identity CE + auxiliary CE) + L_v + L_p.
  c.losses = ml_collections.ConfigDict({
      'ce': {'weight': 1.0}, 'aux_ce': {'weight': 1.0},
      'triplet': {'weight': 1.0, 'margin': 0.4},  # m; Euclidean D (eq. 8)
      'part_triplet': {'weight': 1.0}})  # m = 0.4, Euclidean D (eq. 10)

  c.optimizer = 'sgd'
  c.learning_rate = 0.01
  c.momentum = 0.9
  c.nesterov = True
  c.weight_decay = 5e-4
  c.pretrained_lr_mult = 0.1  # the pretrained layers learn at 0.1x
  # 900 epochs at a constant rate; checkpoints where the code tests.
  c.epoch = 'identities'  # the identity-exhausting sampler: floor(ids / N) steps
  c.num_train_steps, c.num_train_epochs = None, 900
  c.schedule.kind = 'step'
  c.schedule.warmup_steps = 0
  c.schedule.decay_steps = ()  # no decay (the official code's milestone is never reached)
  c.schedule.decay_factor = 0.1
  c.checkpoint_every_steps, c.checkpoint_every_epochs = None, 20  # the code tests every 20 epochs
  c.log_every_steps, c.log_every_epochs = 100, 5  # every 5 epochs, or 100 steps if sooner

  c.eval.clip_len = 8
  c.eval.sampler = 'all'  # every frame, in chunks of 8, averaged per tracklet
  c.eval.batch_size = 16
  c.eval.metric = 'cosine'  # "compute the cosine distance"
  c.eval.normalize_features = False
  return c
