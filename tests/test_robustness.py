"""Surviving bad steps and damaged checkpoints (preemption: tests/test_main.py)."""

import pathlib
import shutil

from absl import logging
import jax
import numpy as np
import pytest

from damer_jax import checkpointing
from damer_jax import models
from damer_jax import predict
from damer_jax import train
from tests.conftest import tiny_config
from tests.test_train_step import _fixed_batch, replicated_state_and_step


def test_a_non_finite_step_leaves_the_state_untouched():
  state, step = replicated_state_and_step(
      tiny_config(optimizer__warmup_steps=1, pcl__warmup_steps=0))
  good = _fixed_batch(2, 4)
  state, metrics = step(state, good)
  assert float(metrics['finite'][0]) == 1.0 and int(state.step[0]) == 1
  before = jax.device_get(state)
  bad = dict(good, mel=good['mel'].copy())
  bad['mel'][1, 0, 0, 0] = np.nan  # One NaN on one device poisons the averaged gradient.
  state, metrics = step(state, bad)
  assert float(metrics['finite'][0]) == 0.0
  after = jax.device_get(state)
  for old, new in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    np.testing.assert_array_equal(old, new)  # Params, optimiser, PCL, SAML, step.
  state, metrics = step(state, good)  # And training goes on from the good state.
  assert float(metrics['finite'][0]) == 1.0 and int(state.step[0]) == 2


def test_the_guard_names_the_first_bad_step_and_the_last_good_checkpoint(trained_workdir):
  # The loop keeps metrics on the devices and checks them when it fetches them: at the
  # log interval (summary) and before a checkpoint (check_finite).
  manager = checkpointing.create_manager(trained_workdir, tiny_config(), create=False)
  driver = train.create_driver(tiny_config(parallelism='shard_map'), None)
  metrics = train._StepMetrics(driver, pathlib.Path(trained_workdir), manager)  # pylint: disable=protected-access
  ok = {'finite': np.float32(1), 'loss': np.float32(0.5), 'grad_norm': np.float32(1)}
  bad = {'finite': np.float32(0), 'loss': np.float32(np.nan), 'grad_norm': np.float32(1)}
  metrics.add(7, ok)
  metrics.check_finite()
  assert metrics.summary() == {'finite': 1.0, 'loss': 0.5, 'grad_norm': 1.0}
  for step, m in [(8, ok), (9, bad), (10, bad), (11, ok)]:
    metrics.add(step, m)  # No check, no transfer per step...
  with pytest.raises(FloatingPointError, match=r'step 9 .*last good checkpoint is step 6'):
    metrics.check_finite()  # ...but before a checkpoint,
  with pytest.raises(FloatingPointError, match=r'step 9 \(loss nan'):
    metrics.summary()  # and at the log interval.


def _damage(workdir, step, how):
  folder = pathlib.Path(workdir) / 'checkpoints' / str(step)
  if how == 'truncated':
    for path in folder.rglob('*'):
      if path.is_file() and path.parent.name == 'd':
        path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])
  else:  # A checkpoint whose metadata never got written.
    (folder / 'default' / '_METADATA').unlink()


@pytest.mark.parametrize('how', ['truncated', 'partial'])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous(tmp_path, trained_workdir,
                                                                how, caplog):
  workdir = tmp_path / 'run'
  shutil.copytree(trained_workdir, workdir)
  _damage(workdir, 6, how)
  config = tiny_config()
  with caplog.at_level(logging.logging.WARNING):
    predictor = predict.Predictor.from_workdir(workdir)
  assert predictor.step == 3
  assert 'could not be restored' in caplog.text and 'using step 3' in caplog.text

  model = models.create_model(config)
  state = train.create_train_state(config, model, jax.random.key(0), 18)
  restored = checkpointing.restore_latest(checkpointing.create_manager(workdir, config),
                                          state)
  assert int(restored.step) == 3
  with pytest.raises(ValueError, match='cannot be restored'):
    checkpointing.restore_latest(checkpointing.create_manager(workdir, config), state,
                                 step=6)
  _damage(workdir, 3, how)
  with pytest.raises(ValueError, match=r'checkpoints/6 cannot be restored'):
    predict.Predictor.from_workdir(workdir)
