"""The train-step benchmark's PyTorch networks are the JAX ones: same
parameter count, and from the same weights (copied by load_flax_variables)
the same eval-mode embedding and logits, for the temporal-pooling ResNet-50
and its I3D variant (at stem width 8 and a tiny clip, to stay fast).
Skipped without PyTorch. No speed is asserted."""

import jax
import numpy as np
import pytest

from jaxreid.models import get_model

torch = pytest.importorskip('torch')
from experiments import bench_torch_reference as ref  # pylint: disable=g-import-not-at-top

WIDTH, T, H, W, CLASSES = 8, 4, 64, 32, 5


def _randomized(variables, seed):
  """Random values for every variable (BN statistics too), so that a wrong
  mapping cannot hide behind an initialization of zeros and ones."""
  leaves, tree = jax.tree.flatten(variables)
  rng = np.random.default_rng(seed)
  out = []
  for x in leaves:
    x = np.asarray(x)
    fan_in = np.prod(x.shape[:-1]) if x.ndim > 1 else 1
    value = rng.normal(size=x.shape) * np.sqrt(2.0 / fan_in)
    if x.ndim == 1:  # BN scale / bias / mean / var: O(1), variances positive
      value = rng.uniform(0.5, 1.5, x.shape) if np.all(x == 1) else 0.2 * rng.normal(size=x.shape)
    out.append(value.astype(x.dtype))
  return jax.tree.unflatten(tree, out)


@pytest.mark.parametrize('temporal', ['2d', 'i3d'])
def test_torch_reference_is_the_jax_network(temporal):
  model = get_model('video_resnet', num_classes=CLASSES, backbone='resnet50',
                    backbone_width=WIDTH, last_stride=1, temporal=temporal, ral='', clip_len=T)
  frames = np.random.default_rng(0).integers(0, 256, (2, T, H, W, 3), dtype=np.uint8)
  variables = _randomized(model.init(jax.random.key(0), frames[:1]), seed=1)
  torch_model = ref.TorchVideoResNet(CLASSES, temporal=temporal, width=WIDTH)
  jax_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(variables['params']))
  assert ref.trainable_parameters(torch_model) == jax_params

  ref.load_flax_variables(torch_model, variables)
  out = jax.jit(lambda v, f: model.apply(v, f, train=False))(variables, frames)
  with torch.no_grad():
    expected = torch_model.eval()(torch.from_numpy(frames))
  for key in ('embedding', 'logits'):
    want = expected[key].double().numpy()
    err = np.abs(np.asarray(out[key], np.float64) - want).max() / np.abs(want).max()
    assert err < 1e-4, (key, err)


def test_torch_train_step_runs_and_lowers_the_loss():
  torch.manual_seed(0)
  torch_model = ref.TorchVideoResNet(CLASSES, width=WIDTH)
  step = ref.make_train_step(torch_model, learning_rate=0.05, momentum=0.9, weight_decay=5e-4)
  frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 2, H, W, 3),
                                                              dtype=np.uint8))
  labels = torch.tensor([0, 1])
  losses = [float(step(frames, labels)) for _ in range(4)]
  assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
