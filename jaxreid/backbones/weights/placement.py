"""Pretrained weights into a train state: the model merges them on the host,
the changed leaves go back onto the devices with the state's shardings."""

import jax
import jax.numpy as jnp

from jaxreid.backbones.weights import files


def load_into_train_state(state, model, path: files.Path, state_sharding=None):
  """Loads the weights file `path` into `state` the way `model` says.

  The file is read once; ``model.load`` merges it into a host copy of the
  state's ``{'params', 'batch_stats'}`` (which backbones take it, 3D
  inflation, which variables keep their initialization) and logs what it
  loaded. The leaves it replaced are placed with `state_sharding`'s shardings
  (or on the default device); the others stay the state's own arrays. The
  optimizer state is re-initialized for the new parameters.

  Raises:
    FileNotFoundError, PretrainedWeightsError: the file is missing or
      unreadable, or does not fit the model (the message names the file and
      both architectures).
  """
  weights = files.load_state_dict(path)
  on_device = {'params': state.params, 'batch_stats': state.batch_stats}
  host = jax.device_get(on_device)
  merged = model.load(host, weights)

  def place(new, old_host, old, sharding=None):
    if new is old_host:
      return old
    if sharding is None:
      return jnp.asarray(new)
    return jax.make_array_from_callback(new.shape, sharding, lambda index: new[index])

  if state_sharding is None:
    placed = jax.tree.map(place, merged, host, on_device)
  else:
    shardings = {'params': state_sharding.params, 'batch_stats': state_sharding.batch_stats}
    placed = jax.tree.map(place, merged, host, on_device, shardings)
  init_opt = state.tx.init
  if state_sharding is not None:
    init_opt = jax.jit(init_opt, out_shardings=state_sharding.opt_state)
  return state.replace(params=placed['params'], batch_stats=placed['batch_stats'],
                       opt_state=init_opt(placed['params']))
