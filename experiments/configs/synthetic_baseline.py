r"""Default: the temporal-pooling baseline on the built-in synthetic dataset.

A ResNet-18 at a quarter of its width, softmax (label smoothing) + batch-hard
triplet with a BNNeck, Adam. The dataset stores 64 x 32 frames; the pipeline
feeds the network 128 x 64 (docs/design.md: XLA's CPU convolutions are very
slow on the 2-pixel-wide maps a 64 x 32 input would give). Trains and
evaluates in about five minutes on a 2-core CPU.

  python -m experiments.train --config=experiments/configs/synthetic_baseline.py \
      --workdir=/tmp/jaxreid/synthetic_baseline
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0

  # Data: any name in data_pipelines.datasets.DATASETS.
  c.dataset = 'synthetic_video_reid'
  c.dataset_config = ''  # TFDS builder config ('' = the builder's default; split_<k>)
  c.all_splits = False  # run every numbered split (iLIDS-VID, PRID-2011), report mean/std
  c.data_dir = ''  # '' = TFDS's default (~/tensorflow_datasets)
  c.manual_dir = ''  # where a manually downloaded release was extracted
  c.height, c.width = 128, 64  # network input; frames are resized to it
  c.clip_len = 4  # T frames per training clip
  c.train_sampler = 'restricted'  # consecutive | restricted | evenly
  c.num_identities = 8  # P
  c.num_instances = 4  # K; global batch = P * K clips
  # One random draw per clip, applied to all its frames (data_pipelines/augment.py).
  c.augment = ml_collections.ConfigDict(dict(
      flip=True, pad=2, random_erasing=0.3,
      color_jitter=ml_collections.ConfigDict(dict(
          brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0))))

  # Model: a name in jaxreid.models.MODELS and its keyword arguments.
  c.model_name = 'temporal_pooling'
  c.model = ml_collections.ConfigDict(dict(backbone='resnet18', backbone_width=16,
                                           last_stride=1))
  c.dtype = 'float32'  # or 'bfloat16' (parameters and BN statistics stay float32)
  # ImageNet weights for the backbone: '' (from scratch) or a torchvision-layout
  # .safetensors / .npz file (experiments/convert_weights.py writes one; they
  # need the published widths, backbone_width=0). Loaded when training
  # starts, not when resuming.
  c.pretrained = ''

  # Objective: terms of jaxreid.losses.LOSS_TERMS with weights.
  c.losses = ml_collections.ConfigDict({'ce': 1.0, 'triplet': 1.0})
  c.loss_options = ml_collections.ConfigDict(dict(
      label_smoothing=0.1, triplet_margin=0.3, triplet_metric='euclidean',
      triplet_soft_margin=False))

  # Optimization.
  c.optimizer = 'adam'  # adam | adamw | sgd
  c.learning_rate = 1e-3
  c.weight_decay = 5e-4
  c.pretrained_lr_mult = 1.0  # learning-rate multiplier of the backbone (RRU: 0.1)
  c.momentum = 0.9  # sgd only
  c.nesterov = True  # sgd only
  c.num_train_steps = 500
  c.schedule = ml_collections.ConfigDict(dict(
      kind='step', warmup_steps=50, decay_steps=(350, 450), decay_factor=0.1))

  # Bookkeeping.
  c.log_every_steps = 50
  c.checkpoint_every_steps = 250
  c.keep_checkpoints = 2
  c.eval_every_steps = 0  # 0 = evaluate at the end only
  # A non-finite loss or gradient stops the run (keeping the last good
  # checkpoint) unless this is set: then the step is skipped (counted in the
  # 'skipped_steps' metric).
  c.skip_nonfinite_steps = False
  c.debug_nan_at_step = -1  # test hook: make the loss of this step (1-based) NaN

  # Evaluation (DESIGN.md section 6).
  c.eval = ml_collections.ConfigDict(dict(
      clip_len=0,  # 0 = same as clip_len
      sampler='all',  # all (every frame, chunks of T) | evenly (one clip)
      max_chunks=0,  # 0 = no limit
      batch_size=64,
      metric='euclidean',  # euclidean | cosine
      protocol='torchreid',  # torchreid | mars_official | with_query_in_gallery
      normalize_features=False,  # L2-normalize tracklet features before ranking
      flip=False,  # flip test-time augmentation: average clip and mirror features
      use_rerank=False,  # k-reciprocal re-ranking (Zhong et al. 2017) with these options:
      rerank=ml_collections.ConfigDict(dict(k1=20, k2=6, lambda_value=0.3)),
      num_visualize=0))  # write ranked-list PNGs for this many queries
  return c
