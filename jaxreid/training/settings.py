"""The bookkeeping settings of a training run, checked before any work."""


def check_settings(config):
  """Refuses, before any work, bookkeeping settings that would lose the
  trained model or divide by zero; one line naming the flag."""
  def refuse(flag, value, expected, why):
    raise ValueError(f'--config.{flag}={value}: expected {expected} ({why}).')
  if config.keep_checkpoints < 1:
    refuse('keep_checkpoints', config.keep_checkpoints, 'at least 1',
           'keeping none deletes the trained model as soon as it is saved')
  if config.checkpoint_every_steps <= 0:
    refuse('checkpoint_every_steps', config.checkpoint_every_steps, 'a positive number of steps',
           'the final step is always saved; set it to num_train_steps to save only that')
  if config.log_every_steps <= 0:
    refuse('log_every_steps', config.log_every_steps, 'a positive number of steps',
           'metrics and the non-finite checks run at log steps')
  if config.eval_every_steps < 0:
    refuse('eval_every_steps', config.eval_every_steps, '0 (evaluate at the end only) or more',
           'steps between evaluations')
  fraction = config.max_skipped_fraction
  if not 0 <= fraction <= 1:
    refuse('max_skipped_fraction', fraction, 'a fraction in [0, 1]',
           'the share of steps skip_nonfinite_steps may skip before the run stops')
