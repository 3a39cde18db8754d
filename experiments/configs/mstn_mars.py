r"""MSTN (Wang, He, Gao, Huang; [MSTN] in docs/references.md) on MARS, as far as the paper says.

From the paper: ResNet-50 multi-scale extractor (C2..C5, 1x1 convolutions,
C2/C3 average-pooled and C5 upsampled to C4's grid, f1 with its own softmax,
section 3.1); 'cut' to 512, two CLSTM blocks with a residual add, per-channel
max, 1D temporal convolution, final feature = concat(temporal, f1) (section
3.2); Loss = softmax(f1) + batch-hard triplet + label-smoothed CE (eq. 5, all
weights 1); P identities x K clips of T frames per batch (section 3.2); "four
groups of eight consecutive pictures are selected to represent each
pedestrian" (section 4.2), read as K = 4 clips of T = 8 consecutive frames
per identity for training, and at test time the first four consecutive
8-frame chunks of each tracklet, features averaged; the MARS protocol
released with the dataset (section 4.2: 'mars_official').

Not in the paper (optimizer, learning rate, schedule, input size, P, margin,
epsilon, augmentation): we take the video re-ID baseline that the paper's
objective follows, jiyanggao/Video-Person-ReID
(its main_video_person_reid.py): 256 x 128 input (the standard ResNet re-ID
size, which puts C4 on a 16 x 8 grid), P = 8 (batch 32 = 8 x 4), Adam lr 3e-4, weight
decay 5e-4, 800 epochs with the rate divided by 10 every 200, margin 0.3,
epsilon 0.1, horizontal flip; the ImageNet ResNet-50 through
``config.pretrained``. Widths the paper leaves open: 256 channels per scale
(f1: 1024), 3 x 3 CLSTM kernels, temporal kernel 3 (docs/mstn.md).

  python -m experiments.train --config=experiments/configs/mstn_mars.py \
      --workdir=workdir/mstn_mars --config.pretrained=resnet50.safetensors

Table 1's rows: ``--config.model.recurrence=none|lstm|clstm`` and
``--config.losses`` without 'triplet' (mstn_synthetic.py has them as variants).

Epochs: a RandomIdentitySampler epoch draws every training identity K times
(``config.epoch = 'identities'``): floor(625 * 4 / 32) = 78 steps on MARS, so
800 epochs = 62400 steps, decays at 15600, 31200, 46800
(experiments/durations.py counts them on the prepared data).
"""

import ml_collections

from experiments.configs import base


def get_config():
  c = base.get_config()  # every field documented there

  c.dataset = 'mars'
  c.dataset_config = ''
  c.manual_dir = ''  # where the MARS release was extracted
  c.height, c.width = 256, 128
  c.clip_len = 8  # T: eight consecutive pictures (section 4.2)
  c.train_sampler = 'consecutive'
  c.num_identities, c.num_instances = 8, 4  # P x K: four groups per pedestrian
  c.augment.flip, c.augment.pad, c.augment.random_erasing = True, 0, 0.0

  c.model_name = 'mstn'
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet50', backbone_width=0, last_stride=2,
      scale_features=256,  # 1x1 conv per scale; f1 has 4 x 256 channels
      cut_features=512,  # 'cut' (section 3.2)
      lstm_features=512,
      recurrence='clstm',  # Table 1: none | lstm | clstm
      clstm_kernel=3, peephole=False, forget_bias=0.0,
      residual=True,  # first CLSTM block's output added to the second's
      temporal_kernel=3, upsampling='nearest', bnneck=False))
  c.pretrained = ''  # torchvision ResNet-50 (.safetensors / .npz); '' from scratch

  # Eq. 5: Loss_softmax (f1) + Loss_triplet + Loss_labelsmoothing.
  c.losses = ml_collections.ConfigDict({
      'aux_ce': {'weight': 1.0},  # eq. 2: plain softmax loss on f1
      'triplet': {'weight': 1.0},  # margin 0.3, Euclidean distance
      'ce': {'weight': 1.0,
             'label_smoothing': 0.1}})  # eq. 4's epsilon (not given; [Inception]'s 0.1)

  c.optimizer = 'adam'
  c.learning_rate = 3e-4
  c.weight_decay = 5e-4
  c.pretrained_lr_mult = 1.0
  # jiyanggao's 800 epochs, the rate divided by 10 every 200.
  c.epoch = 'identities'  # every training identity K times
  c.num_train_steps, c.num_train_epochs = None, 800
  c.schedule.kind = 'step'
  c.schedule.warmup_steps = 0
  c.schedule.decay_steps, c.schedule.decay_epochs = None, (200, 400, 600)
  c.schedule.decay_factor = 0.1
  c.checkpoint_every_steps, c.checkpoint_every_epochs = None, 20
  c.log_every_steps, c.log_every_epochs = None, 1

  c.eval.clip_len = 8
  c.eval.sampler = 'all'  # consecutive chunks of 8 ...
  c.eval.max_chunks = 4  # ... the first four of them (section 4.2)
  c.eval.batch_size = 32
  c.eval.metric = 'euclidean'
  c.eval.protocol = 'mars_official'
  c.eval.normalize_features = False
  return c
