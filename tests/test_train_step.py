"""The pmapped train step on two host devices."""

import functools

from flax import jax_utils
import jax
import numpy as np
import pytest

from damer_jax import config_lib
from damer_jax import models
from damer_jax import train
from tests.conftest import tiny_config


def _fixed_batch(num_devices, per_device, seed=0):
  rng = np.random.default_rng(seed)
  n = num_devices * per_device
  valence = rng.choice([-0.6, 0.6], n).astype(np.float32)
  arousal = rng.choice([-0.6, 0.6], n).astype(np.float32)
  # Learnable: the label sign shifts some bands of both views.
  mel = rng.standard_normal((n, 128, 87)).astype(np.float32)
  coch = rng.standard_normal((n, 84, 87)).astype(np.float32)
  mel[:, :40] += valence[:, None, None] * 2
  coch[:, 40:] += arousal[:, None, None] * 2
  batch = dict(mel=mel, coch=coch, valence=valence, arousal=arousal,
               index=np.arange(n), track_id=np.arange(n) % 3)
  return {k: v.reshape((num_devices, per_device) + v.shape[1:]) for k, v in batch.items()}


def replicated_state_and_step(config):
  """(replicated fresh TrainState, the pmapped train step) for `config`."""
  model = models.create_model(config)
  state = jax_utils.replicate(train.create_train_state(config, model, jax.random.key(0), 8))
  step = jax.pmap(functools.partial(train.train_step, model=model, config=config,
                                    schedule=train.learning_rate_schedule(config)),
                  axis_name=train.AXIS)
  return state, step


def test_there_are_two_host_devices():
  assert jax.local_device_count() == 2


@pytest.mark.parametrize('task', ['classification', 'regression'])
def test_train_step_on_two_devices_lowers_the_loss(task):
  # The full model (PCL from step 2); PCL is classification only.
  config = tiny_config(task=task, optimizer__warmup_steps=1, num_train_steps=20,
                       pcl__warmup_steps=2, pcl__enabled=task == 'classification')
  state, step = replicated_state_and_step(config)
  batch = _fixed_batch(2, 4)
  losses = []
  for _ in range(12):
    state, metrics = step(state, batch)
    losses.append(float(metrics['loss'][0]))
  assert losses[-1] < 0.7 * losses[0], losses
  # Replicas stay identical: gradients and batch statistics are averaged.
  for leaf in jax.tree.leaves((state.params, state.batch_stats)):
    np.testing.assert_array_equal(leaf[0], leaf[1])
  assert int(state.step[0]) == 12


def test_learning_rate_warms_up_then_decays():
  config = tiny_config(num_train_steps=100, optimizer__warmup_steps=10)
  schedule = train.learning_rate_schedule(config)
  peak = config.optimizer.learning_rate
  assert float(schedule(0)) == 0.0
  assert float(schedule(10)) == pytest.approx(peak)
  assert float(schedule(100)) == pytest.approx(peak * config.optimizer.end_learning_rate_factor)
  assert float(schedule(5)) < float(schedule(10)) > float(schedule(50))


def test_bad_settings_fail_clearly_naming_the_field():
  with pytest.raises(ValueError, match='config.parallelism'):
    config_lib.validate_config(tiny_config(parallelism='vmap'))
  with pytest.raises(ValueError, match='key_encoder'):
    config_lib.validate_config(tiny_config(saml__enabled=True, saml__key_encoder='slow'))
