"""PCL and SAML inside the train step: switches, drivers and checkpoints."""

import jax
import numpy as np

from damer_jax import checkpointing
from damer_jax import models
from damer_jax import train
from tests.conftest import tiny_config

NUM_TRAIN = 32
MODULES = dict(pcl__enabled=True, pcl__warmup_steps=1, saml__enabled=True,
               saml__queue_size=16, saml__projection_dim=8, model__dropout=0.0)


def _batches(num_steps, devices=2, per_device=4, seed=0):
  """Different data on each device: distinct indices, tracks and labels."""
  rng = np.random.default_rng(seed)
  for _ in range(num_steps):
    n = devices * per_device
    batch = {
        'mel': rng.standard_normal((n, 128, 87), np.float32),
        'coch': rng.standard_normal((n, 84, 87), np.float32),
        'valence': rng.uniform(-1, 1, n).astype(np.float32),
        'arousal': rng.uniform(-1, 1, n).astype(np.float32),
        'index': rng.choice(NUM_TRAIN, n, replace=False).astype(np.int64),
        'track_id': rng.integers(0, 6, n).astype(np.int64),
    }
    yield {k: v.reshape((devices, per_device) + v.shape[1:]) for k, v in batch.items()}


def _run(config, num_steps):
  model = models.create_model(config)
  state = train.create_train_state(config, model, jax.random.key(0), NUM_TRAIN)
  driver = train.create_driver(config, model)
  state = driver.put_state(state)
  for batch in _batches(num_steps):
    state, metrics = driver.train_step(state, batch)
  return driver, state, metrics


def test_disabled_modules_leave_no_state_and_no_parameters():
  config = tiny_config(pcl__enabled=False, saml__enabled=False)
  state = train.create_train_state(config, models.create_model(config), jax.random.key(0))
  assert state.pcl is None and state.saml is None and state.ema_params is None
  assert not any('projection' in k for k in state.params)
  full = tiny_config(**MODULES)
  state = train.create_train_state(full, models.create_model(full), jax.random.key(0),
                                   NUM_TRAIN)
  assert state.pcl is not None and state.saml is not None and state.ema_params is not None
  current = tiny_config(**MODULES, saml__key_encoder='current')
  state = train.create_train_state(current, models.create_model(current),
                                   jax.random.key(0), NUM_TRAIN)
  assert state.ema_params is None


def test_full_model_trains_and_fills_module_state():
  driver, state, metrics = _run(tiny_config(**MODULES), 3)
  state = driver.get_state(state)
  assert np.isfinite(float(metrics['loss']))
  assert {'pcl/loss', 'saml/loss'} <= set(metrics)
  assert bool(np.asarray(state.pcl.seen).any())
  assert bool(np.asarray(state.saml.queue_valid).any())
  assert not np.allclose(jax.tree.leaves(state.ema_params)[0],
                         jax.tree.leaves(state.params)[0])


def test_pmap_and_shard_map_give_the_same_state_after_three_steps():
  _, pmap_state, _ = _run(tiny_config(**MODULES, parallelism='pmap'), 3)
  driver, shard_state, _ = _run(tiny_config(**MODULES, parallelism='shard_map'), 3)
  pmap_state = jax.tree.map(lambda x: np.asarray(x[0]), pmap_state.replace(tx=None))
  shard_state = jax.device_get(driver.get_state(shard_state).replace(tx=None))
  flat_p, tree_p = jax.tree.flatten(pmap_state)
  flat_s, tree_s = jax.tree.flatten(shard_state)
  assert tree_p == tree_s
  for a, b in zip(flat_p, flat_s):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                               rtol=2e-5, atol=2e-6)


def test_checkpoint_restores_queue_anchors_ema_and_table_exactly(tmp_path):
  config = tiny_config(**MODULES)
  driver, state, _ = _run(config, 3)
  saved = jax.device_get(driver.get_state(state))
  manager = checkpointing.create_manager(tmp_path, config)
  checkpointing.save(manager, saved)
  manager.wait_until_finished()
  fresh = train.create_train_state(config, models.create_model(config), jax.random.key(7),
                                   NUM_TRAIN)
  restored = checkpointing.restore_latest(checkpointing.create_manager(tmp_path, config),
                                          fresh)
  for name in ('pcl', 'saml', 'ema_params', 'params', 'opt_state', 'batch_stats', 'rng',
               'step'):
    a, b = jax.tree.leaves(getattr(saved, name)), jax.tree.leaves(getattr(restored, name))
    assert len(a) == len(b) > 0, name
    for x, y in zip(a, b):
      np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=name)


def test_state_and_batches_are_placed_as_the_step_returns_them():
  # The step is compiled for the placement of its inputs. If the state put on the
  # devices at a start or resume is placed differently from the state the step returns,
  # the second step compiles the whole train step again (it did with flax's replicate).
  for parallelism in ('pmap', 'shard_map'):
    config = tiny_config(parallelism=parallelism, **MODULES)
    model = models.create_model(config)
    driver = train.create_driver(config, model)
    state = driver.put_state(train.create_train_state(config, model, jax.random.key(0),
                                                      NUM_TRAIN))
    placed = jax.tree.map(lambda x: x.sharding, state)
    batch = driver.put_batch(next(_batches(1)))
    state, metrics = driver.train_step_device(state, batch)
    assert jax.tree.map(lambda x: x.sharding, state) == placed, parallelism
    assert np.isfinite(driver.host_metrics(jax.device_get(metrics))['loss']), parallelism
