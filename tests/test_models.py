"""Output shapes of DAMER for both tasks, the DSAF switch, dtypes, synchronised BatchNorm."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from damer_jax import models
from damer_jax import train
from tests.conftest import tiny_config


@pytest.mark.parametrize('task', ['classification', 'regression'])
def test_output_shapes(task):
  config = tiny_config(task=task)
  model = models.create_model(config)
  state = train.create_train_state(config, model, jax.random.key(0), 8)
  out = model.apply({'params': state.params, 'batch_stats': state.batch_stats},
                    jnp.zeros((5, 128, 87)), jnp.zeros((5, 84, 87)), train=False)
  expected = (5, 2, 2) if task == 'classification' else (5, 2)
  for head in ('mel', 'coch', 'fusion'):
    assert out[head].shape == expected
  assert out['embedding'].shape == (5, config.model.width)
  if task == 'regression':
    assert jnp.all(jnp.abs(out['fusion']) <= 1.0)


def test_dsaf_switch_removes_cross_attention():
  on = train.create_train_state(tiny_config(), models.create_model(tiny_config()),
                                jax.random.key(0), 8)
  config = tiny_config(dsaf__enabled=False)
  off = train.create_train_state(config, models.create_model(config), jax.random.key(0), 8)
  assert 'dsaf_0' in on.params and 'dsaf_0' not in off.params
  assert 'fusion_gate' in off.params


def test_cross_attention_makes_each_stream_depend_on_the_other_view():
  config = tiny_config(model__dropout=0.0)
  model = models.create_model(config)
  state = train.create_train_state(config, model, jax.random.key(0), 8)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  mel = jax.random.normal(jax.random.key(1), (2, 128, 87))
  coch = jax.random.normal(jax.random.key(2), (2, 84, 87))
  a = model.apply(variables, mel, coch)
  b = model.apply(variables, mel, coch + 1.0)
  assert jnp.allclose(a['mel'], b['mel'])  # The Mel head sees only the Mel view.
  assert not jnp.allclose(a['fusion'], b['fusion'])


def test_bfloat16_computes_in_bf16_but_keeps_float32_params_and_outputs():
  config32, config16 = tiny_config(), tiny_config(model__dtype='bfloat16')
  state = train.create_train_state(config32, models.create_model(config32),
                                   jax.random.key(0), 8)
  state16 = train.create_train_state(config16, models.create_model(config16),
                                     jax.random.key(0), 8)
  # Same parameter tree, all float32: checkpoints move between the two settings.
  assert jax.tree.structure(state.params) == jax.tree.structure(state16.params)
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state16.params))
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  key = jax.random.key(1)
  mel = jax.random.normal(key, (6, 128, 87))
  coch = jax.random.normal(jax.random.fold_in(key, 1), (6, 84, 87))
  out32 = models.create_model(config32).apply(variables, mel, coch, train=False)
  out16 = models.create_model(config16).apply(variables, mel, coch, train=False)
  for head in ('mel', 'coch', 'fusion', 'embedding', 'projection'):
    assert out16[head].dtype == jnp.float32, head
    scale = float(jnp.abs(out32[head]).max())
    error = float(jnp.abs(out16[head] - out32[head]).max())
    assert 0 < error < 0.1 * scale, (head, error, scale)  # Differs, as bf16 does; close.
  with pytest.raises(ValueError, match='model.dtype'):
    models.create_model(tiny_config(model__dtype='float16'))


def test_synchronised_batch_norm_uses_the_global_batch_and_infers_unmapped():
  config = tiny_config(model__dropout=0.0)
  local, synced = models.create_model(config), models.create_model(config, axis_name='batch')
  state = train.create_train_state(config, synced, jax.random.key(0), 8)
  variables = {'params': state.params, 'batch_stats': state.batch_stats}
  mel = jax.random.normal(jax.random.key(1), (4, 128, 87))
  coch = jax.random.normal(jax.random.key(2), (4, 84, 87))
  # Shift one device's half so per-device statistics differ from the global ones.
  mel = mel.at[2:].add(3.0)

  def apply(model, mel, coch):
    return model.apply(variables, mel, coch, train=True, mutable=['batch_stats'])

  want, want_stats = jax.jit(functools.partial(apply, local))(mel, coch)  # One device.
  split = lambda x: x.reshape((2, 2) + x.shape[1:])
  per_device = lambda model: jax.pmap(functools.partial(apply, model), axis_name='batch',
                                      devices=jax.devices()[:2])(split(mel), split(coch))
  got, got_stats = per_device(synced)
  np.testing.assert_allclose(got['fusion'].reshape(want['fusion'].shape), want['fusion'],
                             rtol=1e-4, atol=1e-5)
  for g, w in zip(jax.tree.leaves(got_stats), jax.tree.leaves(want_stats)):
    np.testing.assert_allclose(g[0], w, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g[1], w, rtol=1e-4, atol=1e-6)
  # Per-device statistics (no axis) do differ: the check above is not vacuous.
  unsynced, _ = per_device(local)
  assert not np.allclose(unsynced['mel'].reshape(want['mel'].shape), want['mel'], atol=1e-3)
  # Inference uses the running statistics: no collective, runs unmapped.
  np.testing.assert_allclose(synced.apply(variables, mel, coch, train=False)['fusion'],
                             local.apply(variables, mel, coch, train=False)['fusion'],
                             rtol=1e-6)
  with pytest.raises(NameError, match='batch'):  # Training needs the mapped axis.
    synced.apply(variables, mel, coch, train=True, mutable=['batch_stats'])
