"""config.dtype='bfloat16': bf16 compute; parameters, optimizer state and BN
statistics stay float32, and so do the losses."""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.configs import tiny
from jaxreid import sharding
from jaxreid.training import setup, step as step_lib


def test_bfloat16_computes_in_bf16_and_keeps_f32_state(tmp_path):
  config = tiny.get_config()
  config.height, config.width, config.clip_len = 32, 16, 2
  config.dtype = 'bfloat16'
  mesh = sharding.make_mesh()
  run = setup.setup_state(config, str(tmp_path), 4, mesh)
  run.checkpointer.close()
  state = run.state
  b = config.num_identities * config.num_instances
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (b, config.clip_len, config.height, config.width, 3), np.uint8)
  pid = np.repeat(np.arange(config.num_identities, dtype=np.int32), config.num_instances)

  # Activations: every convolution and the embedding are computed in bf16.
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  jaxpr = str(jax.make_jaxpr(lambda v, x: state.apply_fn(v, x, train=True,
                                                          mutable=['batch_stats']))(
      variables, frames))
  convs = [l for l in jaxpr.splitlines() if 'conv_general_dilated[' in l]
  assert convs and all(':bf16[' in l.split('=')[0] for l in convs), convs[:3]
  # The backbone's output is bf16; the model pools it in float32 (by design:
  # the global mean, BNNeck and classifier are cheap and run in f32).
  assert 'bf16[' in jaxpr and 'convert_element_type[new_dtype=float32' in jaxpr

  train_step = step_lib.make_train_step(config, run.schedule, run.state_sharding, mesh)
  state, metrics = train_step(state, sharding.to_global({'frames': frames, 'pid': pid}, mesh))
  for name in ('params', 'opt_state', 'batch_stats'):
    dtypes = {x.dtype for x in jax.tree.leaves(getattr(state, name))
              if jnp.issubdtype(x.dtype, jnp.floating)}
    assert dtypes == {jnp.dtype(jnp.float32)}, (name, dtypes)
  assert metrics['loss'].dtype == jnp.float32 and np.isfinite(float(metrics['loss']))
  assert metrics['loss_ce'].dtype == metrics['loss_triplet'].dtype == jnp.float32
