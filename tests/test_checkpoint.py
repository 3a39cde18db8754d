"""Orbax checkpoints: resume continues the step count with the saved state;
a checkpoint written for another model is refused with a clear message."""

import os

import jax
import numpy as np
import pytest

from experiments.configs import tiny
from jaxreid.training import checkpoint, loop, sharding


@pytest.fixture
def config():
  c = tiny.get_config()
  c.height, c.width, c.clip_len = 32, 16, 2
  return c


def test_resume_restores_state_and_step(tmp_path, config):
  mesh = sharding.make_mesh()
  _, state, _, _, ckpt, meta = loop.setup_state(config, str(tmp_path), 4, mesh)
  state = state.replace(step=state.step + 7,
                        params=jax.tree.map(lambda x: x + 1.0, state.params))
  ckpt.save(7, state, meta)
  ckpt.close()

  _, restored, _, _, ckpt2, _ = loop.setup_state(config, str(tmp_path), 4, mesh)
  assert int(restored.step) == 7
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.params),
               jax.device_get(state.params))
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(restored.opt_state),
               jax.device_get(state.opt_state))
  ckpt2.close()


def test_mismatched_config_is_refused(tmp_path, config):
  mesh = sharding.make_mesh()
  _, state, _, _, ckpt, meta = loop.setup_state(config, str(tmp_path), 4, mesh)
  ckpt.save(1, state, meta)
  ckpt.close()
  config.model.backbone = 'resnet18'
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match=r"trained with model .*resnet_tiny.*; this config says .*resnet18"):
    loop.setup_state(config, str(tmp_path), 4, mesh)
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match='trained with num classes 4; this config says 5'):
    config.model.backbone = 'resnet_tiny'
    loop.setup_state(config, str(tmp_path), 5, mesh)
  # Resuming with another optimizer is named as such, in one line.
  config.optimizer = 'sgd'
  with pytest.raises(checkpoint.CheckpointMismatchError) as e:
    loop.setup_state(config, str(tmp_path), 4, mesh)
  assert "the checkpoint was trained with optimizer 'adam'; this config says 'sgd'" in str(e.value)
  assert len(str(e.value)) < 500
  # Inference needs only the network: another optimizer and dataset restore.
  config.dataset = 'mars'
  state, meta = loop.restore_for_inference(config, str(tmp_path), mesh)
  assert int(state.step) == 0 and meta['optimizer'] == 'adam'  # saved as step 1
  assert not os.path.exists(os.path.join(str(tmp_path), 'checkpoints', 'damaged'))
