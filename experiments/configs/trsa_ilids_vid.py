r"""TRSA (Wang & Zhao; [TRSA] in docs/references.md) on iLIDS-VID, as the paper's section 3.2.

ResNet-50 (ImageNet, last stride 1) + parameter-free spatial attention + GAP
+ temporal average pooling; L_f (eq. 8 focal loss, gamma 2) + L_v (batch-hard
triplet, m 0.3) + lambda Reg (eq. 4, lambda 1); N = 15 frames at 256 x 128,
random horizontal flip; Adam, lr 3e-4, weight decay 5e-4, 600 epochs with the
rate divided by 10 after 200 and 400. Table 1's full model (Baseline + L_f +
SAM + Reg); its other rows are trsa_ablation_*.py.

  python -m experiments.train --config=experiments/configs/trsa_ilids_vid.py \
      --workdir=workdir/trsa_ilids_vid --config.pretrained=resnet50.safetensors

Epochs: the paper gives no batch size; we take the usual video re-ID PK
batch, P = 8 identities x K = 4 tracklets (jiyanggao/Video-Person-ReID's
default, which its RandomIdentitySampler draws). That sampler's epoch is every
training identity K times (``config.epoch = 'identities'``), i.e.
floor(num_train_ids * K / (P * K)) batches (drop_last): 150 identities -> 18
steps per epoch on iLIDS-VID, so 600 epochs = 10800 steps, decays at 3600
and 7200 (experiments/durations.py counts them on the prepared data).
"""

import ml_collections

from experiments.configs import base


def get_config():
  c = base.get_config()  # every field documented there

  c.dataset = 'ilids_vid'
  c.dataset_config = 'split_0'
  c.all_splits = True  # the 10 standard splits, mean (and std) reported
  c.manual_dir = ''  # where the i-LIDS-VID release was extracted
  c.height, c.width = 256, 128
  c.clip_len = 15  # N = 15 randomly selected frames
  c.train_sampler = 'restricted'  # random frames spread over the tracklet
  c.num_identities, c.num_instances = 8, 4  # not in the paper (see above)
  # Random horizontal flip only (the fork's other augmentations off).
  c.augment.flip, c.augment.pad, c.augment.random_erasing = True, 0, 0.0

  c.model_name = 'trsa'
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet50', backbone_width=None, last_stride=1,
      attention=True,  # SAM
      attention_reduce='sum',  # eq. 1: softmax over positions of the channel sum
      spatial_pool='mean',  # GAP of alpha * f, as Fig. 1
      bnneck=False,  # eq. 7: FC directly on the video feature
      classifier_bias=True))
  # ImageNet ResNet-50 (torchvision layout, experiments/convert_weights.py);
  # the paper starts from it. '' trains from scratch.
  c.pretrained = ''

  # Eq. 5 and 9: L_f + L_v + lambda Reg, lambda = 1.
  c.losses = ml_collections.ConfigDict({
      'focal': {'weight': 1.0},  # eq. 8 (mode 'target'), gamma 2
      'triplet': {'weight': 1.0},  # margin 0.3, Euclidean distance
      'temporal_reg': {'weight': 1.0}})

  c.optimizer = 'adam'
  c.learning_rate = 3e-4
  c.weight_decay = 5e-4  # L2 added to the gradient, as torch.optim.Adam's weight_decay
  c.pretrained_lr_mult = 1.0
  # 600 epochs, the rate divided by 10 after 200 and 400; no warmup.
  c.epoch = 'identities'  # every training identity K times
  c.num_train_steps, c.num_train_epochs = None, 600
  c.schedule.kind = 'step'
  c.schedule.warmup_steps = 0
  c.schedule.decay_steps, c.schedule.decay_epochs = None, (200, 400)
  c.schedule.decay_factor = 0.1
  c.checkpoint_every_steps, c.checkpoint_every_epochs = None, 50
  c.log_every_steps, c.log_every_epochs = None, 1

  c.eval.clip_len = 15
  c.eval.sampler = 'all'  # every frame, in chunks of 15, averaged per tracklet
  c.eval.batch_size = 16
  c.eval.metric = 'euclidean'  # section 3.2
  c.eval.normalize_features = False
  return c
