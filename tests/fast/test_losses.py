"""damer_jax/losses.py against hand-written numpy references (fast tier)."""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
import numpy as np

from damer_jax import losses
from tests.conftest import tiny_config


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _outputs(rng, n, t=2, c=2):
  return {k: rng.standard_normal((n, t, c)).astype(np.float32) for k in ('fusion', 'mel', 'coch')}


def _reference(outputs, values, weights, config):
  """CE per (example, target), weighted means per head, fusion + w (mel + coch)."""
  classes = (values > config.label_threshold).astype(int)
  parts = {}
  for head, logits in outputs.items():
    ce = -np.take_along_axis(_log_softmax(logits.astype(np.float64)), classes[..., None],
                             -1)[..., 0]
    parts[head] = (ce * weights).sum() / max(weights.sum(), 1.0)
  return parts['fusion'] + config.loss.view_weight * (parts['mel'] + parts['coch']), parts


def test_supervised_loss_is_the_weighted_mean_cross_entropy_of_three_heads():
  config = tiny_config()
  rng = np.random.default_rng(0)
  outputs = _outputs(rng, 6)
  batch = {'valence': rng.uniform(-1, 1, 6).astype(np.float32),
           'arousal': rng.uniform(-1, 1, 6).astype(np.float32)}
  values = np.stack([batch['valence'], batch['arousal']], -1)
  weights = rng.uniform(0, 1, (6, 2)).astype(np.float32)
  weights[2] = 0  # An example PCL overruled in both targets...
  loss, metrics = losses.supervised_loss(outputs, batch, config, weights)
  expected, parts = _reference(outputs, values, weights, config)
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
  for head, value in parts.items():
    np.testing.assert_allclose(float(metrics[f'loss_{head}']), value, rtol=1e-5)
  # ...contributes nothing: changing its logits leaves the loss alone.
  moved = {k: v.copy() for k, v in outputs.items()}
  for v in moved.values():
    v[2] += 100.0
  np.testing.assert_allclose(float(losses.supervised_loss(moved, batch, config, weights)[0]),
                             float(loss), rtol=1e-6)


def test_example_weights_broadcast_over_targets_and_accuracy_counts_weighted_pairs():
  config = tiny_config()
  logits = np.zeros((4, 2, 2), np.float32)
  logits[:, :, 1] = [[1, 1], [1, -1], [-1, 1], [1, 1]]  # Predicted class 1 where +1.
  outputs = {'fusion': logits, 'mel': logits, 'coch': logits}
  batch = {'valence': np.array([0.5, 0.5, 0.5, -0.5], np.float32),
           'arousal': np.array([0.5, 0.5, 0.5, 0.5], np.float32)}
  mask = np.array([1, 1, 1, 0], np.float32)  # The last row is padding.
  _, metrics = losses.supervised_loss(outputs, batch, config, mask)
  np.testing.assert_allclose(float(metrics['valence/accuracy']), 2 / 3, rtol=1e-6)
  np.testing.assert_allclose(float(metrics['arousal/accuracy']), 2 / 3, rtol=1e-6)


def test_regression_loss_is_the_squared_error():
  config = tiny_config(task='regression')
  pred = np.array([[0.5, -0.5], [0.0, 0.2]], np.float32)
  values = np.array([[0.1, -0.1], [0.3, 0.2]], np.float32)
  np.testing.assert_allclose(losses.pair_loss(pred, values, config), (pred - values) ** 2)
  np.testing.assert_allclose(losses.head_loss(pred, values, config),
                             ((pred - values) ** 2).mean(-1))


def test_global_mean_over_two_devices_is_the_mean_over_the_whole_batch():
  # Unequal weight on the two devices: a per-device mean averaged over devices would
  # differ from the global weighted mean; global_mean's pmean must not.
  rng = np.random.default_rng(1)
  terms = rng.standard_normal((2, 5)).astype(np.float32)
  weights = np.array([[1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], np.float32)
  mesh = Mesh(np.asarray(jax.devices()[:2]), ('d',))

  @functools.partial(jax.shard_map, mesh=mesh, in_specs=(P('d'), P('d')), out_specs=P())
  def pmean_of_global_mean(t, w):
    return jax.lax.pmean(losses.global_mean(t[0], w[0], 'd'), 'd')

  got = float(pmean_of_global_mean(jnp.asarray(terms), jnp.asarray(weights)))
  expected = (terms * weights).sum() / weights.sum()
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_allclose(float(losses.global_mean(terms[0], weights[0], None)),
                             terms[0].mean(), rtol=1e-6)
