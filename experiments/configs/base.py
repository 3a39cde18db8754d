r"""Every field any code reads, with its default and what it means.

Not a runnable config: it names no model and no objective. Every config in
this folder starts from it, directly or through another config (a model's
paper config, e.g. crf_ilids_vid.py), and experiments/show_config.py prints
the comments written here beside the values. The defaults are the built-in
synthetic dataset and a budget that trains in minutes on a CPU.
"""

import ml_collections
from ml_collections import config_dict


def _steps(value, field_type=int):
  """A duration in steps: a typed field, so that a config giving the duration
  in epochs can set it to None and flags still override it (ml_collections
  cannot parse a flag into a field whose value is a plain None)."""
  return config_dict.FieldReference(value, field_type=field_type)


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
  c.batch_sampler = 'pk'  # pk: P identities x K clips | pairs: siamese pairs (rows 2i, 2i + 1)
  c.num_identities = 8  # P
  c.num_instances = 4  # K; global batch = P * K clips
  c.num_pairs = 0  # pairs per step, batch_sampler='pairs' only (then P = num_pairs, K = 2)
  # Diagnostic, synthetic dataset only: PK batches draw a training gait twin
  # together with its twin (an oracle real datasets lack; issue 15).
  c.train_twins_together = False
  c.use_flow = False  # batches carry 'flow' (B, T, H, W, 2), optical flow to the next frame
  # One random draw per clip, applied to all its frames (data_pipelines/augment.py).
  c.augment = ml_collections.ConfigDict(dict(
      flip=True,  # horizontal flip with probability 0.5
      pad=2,  # zero-pad by this many pixels, then random-crop back to height x width
      random_erasing=0.3,  # probability of erasing one random box (Zhong et al.)
      color_jitter=ml_collections.ConfigDict(dict(
          brightness=0.0, contrast=0.0, saturation=0.0,  # maximum relative change; 0 = off
          hue=0.0))))  # hue: maximum shift, fraction of the colour wheel

  # Model: a name in jaxreid.models.MODELS and its keyword arguments.
  c.model_name = ''  # every config names one
  c.model = ml_collections.ConfigDict()  # keyword arguments of the model's Flax module
  c.dtype = 'float32'  # or 'bfloat16' (parameters and BN statistics stay float32)
  # ImageNet weights for the backbone: '' (from scratch) or a torchvision-layout
  # .safetensors / .npz file (experiments/convert_weights.py writes one; they
  # need the published widths, backbone_width=0). Loaded when training
  # starts, not when resuming.
  c.pretrained = ''

  # Objective: terms of jaxreid.losses.LOSS_TERMS, each {'weight': w, <options>};
  # the options are keyword arguments of the term's function (defaults there).
  c.losses = ml_collections.ConfigDict()  # every config names its terms

  # Optimization.
  c.optimizer = 'adam'  # adam | adamw | sgd
  c.learning_rate = 1e-3  # peak, after warmup
  c.weight_decay = 5e-4  # L2 term added to the gradient (decoupled for adamw)
  c.pretrained_lr_mult = 1.0  # learning-rate multiplier of the backbone (RRU: 0.1)
  c.momentum = 0.9  # sgd only
  c.nesterov = True  # sgd only
  # Durations are given in steps or in epochs (experiments/durations.py), the
  # other form None; epochs become steps once the dataset's size is known.
  c.num_train_steps = _steps(500)  # optimizer steps (one global batch each)
  c.num_train_epochs = config_dict.placeholder(float)  # or this many epochs
  # What one epoch is: identities (every training identity K times, a PK
  # sampler's epoch) | tracklets (every training tracklet once) | pairs (2 x
  # training identities siamese pairs).
  c.epoch = 'identities'
  c.schedule = ml_collections.ConfigDict(dict(
      kind='step',  # step | cosine, both after a linear warmup
      warmup_steps=50,  # linear warmup from 0 over this many steps
      decay_steps=_steps((350, 450), tuple),  # step: multiply by decay_factor at these steps
      decay_epochs=config_dict.placeholder(tuple),  # or at these epochs
      decay_factor=0.1))  # step: the factor at each decay step

  # Two-stage training (MSTN trains its multi-scale features first, then the
  # CLSTM blocks): for the first `steps` steps only the loss terms named in
  # `losses` count and only the parameters under the top-level modules named
  # in `modules` train; the others stay as initialized, their optimizer state
  # untouched (no weight decay either). Then every parameter trains on the
  # whole objective, on the one schedule. 0 = one stage.
  c.first_stage = ml_collections.ConfigDict(dict(
      steps=0, losses=config_dict.placeholder(tuple), modules=config_dict.placeholder(tuple)))

  # Bookkeeping.
  c.log_every_steps = _steps(50)  # one console line and TensorBoard scalars every N steps
  c.log_every_epochs = config_dict.placeholder(float)  # or epochs (with both: the sooner)
  c.checkpoint_every_steps = _steps(250)  # and at the last step, and on SIGTERM
  c.checkpoint_every_epochs = config_dict.placeholder(float)  # or epochs (with both: the sooner)
  c.keep_checkpoints = 2  # the newest N checkpoints are kept
  c.eval_every_steps = 0  # 0 = evaluate at the end only
  # Also keep the best checkpoint by this eval metric (rank1 | mAP | mINP;
  # '' = off), in WORKDIR/checkpoints_best, judged at every evaluation
  # (eval_every_steps and the end): evaluate/extract/search --step=best.
  c.best_checkpoint_metric = ''
  # A non-finite loss or gradient stops the run (keeping the last good
  # checkpoint) unless this is set: then the step is skipped (counted in the
  # 'skipped_steps' metric).
  c.skip_nonfinite_steps = False
  # With skipping, a run that has skipped more than this fraction of its steps
  # so far (checked at log steps; one skipped step is always allowed) has
  # diverged: it stops and says so.
  c.max_skipped_fraction = 0.1

  # Evaluation (docs/design.md, "Evaluation contract").
  c.eval = ml_collections.ConfigDict(dict(
      clip_len=0,  # 0 = same as clip_len
      sampler='all',  # all (every frame, chunks of T) | evenly (one clip) | full_chunks
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
      num_visualize=0,  # write ranked-list PNGs (and TensorBoard images) of this many queries:
      visualize_queries='worst'))  # worst (lowest AP first) | first | random
  return c
