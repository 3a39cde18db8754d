"""Orbax checkpoints: resume continues the step count with the saved state;
a checkpoint written for another model is refused with a clear message."""

import os

import chex
import jax
import pytest

from experiments.configs import tiny
from jaxreid import sharding
from jaxreid.training import checkpoint, setup


@pytest.fixture
def config():
  c = tiny.get_config()
  c.height, c.width, c.clip_len = 32, 16, 2
  return c


def test_resume_restores_state_and_step(tmp_path, config):
  mesh = sharding.make_mesh()
  run = setup.setup_state(config, str(tmp_path), 4, mesh)
  state = run.state.replace(step=run.state.step + 7,
                            params=jax.tree.map(lambda x: x + 1.0, run.state.params))
  run.checkpointer.save(7, state, run.meta)
  run.checkpointer.close()

  resumed = setup.setup_state(config, str(tmp_path), 4, mesh)
  assert int(resumed.state.step) == 7
  chex.assert_trees_all_equal(jax.device_get(resumed.state.params), jax.device_get(state.params))
  chex.assert_trees_all_equal(jax.device_get(resumed.state.opt_state),
                              jax.device_get(state.opt_state))
  resumed.checkpointer.close()


def test_mismatched_config_is_refused(tmp_path, config):
  mesh = sharding.make_mesh()
  run = setup.setup_state(config, str(tmp_path), 4, mesh)
  run.checkpointer.save(1, run.state, run.meta)
  run.checkpointer.close()
  config.model.backbone = 'resnet18'
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match=r"trained with model .*resnet_tiny.*; this config says .*resnet18"):
    setup.setup_state(config, str(tmp_path), 4, mesh)
  with pytest.raises(checkpoint.CheckpointMismatchError,
                     match='trained with num classes 4; this config says 5'):
    config.model.backbone = 'resnet_tiny'
    setup.setup_state(config, str(tmp_path), 5, mesh)
  # Resuming with another optimizer is named as such, in one line.
  config.optimizer = 'sgd'
  with pytest.raises(checkpoint.CheckpointMismatchError) as e:
    setup.setup_state(config, str(tmp_path), 4, mesh)
  assert "the checkpoint was trained with optimizer 'adam'; this config says 'sgd'" in str(e.value)
  assert len(str(e.value)) < 500
  # Inference needs only the network: another optimizer and dataset restore.
  config.dataset = 'mars'
  state, meta = setup.restore_for_inference(config, str(tmp_path), mesh)
  assert int(state.step) == 0 and meta['optimizer'] == 'adam'  # saved as step 1
  assert not os.path.exists(os.path.join(str(tmp_path), 'checkpoints', 'damaged'))
