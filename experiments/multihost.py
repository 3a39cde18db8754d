"""Multi-process runs: the --multihost flags, ``jax.distributed.initialize``
at start-up and an explicit ``jax.distributed.shutdown`` at the end."""

import jax
from absl import app, flags, logging

_FLAGS = {}


def define_flags():
  """--multihost and the explicit coordinator flags (entry points, at import)."""
  if _FLAGS:
    return
  _FLAGS['multihost'] = flags.DEFINE_bool(
      'multihost', False, 'Join a multi-process run: calls jax.distributed.initialize(), '
      'which detects Cloud TPU pods, Slurm and Kubernetes by itself; on other clusters '
      'pass --coordinator_address, --num_processes and --process_id.')
  _FLAGS['coordinator_address'] = flags.DEFINE_string(
      'coordinator_address', None, 'host:port of process 0 (with --multihost).')
  _FLAGS['num_processes'] = flags.DEFINE_integer(
      'num_processes', None, 'Number of processes (with --multihost).')
  _FLAGS['process_id'] = flags.DEFINE_integer(
      'process_id', None, 'This process\'s index, 0..num_processes-1 (with --multihost).')


def enabled() -> bool:
  return bool(_FLAGS) and _FLAGS['multihost'].value


def init():
  """Calls ``jax.distributed.initialize`` when --multihost is given. Must run
  before anything asks JAX for its devices."""
  if not enabled():
    for name in ('coordinator_address', 'num_processes', 'process_id'):
      if _FLAGS and _FLAGS[name].value is not None:
        raise app.UsageError(f'--{name} needs --multihost.')
    return
  explicit = {name: _FLAGS[name].value
              for name in ('coordinator_address', 'num_processes', 'process_id')
              if _FLAGS[name].value is not None}
  jax.distributed.initialize(**explicit)
  logging.info('Process %d of %d; %d local and %d global devices.', jax.process_index(),
               jax.process_count(), jax.local_device_count(), jax.device_count())


def shutdown():
  """Leaves the multi-process run through JAX's shutdown barrier, after a run
  that ended normally or saved on a preemption notice. Without it the
  coordination service (in process 0) and the clients are torn down with the
  interpreter, in no set order: a peer still leaving then finds the service
  gone and aborts (status -6, "Shutdown barrier has failed"; seen under CI
  load on 2026-12-02). A failed run skips it: its peers may never arrive."""
  if enabled():
    jax.distributed.shutdown()
