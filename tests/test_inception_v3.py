"""Inception-v3 backbone: torchvision's parameter count, output shapes at 299 x 299
(jax.eval_shape only), the smallest input, and clear errors for inputs too small.
Numerical agreement with torchvision's module is checked in test_pretrained.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxreid.backbones import inception_v3


def _param_count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def test_parameter_count_matches_torchvision():
  """torchvision's inception_v3 (aux head, 1000 classes) has 27,161,264 parameters;
  the backbone leaves out only the final fc (2048 x 1000 + 1000)."""
  model = inception_v3.InceptionV3(aux_classes=1000)
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 299, 299, 3))))
  assert _param_count(variables['params']) + 2048 * 1000 + 1000 == 27_161_264
  assert _param_count(variables['params']['AuxLogits']) == 128 * 768 + 2 * 128 + \
      5 * 5 * 128 * 768 + 2 * 768 + 768 * 1000 + 1000
  # BatchNorm statistics: one mean and one var per BN scale.
  num_bn = sum(int(np.prod(x.shape)) for p, x in jax.tree_util.tree_leaves_with_path(
      variables['params']) if p[-1].key == 'scale')
  assert _param_count(variables['batch_stats']) == 2 * num_bn


def test_output_shapes_at_299():
  model = inception_v3.InceptionV3(aux_classes=10)
  x = jnp.zeros((2, 299, 299, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  out = jax.eval_shape(lambda v: model.apply(v, x), variables)
  assert {k: v.shape for k, v in out.items()} == {
      'Mixed_5d': (2, 35, 35, 288), 'Mixed_6e': (2, 17, 17, 768), 'Mixed_7c': (2, 8, 8, 2048)}
  out, _ = jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=['batch_stats']),
                          variables)
  assert out['aux_logits'].shape == (2, 10)
  assert out['Mixed_7c'].shape == (2, 8, 8, 2048)
  # The RRU code averages Mixed_6e over each clip's frames before the aux head.
  out, _ = jax.eval_shape(lambda v: model.apply(
      v, x, train=True, mutable=['batch_stats'],
      aux_transform=lambda m: m.reshape((1, 2) + m.shape[1:]).mean(axis=1)), variables)
  assert out['aux_logits'].shape == (1, 10)
  assert inception_v3.feature_sizes(299) == (35, 17, 8)


def test_smallest_input_runs_and_no_aux_without_aux_head():
  model = inception_v3.InceptionV3()  # aux_classes=0: torchvision's aux_logits=False
  x = jax.random.normal(jax.random.key(1), (1, 75, 83, 3))
  variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
  assert 'AuxLogits' not in variables['params']
  out = jax.eval_shape(lambda v: model.apply(v, x, train=True, mutable=['batch_stats'])[0],
                       variables)
  assert 'aux_logits' not in out
  assert out['Mixed_7c'].shape == (1, 1, 1, 2048)
  assert inception_v3.feature_sizes(75) == (7, 3, 1)


def test_too_small_inputs_are_refused_clearly():
  with pytest.raises(ValueError, match='at least 75 x 75 pixels, got 74 x 80'):
    jax.eval_shape(lambda: inception_v3.InceptionV3().init(jax.random.key(0),
                                                          jnp.zeros((1, 74, 80, 3))))
  with pytest.raises(ValueError, match=r'auxiliary classifier needs Mixed_6e maps of at least '
                                       r'17 x 17.*got 16 x 16.*aux_classes=0'):
    jax.eval_shape(lambda: inception_v3.InceptionV3(aux_classes=5).init(
        jax.random.key(0), jnp.zeros((1, 298, 298, 3))))
