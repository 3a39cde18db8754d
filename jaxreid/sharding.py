"""Data-parallel sharding over every device of every process, for training
and evaluation alike.

One mesh axis, ``'data'``: the batch is split along its first axis, the train
state is replicated, and ``jax.jit`` inserts the gradient all-reduce. This is
what ``jax.pmap`` used to do (docs/design.md, "Training contract"). The mesh uses Auto axis
types so that model and loss code needs no sharding annotations: the batch-hard
triplet's (B, B) distance matrix over the *global* batch is gathered by XLA.
"""

from typing import Mapping, Optional, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P


def make_mesh(devices: Optional[Sequence[jax.Device]] = None) -> jax.sharding.Mesh:
  """A 1-D ('data',) mesh over `devices` (default: all devices of all processes)."""
  devices = list(devices) if devices is not None else jax.devices()
  return jax.make_mesh((len(devices),), ('data',), axis_types=(AxisType.Auto,),
                       devices=devices)


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P('data'))


def to_global(local_batch: Mapping[str, np.ndarray], mesh) -> dict:
  """Turns this process's slice of the batch into global, batch-sharded arrays.

  Each process passes only its own rows (global batch / process count); with a
  single process this is a plain ``device_put`` split over the local devices.
  """
  sharding = data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local_batch.items()}


def process_rows(batch_size: int):
  """[start, stop) of the rows of a global eval batch that this process feeds."""
  n = jax.process_count()
  if batch_size % n:
    raise ValueError(f'config.eval.batch_size = {batch_size} is not divisible by the '
                     f'{n} processes.')
  local = batch_size // n
  return jax.process_index() * local, (jax.process_index() + 1) * local


def own_rows_to_global(batch: Mapping[str, np.ndarray], keys, mesh) -> dict:
  """`batch[k]` for `keys` as global arrays: every process reads the same
  padded eval batch and feeds only its own rows (`process_rows`)."""
  row0, row1 = process_rows(len(batch['mask']))
  return to_global({k: np.asarray(batch[k])[row0:row1] for k in keys}, mesh)


def check_batch_divisible(global_batch_size: int, mesh, what: str):
  """Raises a clear error when a batch cannot be split evenly over the mesh."""
  n = mesh.devices.size
  if global_batch_size % n:
    raise ValueError(
        f'{what} = {global_batch_size} is not divisible by the {n} devices of the '
        f'data mesh; choose a multiple of {n}.')


def wait_for_all_processes(name: str, timeout_s: int = 1800):
  """Blocks until every process reaches the barrier `name` (no-op with one process).

  Uses the coordination service's barrier (through Orbax), not a collective: on
  CPU, JAX's collectives (Gloo) give the processes only 30 s to meet at the first
  run of a new collective and then fail ("Gloo context initialization failed");
  the train step's first run can be further apart than that when one process
  builds its input pipeline or compiles more slowly (seen under CI load on
  2026-12-02). `name` must be unique within the run.
  """
  if jax.process_count() > 1:
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    ocp.multihost.get_barrier_sync_fn()(key=name, timeout_ms=timeout_s * 1000)
