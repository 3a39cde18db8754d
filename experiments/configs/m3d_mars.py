r"""Two-stream M3D + RAL (Li, Zhang, Huang, AAAI 2019) on MARS, as the paper.

Both streams are ResNet-50s (ImageNet weights through ``config.pretrained``);
the temporal one has M3D layers at the first block of each stage (n = 3
temporal kernels for T = 8) and RALs after stages 1-3. Input 256 x 128, clips
of T = 8 adjacent frames, no augmentation (the paper subtracts the mean only;
the official code has no flip or crop), softmax CE on each stream; SGD lr
0.01 (momentum 0.9, weight decay 5e-4: the official code), 400 epochs with the
rate divided by 10 after 300; batch 24 clips. Test: floor(L / T) clips of 8
frames per tracklet, averaged (``eval.sampler='full_chunks'``), Euclidean
distance on L2-normalized features (the official MATLAB evaluation).

  python -m experiments.train --config=experiments/configs/m3d_mars.py \
      --workdir=workdir/m3d_mars --config.pretrained=resnet50.safetensors

Other rows of the paper's tables: ``--config.model_name=video_resnet`` with
``--config.model.temporal=m3d|i3d|p3d_a|p3d_b|p3d_c|2d`` and
``--config.model.ral=''|s|c|t|sct`` (and ``--config.losses="{'ce': {'weight': 1}}"``).

Epochs: the paper feeds every training tracklet once per epoch
(``config.epoch = 'tracklets'``; 8298 on MARS), 24 clips per batch, so 345
steps per epoch (experiments/durations.py counts them on the prepared data).
Our batches are PK batches; K = 1 (24 identities, one tracklet each) is the
closest to the paper's plain random batches, and its CE-only objective needs
no positives.

ImageNet weights: ``config.pretrained`` loads one torchvision ResNet-50 file
into both streams when training starts (the model's ``load``, ``jaxreid.models.m3d``:
temporal kernels and RALs keep their identity initialization), see docs/m3d.md.
"""

import ml_collections

from experiments.configs import base


def get_config():
  c = base.get_config()  # every field documented there

  c.dataset = 'mars'
  c.dataset_config = ''
  c.manual_dir = ''  # where the MARS release was extracted
  c.height, c.width = 256, 128
  c.clip_len = 8  # T
  c.train_sampler = 'consecutive'  # T adjacent frames from a random start
  c.num_identities, c.num_instances = 24, 1  # batch of 24 clips (see above)
  c.augment.flip, c.augment.pad, c.augment.random_erasing = False, 0, 0.0

  c.model_name = 'two_stream_m3d'
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet50', backbone_width=0, last_stride=1,
      temporal='m3d',  # M3D layers at the first block of each stage
      clip_len=8,  # fixes n = floor((T - 1) / 2) = 3
      m3d_branch_norm=False,  # True: the official code's BN + ReLU per temporal kernel
      # P3D blocks (--config.model.temporal=p3d_*): BN + ReLU per path as the M3D
      # authors' code ('per_path'), or one bn2 + ReLU after the block as AP3D's.
      p3d_norm='per_path',
      ral='sct',  # RAL with spatial, channel and temporal branches
      ral_channel_relu=False,  # True: the official code's ReLU ending the channel branch
      feature_dim=0,  # 128: the official code's Linear(2048 -> 128) feature
      normalize_streams=False))
  c.pretrained = ''  # torchvision ResNet-50 (.safetensors / .npz), see above

  c.losses = ml_collections.ConfigDict({'ce_streams': {'weight': 1.0}})  # softmax on each stream

  c.optimizer = 'sgd'
  c.learning_rate = 0.01
  c.momentum = 0.9
  c.nesterov = False  # torch.optim.SGD's default, as the official code
  c.weight_decay = 5e-4
  c.pretrained_lr_mult = 1.0
  # 400 epochs, the rate divided by 10 after 300.
  c.epoch = 'tracklets'  # every training tracklet once
  c.num_train_steps, c.num_train_epochs = None, 400
  c.schedule.kind = 'step'
  c.schedule.warmup_steps = 0
  c.schedule.decay_steps, c.schedule.decay_epochs = None, (300,)
  c.schedule.decay_factor = 0.1
  c.checkpoint_every_steps, c.checkpoint_every_epochs = None, 10
  c.log_every_steps, c.log_every_epochs = 100, 1  # every epoch, or 100 steps if sooner

  c.eval.clip_len = 8
  c.eval.sampler = 'full_chunks'  # floor(L / T) clips of T frames, averaged
  c.eval.batch_size = 32
  c.eval.metric = 'euclidean'
  c.eval.protocol = 'mars_official'  # the official MATLAB evaluation
  c.eval.normalize_features = True
  return c
