"""Training does not depend on the device count: 1 device x batch B == 2 devices x B/2.

Every module is on (DSAF, PCL acting from the first step, SAML), BatchNorm is
synchronised over the data axis, and three steps of `train.train_step` run under
`jax.pmap` on the same global batches split [n, B/n, ...]. Dropout is 0: its draws are
folded in per device (`fold_in(key, axis_index)`) by design, so with dropout on the two
runs would differ for that reason alone.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from damer_jax import config_lib
from damer_jax import models
from damer_jax import train
from tests.conftest import tiny_config

NUM_TRAIN = 16  # Rows of the PCL table.
STEPS = 3


def _config(**overrides):
  """Tiny config, every module on, no dropout; PCL past its warm-up from step 0."""
  items = dict(model__dropout=0.0, dsaf__enabled=True, pcl__enabled=True,
               pcl__warmup_steps=0, saml__enabled=True, saml__queue_size=32,
               saml__projection_dim=8, optimizer__warmup_steps=0)
  items.update(overrides)
  return tiny_config(**items)


def _global_batch(config, step):
  """Global batch of config.batch_size random examples, identical for every split.

  Table rows advance by half a batch per step, so from step 1 on half the rows were
  seen before and PCL has EMA rows to select from. The first half (device 0 of 2)
  has low arousal and tracks 1-4; the second half is high valence and arousal, all
  from track 0, so its SAML queries never have a positive (same quadrant, other
  track): the halves hold different numbers of SAML terms, which only a global-batch
  normalisation averages like one device does.
  """
  rng = np.random.default_rng(1000 + step)
  b = config.batch_size
  half = b // 2
  (n_mels, frames), (n_coch, _) = config_lib.input_shapes(config)
  return {
      'mel': rng.standard_normal((b, n_mels, frames)).astype(np.float32),
      'coch': rng.standard_normal((b, n_coch, frames)).astype(np.float32),
      'valence': np.concatenate([rng.uniform(-1, 1, half),
                                 rng.uniform(0.1, 1, b - half)]).astype(np.float32),
      'arousal': np.concatenate([rng.uniform(-1, -0.1, half),
                                 rng.uniform(0.1, 1, b - half)]).astype(np.float32),
      'track_id': np.concatenate([rng.integers(1, 5, half),
                                  np.zeros(b - half, int)]).astype(np.int32),
      'style_id': rng.integers(0, 3, b).astype(np.int32),
      'start_s': rng.uniform(0, 5, b).astype(np.float32),
      'index': ((step * b // 2 + np.arange(b)) % NUM_TRAIN).astype(np.int32),
  }


def run_steps(config, num_devices, axis_name='batch', steps=STEPS):
  """(device 0's TrainState, per-step metrics) after `steps` pmapped train steps.

  `axis_name` is the model's BatchNorm axis (None: per-device statistics).
  """
  model = models.create_model(config, axis_name=axis_name)
  state = train.create_train_state(config, model, jax.random.key(0), NUM_TRAIN)
  step_fn = jax.pmap(
      functools.partial(train.train_step, model=model, config=config,
                        schedule=train.learning_rate_schedule(config)),
      axis_name='batch', devices=jax.devices()[:num_devices])
  state = jax.tree.map(lambda x: jnp.stack([x] * num_devices), state)
  split = lambda x: x.reshape((num_devices, -1) + x.shape[1:])
  history = []
  for step in range(steps):
    state, metrics = step_fn(state, jax.tree.map(split, _global_batch(config, step)))
    history.append(jax.tree.map(lambda m: float(m[0]), metrics))
  replicas = jax.device_get(state)
  for leaf in jax.tree.leaves(replicas):  # The replicas agree with each other.
    for i in range(1, num_devices):
      np.testing.assert_array_equal(leaf[i], leaf[0])
  return jax.tree.map(lambda x: x[0], replicas), history


def max_differences(a, b):
  """{top-level TrainState field: max |a - b| over its leaves} (None fields skipped)."""
  result = {}
  for field in ('step', 'params', 'opt_state', 'batch_stats', 'rng', 'ema_params', 'pcl',
                'saml'):
    leaves_a = jax.tree.leaves(getattr(a, field))
    leaves_b = jax.tree.leaves(getattr(b, field))
    if leaves_a:
      result[field] = max(
          float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64)),
                       initial=0.0)) for x, y in zip(leaves_a, leaves_b))
  return result


def _is_key_bias(path):
  """Whether `path` is an attention key bias, a parameter with a true gradient of 0.

  q . (k + b) shifts every key's logit by the same q . b, so softmax ignores b. Its
  computed gradient is float noise (~1e-9), which Adam normalises into updates of up
  to ~lr per step, differently on 1 and 2 devices: these leaves are checked against
  that bound and by their (absent) effect on the outputs.
  """
  return jax.tree_util.keystr(path).endswith("['key']['bias']")


def test_one_device_with_batch_b_equals_two_devices_with_half_each():
  config = _config()
  one, history = run_steps(config, 1)
  two, _ = run_steps(config, 2)
  # Every module acted.
  assert history[-1]['pcl/loss'] > 0 and history[-1]['saml/info_nce'] > 0
  assert bool(np.any(one.pcl.seen)) and bool(np.any(one.saml.queue_valid))
  assert int(one.step) == STEPS
  paths_one = jax.tree_util.tree_leaves_with_path(one)
  paths_two = jax.tree_util.tree_leaves_with_path(two)
  assert [p for p, _ in paths_one] == [p for p, _ in paths_two]
  noise_bound = 2 * STEPS * config.optimizer.learning_rate
  for (path, x), (_, y) in zip(paths_one, paths_two):
    atol = noise_bound if _is_key_bias(path) else 1e-5
    np.testing.assert_allclose(y, x, rtol=1e-4, atol=atol,
                               err_msg=jax.tree_util.keystr(path))
  # The two states compute the same function (key biases included).
  model = models.create_model(config)
  batch = _global_batch(config, STEPS)
  outputs = [model.apply({'params': s.params, 'batch_stats': s.batch_stats}, batch['mel'],
                         batch['coch']) for s in (one, two)]
  for name in ('fusion', 'mel', 'coch', 'projection'):
    np.testing.assert_allclose(outputs[1][name], outputs[0][name], rtol=1e-4, atol=1e-5,
                               err_msg=name)
