"""The real `train.train_step` under both drivers, on a linear stand-in for DAMER (fast tier).

A linear model compiles in well under a second, so the step, the drivers and the loss
normalisation (damer_jax/losses.py `global_mean`) are checked here without the cost
of the tiny DAMER: two devices must compute the loss and the gradient of the whole
batch.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from damer_jax import config_lib
from damer_jax import losses
from damer_jax import train
from tests.conftest import tiny_config

HEADS = ('fusion', 'mel', 'coch')


class LinearHeads(nn.Module):
  """DAMER's interface (three heads [b, T, C], 'embedding') over time-averaged views.

  Counts its training calls in 'batch_stats', a collection the train step expects.
  """

  num_targets: int = 2
  num_classes: int = 2

  @nn.compact
  def __call__(self, mel, coch, train=False):
    """mel [b, n_mels, frames], coch [b, n_coch, frames] -> dict of head logits."""
    calls = self.variable('batch_stats', 'calls', jnp.zeros, (), jnp.float32)
    if train and not self.is_initializing():
      calls.value = calls.value + 1.0
    pooled = jnp.concatenate([mel.mean(-1), coch.mean(-1)], axis=-1)  # [b, n_mels + n_coch]
    out = {head: nn.Dense(self.num_targets * self.num_classes, name=head)(pooled).reshape(
        -1, self.num_targets, self.num_classes) for head in HEADS}
    out['embedding'] = pooled
    return out


def _batch(config, devices=2, per_device=4, seed=0):
  """A training batch [devices, per_device, ...]; device 1 has a single labelled row."""
  (n_mels, frames), (n_coch, _) = config_lib.input_shapes(config)
  n = devices * per_device
  rng = np.random.default_rng(seed)
  labelled = np.ones(n, np.float32)
  labelled[per_device + 1:] = 0.0  # Unequal weight per device: the global mean matters.
  batch = {'mel': rng.standard_normal((n, n_mels, frames)).astype(np.float32),
           'coch': rng.standard_normal((n, n_coch, frames)).astype(np.float32),
           'valence': rng.uniform(-1, 1, n).astype(np.float32),
           'arousal': rng.uniform(-1, 1, n).astype(np.float32),
           'labelled': labelled,
           'index': np.arange(n, dtype=np.int32), 'track_id': np.arange(n, dtype=np.int32)}
  return {k: v.reshape((devices, per_device) + v.shape[1:]) for k, v in batch.items()}


def _whole_batch(model, state, batch, config):
  """(loss, gradient) of the supervised loss over the flattened batch on one device."""
  flat = {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items()}

  def loss_fn(params):
    outputs, _ = model.apply({'params': params, 'batch_stats': state.batch_stats},
                             flat['mel'], flat['coch'], train=True,
                             mutable=['batch_stats'])
    return losses.supervised_loss(outputs, flat, config, flat['labelled'])[0]

  return jax.value_and_grad(loss_fn)(state.params)


@pytest.mark.parametrize('parallelism', ['pmap', 'shard_map'])
def test_a_step_on_two_devices_uses_the_whole_batch_loss_and_gradient(parallelism):
  config = tiny_config(parallelism=parallelism, pcl__enabled=False, saml__enabled=False)
  model = LinearHeads()
  state = train.create_train_state(config, model, jax.random.key(0))
  batch = _batch(config)
  loss, grads = _whole_batch(model, state, batch, config)
  driver = train.create_driver(config, model)
  new, metrics = driver.train_step(driver.put_state(state), driver.put_batch(batch))
  new = jax.device_get(driver.get_state(new))
  np.testing.assert_allclose(float(metrics['loss']), float(loss), rtol=1e-5)
  np.testing.assert_allclose(float(metrics['grad_norm']), float(optax.tree.norm(grads)),
                             rtol=1e-4)
  assert int(new.step) == 1 and float(metrics['finite']) == 1.0
  assert float(new.batch_stats['calls']) == 1.0  # One training call per device, pmeaned.


def test_a_non_finite_batch_leaves_the_state_untouched():
  config = tiny_config(pcl__enabled=False, saml__enabled=False,
                       optimizer__warmup_steps=0)  # A non-zero learning rate at step 0.
  model = LinearHeads()
  state = train.create_train_state(config, model, jax.random.key(0))
  driver = train.create_driver(config, model)
  good = _batch(config)
  after_good, _ = driver.train_step(driver.put_state(state), driver.put_batch(good))
  after_good = jax.device_get(driver.get_state(after_good))
  bad = dict(good, mel=np.full_like(good['mel'], np.nan))
  stepped, metrics = driver.train_step(driver.put_state(after_good), driver.put_batch(bad))
  stepped = jax.device_get(driver.get_state(stepped))
  assert float(metrics['finite']) == 0.0
  assert not np.allclose(after_good.params['fusion']['kernel'],
                         state.params['fusion']['kernel'])  # The good step did update.
  for a, b in zip(jax.tree.leaves(stepped), jax.tree.leaves(after_good)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
