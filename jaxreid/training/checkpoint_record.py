"""The JSON record each checkpoint carries: what its state was built for, and
the checks made against it (resume: all of it, ``checkpoint.Checkpointer``;
evaluation: not on the persons it was trained on, `check_not_trained_on`)."""


def checkpoint_meta(config, num_classes: int, train_pids=None, dataset_config=None) -> dict:
  """What a checkpoint must agree with to be resumed by this config (all of
  it) or used for inference (``checkpoint.INFERENCE_KEYS``).

  Args:
    train_pids: the dataset person ids of the training split, if known:
      stored (sorted) so that evaluation on any of them is refused.
    dataset_config: the builder config actually used ('' resolved to the
      builder's default); default `config.dataset_config`.
  """
  meta = {'model_name': config.model_name, 'model': config.model.to_dict(),
          'num_classes': num_classes, 'dataset': config.dataset,
          'dataset_config': config.dataset_config if dataset_config is None else dataset_config,
          'clip_len': config.clip_len, 'height': config.height, 'width': config.width,
          # What the optimizer state's tree, or its meaning, follows: Adam's
          # moments vs SGD's momentum trace; the schedule kind (the state's
          # step count would index another learning-rate curve). Weight decay
          # and momentum values (0 included) leave the tree unchanged.
          'optimizer': config.optimizer, 'schedule_kind': config.schedule.kind,
          # A backbone learning-rate multiplier splits the optimizer state in two groups.
          'backbone_lr_group': config.pretrained_lr_mult != 1.0}
  if train_pids is not None:
    meta['train_pids'] = sorted(int(p) for p in train_pids)
  return meta


def dataset_config(config, data) -> str:
  """The builder config the data was built with: `config.dataset_config`, or
  the builder's default when that is '' (so that '' and 'split_0' agree)."""
  if config.dataset_config:
    return config.dataset_config
  builder_config = getattr(getattr(data, 'builder', None), 'builder_config', None)
  return getattr(builder_config, 'name', '') or ''


def check_not_trained_on(meta, config, data):
  """Refuses to evaluate a checkpoint on persons it was trained on.

  Same dataset only (person ids of different datasets name different people):
  with the training ids in the checkpoint's record, any query or gallery id
  among them is refused; for an older record without them, another numbered
  split (split_k of iLIDS-VID or PRID-2011, whose splits share persons by
  construction) is refused. Cross-dataset evaluation is always allowed.

  Raises:
    ValueError: naming the dataset configs and the shared ids.
  """
  if meta.get('dataset') != config.dataset:
    return
  trained_on = meta.get('dataset_config')
  here = dataset_config(config, data)
  if meta.get('train_pids') is not None:
    train = set(meta['train_pids'])
    shared = sorted({int(p) for split in ('query', 'gallery')
                     for p in data.split_labels(split)['pid'] if int(p) in train})
    if not shared:
      return
    detail = (f'{len(shared)} of its query/gallery person ids (e.g. '
              f'{", ".join(map(str, shared[:5]))}) are training persons of the checkpoint')
  elif trained_on != here and str(trained_on).startswith('split_') and here.startswith('split_'):
    detail = 'the numbered splits of a dataset share persons between train and test'
  else:
    return
  raise ValueError(
      f'The checkpoint was trained on {config.dataset} {trained_on!r}; evaluating it on '
      f'{config.dataset} {here!r} would report leaked results: {detail}. Evaluate with '
      f'--config.dataset_config={trained_on}, or on another dataset.')
