"""Backbone and baseline shapes, parameter counts against torchvision's published
numbers, and the registry's errors. Full-size shapes use jax.eval_shape only."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreid.backbones import resnet
from jaxreid.models import MODELS, common, get_model


def _param_count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


# torchvision's parameter counts with the 1000-class fc layer (torchvision docs).
@pytest.mark.parametrize('name,expected', [('resnet18', 11_689_512), ('resnet34', 21_797_672),
                                           ('resnet50', 25_557_032)])
def test_resnet_parameter_counts_match_torchvision(name, expected):
  model = resnet.get_backbone(name)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
  c5 = 512 * model.block_cls.expansion
  assert _param_count(variables['params']) + c5 * 1000 + 1000 == expected


@pytest.mark.parametrize('last_stride,c5_hw', [(2, (8, 4)), (1, (16, 8))])
def test_resnet50_stage_shapes_at_256x128(last_stride, c5_hw):
  model = resnet.ResNet50(last_stride=last_stride)
  out = jax.eval_shape(lambda: model.init_with_output(
      jax.random.key(0), jnp.zeros((2, 256, 128, 3)))[0])
  assert out['C2'].shape == (2, 64, 32, 256)
  assert out['C3'].shape == (2, 32, 16, 512)
  assert out['C4'].shape == (2, 16, 8, 1024)
  assert out['C5'].shape == (2, *c5_hw, 2048)


def test_baseline_full_size_output_shapes():
  model = get_model('temporal_pooling', num_classes=625, backbone='resnet50')
  frames = jnp.zeros((2, 8, 256, 128, 3), jnp.uint8)
  out = jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), frames)[0])
  assert out['embedding'].shape == (2, 2048)
  assert out['triplet_features'].shape == (2, 2048)
  assert out['logits'].shape == (2, 625)


def test_baseline_tiny_forward_any_clip_length():
  model = get_model('temporal_pooling', num_classes=5, backbone='resnet_tiny')
  frames = jax.random.randint(jax.random.key(1), (3, 4, 32, 16, 3), 0, 256).astype(jnp.uint8)
  variables = model.init(jax.random.key(0), frames)
  for t in (1, 4, 7):  # eval works for any T; parameters have no time axis
    out = model.apply(variables, frames[:, :1].repeat(t, axis=1))
    chex.assert_shape(out['embedding'], (3, 64))
    chex.assert_tree_all_finite(out)


def test_baseline_pools_time_by_averaging():
  """A clip's feature is the mean of its frames' pre-BNNeck features."""
  model = get_model('temporal_pooling', num_classes=0, backbone='resnet_tiny')
  frames = jax.random.randint(jax.random.key(2), (1, 3, 32, 16, 3), 0, 256).astype(jnp.uint8)
  variables = model.init(jax.random.key(0), frames)
  clip = model.apply(variables, frames)['triplet_features']
  single = [model.apply(variables, frames[:, t:t + 1])['triplet_features'] for t in range(3)]
  np.testing.assert_allclose(clip, np.mean(single, axis=0), rtol=1e-5, atol=1e-6)


def test_unknown_names_list_choices():
  with pytest.raises(ValueError, match="Unknown model 'nope'; valid choices: .*temporal_pooling"):
    get_model('nope', num_classes=1)
  with pytest.raises(ValueError, match="Unknown backbone 'resnet51'; valid choices: resnet18"):
    resnet.get_backbone('resnet51')


def test_output_contract_is_checked_at_trace_time():
  """Every model checks its outputs (models.common.check_outputs): a head of the
  wrong width fails when traced, naming the shapes."""
  good = {'embedding': jnp.zeros((3, 8)), 'logits': jnp.zeros((3, 5)),
          'aux_logits': [jnp.zeros((3, 5))]}
  assert common.check_outputs(good, 3, 5) is good
  with pytest.raises(AssertionError, match=r'\(3, 4\)'):
    common.check_outputs({**good, 'logits': jnp.zeros((3, 5))}, 3, 4)
  with pytest.raises(AssertionError):
    common.check_outputs({**good, 'aux_logits': [jnp.zeros((2, 5))]}, 3, 5)
  assert all(callable(getattr(cls, 'load', None)) for cls in MODELS.values())
