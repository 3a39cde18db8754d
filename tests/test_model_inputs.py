"""Optional model inputs (docs/design.md, "Data contract"): 'flow' reaches the model as a
keyword, and flip test-time augmentation mirrors it consistently."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxreid import inference, sharding
from jaxreid.training import state as state_lib


class _FlowProbe(nn.Module):
  """Embedding = [mean frame column profile, mean horizontal flow, mean vertical flow]."""
  num_classes: int = 0

  @nn.compact
  def __call__(self, frames, flow=None, train=False):
    del train
    self.param('unused', nn.initializers.zeros, (1,))
    profile = frames.astype(jnp.float32).mean(axis=(1, 2, 4))  # (B, W)
    return {'embedding': jnp.concatenate([profile, flow[:, :, 0, 0, :].mean(axis=1)], axis=1)}


def test_sample_input_has_flow_only_when_asked():
  assert set(state_lib.sample_input(2, 8, 4)) == {'frames'}
  sample = state_lib.sample_input(2, 8, 4, flow=True)
  assert sample['flow'].shape == (1, 2, 8, 4, 2) and sample['flow'].dtype == jnp.float32


def test_model_inputs_passes_flow_as_keyword_and_flip_negates_dx():
  rng = np.random.default_rng(0)
  frames = rng.integers(0, 256, (2, 3, 4, 5, 3)).astype(np.uint8)
  flow = rng.normal(size=(2, 3, 4, 5, 2)).astype(np.float32)
  batch = {'frames': frames, 'flow': flow, 'pid': np.zeros(2, np.int32)}
  assert set(inference.model_inputs(batch)) == {'frames', 'flow'}
  mirrored = inference.mirror_inputs(inference.model_inputs(batch))
  np.testing.assert_array_equal(mirrored['frames'], frames[:, :, :, ::-1])
  np.testing.assert_array_equal(mirrored['flow'][..., 0], -flow[:, :, :, ::-1, 0])
  np.testing.assert_array_equal(mirrored['flow'][..., 1], flow[:, :, :, ::-1, 1])

  model = _FlowProbe()
  tx = optax.sgd(0.1)
  state = state_lib.create_train_state(model, tx, jax.random.key(0),
                                       state_lib.sample_input(3, 4, 5, flow=True))
  mesh = sharding.make_mesh(jax.devices()[:1])
  emb = np.asarray(inference.make_embed_fn(mesh, flip=True)(state, {'frames': frames,
                                                                    'flow': flow}))
  # Column profile: mean of the clip's and its mirror's. Flow at pixel (0, 0):
  # the mirror reads column W-1 with dx negated.
  profile = frames.astype(np.float32).mean(axis=(1, 2, 4))
  np.testing.assert_allclose(emb[:, :5], 0.5 * (profile + profile[:, ::-1]), rtol=1e-6)
  dx = 0.5 * (flow[:, :, 0, 0, 0] - flow[:, :, 0, -1, 0]).mean(axis=1)
  dy = 0.5 * (flow[:, :, 0, 0, 1] + flow[:, :, 0, -1, 1]).mean(axis=1)
  np.testing.assert_allclose(emb[:, 5], dx, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(emb[:, 6], dy, rtol=1e-5, atol=1e-6)
