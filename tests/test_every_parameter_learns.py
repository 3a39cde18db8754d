"""Every parameter of every model family gets a gradient at init: no dead path.

A layer that starts at zero behind a ReLU, or behind a BatchNorm of a constant,
can never leave zero: its gradient is zero at init and stays zero. Two did:
P3D-B/C with a BN + ReLU on the temporal path (a zero temporal kernel), and
the RAL after stage 1 of narrow backbones (a one-unit channel bottleneck whose
ReLU was 0 on the whole batch). This test finds any such parameter in each
temporal model family's config, on the tiny backbone, through the configured losses.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import family_configs
from jaxreid import losses
from jaxreid.inference import apply_model, model_variables
from jaxreid.training import setup, state as state_lib


def _dead_parameters(config_name: str) -> list:
  config = family_configs.tiny(family_configs.CONFIGS[config_name](), data_dir='')
  num_classes = 4
  model = setup.build_model(config, num_classes)
  sample = state_lib.sample_input(config.clip_len, config.height, config.width,
                                  flow=config.use_flow)
  frames0 = sample.pop('frames')
  variables = model.init({'params': jax.random.key(0), 'dropout': jax.random.key(0)}, frames0,
                         train=False, **sample)
  rng = np.random.default_rng(0)
  b = 2 * num_classes  # P = 4 identities x K = 2 clips (CRF: 4 positive pairs)
  batch = {'frames': jnp.asarray(rng.integers(
      0, 256, (b, config.clip_len, config.height, config.width, 3)), jnp.uint8)}
  if config.use_flow:
    batch['flow'] = jnp.asarray(rng.normal(size=batch['frames'].shape[:-1] + (2,)), jnp.float32)
  labels = jnp.repeat(jnp.arange(num_classes), 2)

  def loss(params):
    outputs, _ = apply_model(model.apply, model_variables(params, variables.get('batch_stats')),
                             batch, train=True, rngs={'dropout': jax.random.key(1)},
                             mutable=['batch_stats'])
    total, _ = losses.total_loss(outputs, labels, losses.term_weights(config.losses),
                                 losses.term_options(config.losses), model=model)
    return total

  grad_fn = jax.jit(jax.grad(loss))
  first = grad_fn(variables['params'])
  # A second gradient after one SGD step: a layer that starts as the identity
  # through one zero factor (RAL) passes gradient to its other factors only
  # once that factor has moved. A dead path gets none at either step.
  second = grad_fn(jax.tree.map(lambda p, g: p - 0.1 * g, variables['params'], first))
  return sorted(jax.tree_util.keystr(path) for (path, g1), g2 in
                zip(jax.tree_util.tree_flatten_with_path(first)[0], jax.tree.leaves(second))
                if not (np.any(np.asarray(g1)) or np.any(np.asarray(g2))))


# The families with a temporal or attention path (the baseline, I3D and the
# two-stream model add none of their own; each costs ~20 s of compiling).
FAMILIES = ('p3d_c', 'm3d_ral', 'mstn', 'rru', 'trsa', 'crf')


@pytest.mark.parametrize('config_name', FAMILIES)
def test_every_parameter_gets_gradient(config_name):
  assert _dead_parameters(config_name) == []
