r"""Default: the temporal-pooling baseline on the built-in synthetic dataset.

A ResNet-18 at a quarter of its width, softmax (label smoothing) + batch-hard
triplet with a BNNeck, Adam. The dataset stores 64 x 32 frames; the pipeline
feeds the network 128 x 64 (docs/design.md: XLA's CPU convolutions are very
slow on the 2-pixel-wide maps a 64 x 32 input would give). Trains and
evaluates in about eight minutes on an idle 2-core CPU (README, "Results").

  python -m experiments.train --config=experiments/configs/synthetic_baseline.py \
      --workdir=/tmp/jaxreid/synthetic_baseline
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0  # initialization, batch order and augmentation all derive from it

  # Data: any name in data_pipelines.datasets.DATASETS.
  c.dataset = 'synthetic_video_reid'
  c.dataset_config = ''  # TFDS builder config ('' = the builder's default; split_<k>)
  c.all_splits = False  # run every numbered split (iLIDS-VID, PRID-2011), report mean/std
  c.data_dir = ''  # '' = TFDS's default (~/tensorflow_datasets)
  c.manual_dir = ''  # where a manually downloaded release was extracted
  # A prepared copy is reused only while its manual_dir and release files are
  # unchanged (else the run stops and says what changed). True deletes and
  # rebuilds it (the old copy is kept until the new one is complete): set it for
  # one run, or every run re-prepares.
  c.reprepare = False
  c.height, c.width = 128, 64  # network input; frames are resized to it
  c.clip_len = 4  # T frames per training clip
  c.train_sampler = 'restricted'  # consecutive | restricted | evenly
  c.num_identities = 8  # P
  c.num_instances = 4  # K; global batch = P * K clips
  # One random draw per clip, applied to all its frames (data_pipelines/augment.py).
  c.augment = ml_collections.ConfigDict(dict(
      flip=True,  # horizontal flip with probability 0.5
      pad=2,  # zero-pad by this many pixels, then random-crop back to height x width
      random_erasing=0.3,  # probability of erasing one random box (Zhong et al.)
      color_jitter=ml_collections.ConfigDict(dict(
          brightness=0.0, contrast=0.0, saturation=0.0,  # maximum relative change; 0 = off
          hue=0.0))))  # hue: maximum shift, fraction of the colour wheel

  # Model: a name in jaxreid.models.MODELS and its keyword arguments.
  c.model_name = 'temporal_pooling'
  c.model = ml_collections.ConfigDict(dict(
      backbone='resnet18',  # resnet_tiny | resnet18 | resnet34 | resnet50 (| inception_v3 for rru)
      backbone_width=16,  # channels of the first stage; 0 = the published width (64)
      last_stride=1))  # stride of the last stage (1 = twice the final map, as in BoT)
  c.dtype = 'float32'  # or 'bfloat16' (parameters and BN statistics stay float32)
  # ImageNet weights for the backbone: '' (from scratch) or a torchvision-layout
  # .safetensors / .npz file (experiments/convert_weights.py writes one; they
  # need the published widths, backbone_width=0). Loaded when training
  # starts, not when resuming.
  c.pretrained = ''

  # Objective: terms of jaxreid.losses.LOSS_TERMS with weights.
  c.losses = ml_collections.ConfigDict({'ce': 1.0, 'triplet': 1.0})  # term -> weight
  c.loss_options = ml_collections.ConfigDict(dict(
      label_smoothing=0.1,  # of the cross-entropy terms (0 = plain softmax)
      triplet_margin=0.3,  # margin of the batch-hard triplet terms
      triplet_metric='euclidean',  # euclidean | cosine (triplet distances)
      triplet_soft_margin=False))  # True: log(1 + exp(d_ap - d_an)) instead of the hinge

  # Optimization.
  c.optimizer = 'adam'  # adam | adamw | sgd
  c.learning_rate = 1e-3  # peak, after warmup
  c.weight_decay = 5e-4  # L2 term added to the gradient (decoupled for adamw)
  c.pretrained_lr_mult = 1.0  # learning-rate multiplier of the backbone (RRU: 0.1)
  c.momentum = 0.9  # sgd only
  c.nesterov = True  # sgd only
  c.num_train_steps = 500  # optimizer steps (one global PK batch each)
  c.schedule = ml_collections.ConfigDict(dict(
      kind='step',  # step | cosine, both after a linear warmup
      warmup_steps=50,  # linear warmup from 0 over this many steps
      decay_steps=(350, 450),  # step: multiply by decay_factor at these steps
      decay_factor=0.1))  # step: the factor at each decay step

  # Bookkeeping.
  c.log_every_steps = 50  # one console line and TensorBoard scalars every N steps
  c.checkpoint_every_steps = 250  # and at the last step, and on SIGTERM
  c.keep_checkpoints = 2  # the newest N checkpoints are kept
  c.eval_every_steps = 0  # 0 = evaluate at the end only
  # A non-finite loss or gradient stops the run (keeping the last good
  # checkpoint) unless this is set: then the step is skipped (counted in the
  # 'skipped_steps' metric).
  c.skip_nonfinite_steps = False
  # With skipping, a run that has skipped more than this fraction of its steps
  # so far (checked at log steps; one skipped step is always allowed) has
  # diverged: it stops and says so.
  c.max_skipped_fraction = 0.1
  c.debug_nan_at_step = -1  # test hook: make the loss of this step (1-based) NaN

  # Evaluation (docs/design.md, "Evaluation contract").
  c.eval = ml_collections.ConfigDict(dict(
      clip_len=0,  # 0 = same as clip_len
      sampler='all',  # all (every frame, chunks of T) | evenly (one clip)
      max_chunks=0,  # 0 = no limit
      batch_size=64,  # clips per eval batch (global; divisible by the devices)
      metric='euclidean',  # euclidean | cosine
      protocol='torchreid',  # torchreid | mars_official | with_query_in_gallery
      normalize_features=False,  # L2-normalize tracklet features before ranking
      flip=False,  # flip test-time augmentation: average clip and mirror features
      use_rerank=False,  # k-reciprocal re-ranking (Zhong et al. 2017) with these options:
      rerank=ml_collections.ConfigDict(dict(
          k1=20, k2=6,  # k-reciprocal neighbours and local query expansion
          lambda_value=0.3)),  # weight of the original distance
      num_visualize=0))  # write ranked-list PNGs for this many queries
  return c
