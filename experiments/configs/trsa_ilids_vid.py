r"""TRSA (Wang & Zhao; [TRSA] in docs/references.md) on iLIDS-VID, as the paper's section 3.2.

ResNet-50 (ImageNet, last stride 1) + parameter-free spatial attention + GAP
+ temporal average pooling; L_f (eq. 8 focal loss, gamma 2) + L_v (batch-hard
triplet, m 0.3) + lambda Reg (eq. 4, lambda 1); N = 15 frames at 256 x 128,
random horizontal flip; Adam, lr 3e-4, weight decay 5e-4, 600 epochs with the
rate divided by 10 after 200 and 400. Table 1's full model (Baseline + L_f +
SAM + Reg); its other rows are trsa_ablation_*.py.

  python -m experiments.train --config=experiments/configs/trsa_ilids_vid.py \
      --workdir=workdir/trsa_ilids_vid --config.pretrained=resnet50.safetensors

Epochs as steps: the paper gives no batch size; we take the usual video re-ID
PK batch, P = 8 identities x K = 4 tracklets (jiyanggao/Video-Person-ReID's
default, which its RandomIdentitySampler draws). That sampler's epoch is every
training identity K times, i.e. floor(num_train_ids * K / (P * K)) batches
(drop_last): 150 identities -> 18 steps per epoch on iLIDS-VID, so 600 epochs
= 10800 steps, decays at 3600 and 7200 (``set_epoch_schedule``).
"""

import ml_collections

from experiments.configs import synthetic_baseline

NUM_TRAIN_IDS = 150  # iLIDS-VID: 300 identities, half for training
EPOCHS, DECAY_EPOCHS = 600, (200, 400)


def steps_per_epoch(c, num_train_ids: int) -> int:
  """Batches of one RandomIdentitySampler epoch (every identity K times, drop_last)."""
  return max((num_train_ids * c.num_instances) // (c.num_identities * c.num_instances), 1)


def set_epoch_schedule(c, num_train_ids: int, epochs: int = EPOCHS,
                       decay_epochs=DECAY_EPOCHS) -> None:
  """Expresses the paper's epoch schedule as steps for the config's P and K."""
  per_epoch = steps_per_epoch(c, num_train_ids)
  c.num_train_steps = epochs * per_epoch
  c.schedule.kind = 'step'
  c.schedule.warmup_steps = 0  # the paper has no warmup
  c.schedule.decay_steps = tuple(e * per_epoch for e in decay_epochs)
  c.schedule.decay_factor = 0.1
  c.checkpoint_every_steps = 50 * per_epoch
  c.log_every_steps = per_epoch


def get_config():
  c = synthetic_baseline.get_config()  # every field documented there

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
  c.losses = ml_collections.ConfigDict({'focal': 1.0, 'triplet': 1.0, 'temporal_reg': 1.0})
  c.loss_options = ml_collections.ConfigDict(dict(
      label_smoothing=0.0,  # CE ablations only; the paper has none
      triplet_margin=0.3, triplet_metric='euclidean', triplet_soft_margin=False,
      focal_gamma=2.0,
      focal_mode='target',  # eq. 8: sigmoid of the target logit; 'all_classes': RetinaNet's
      focal_alpha=-1.0))  # < 0: no alpha balance ('all_classes' only)

  c.optimizer = 'adam'
  c.learning_rate = 3e-4
  c.weight_decay = 5e-4  # L2 added to the gradient, as torch.optim.Adam's weight_decay
  c.pretrained_lr_mult = 1.0
  set_epoch_schedule(c, NUM_TRAIN_IDS)

  c.eval.clip_len = 15
  c.eval.sampler = 'all'  # every frame, in chunks of 15, averaged per tracklet
  c.eval.batch_size = 16
  c.eval.metric = 'euclidean'  # section 3.2
  c.eval.normalize_features = False
  return c
