"""damer_jax/losses.py split over two devices, and its less common settings (fast tier).

The train step takes per-device losses, their gradients and a pmean of both
(damer_jax/train.py). Here the split batch's pmeaned loss, accuracy and parameter
gradient must equal those of the whole batch on one device, for the pmap and the
shard_map driver alike.
"""

import functools

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
import numpy as np
import pytest

from damer_jax import losses
from tests.conftest import tiny_config

HEADS = ('fusion', 'mel', 'coch')


def _problem(seed=0, n=8, features=3):
  """A linear 'model' shared by the heads: inputs x [n, F], labels, weights [n, 2]."""
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((n, features)).astype(np.float32)
  params = {h: rng.standard_normal((features, 2, 2)).astype(np.float32) for h in HEADS}
  labels = {'valence': rng.uniform(-1, 1, n).astype(np.float32),
            'arousal': rng.uniform(-1, 1, n).astype(np.float32)}
  # Device 0 (rows 0-3) carries far more weight than device 1 (rows 4-7): averaging
  # two per-device means would not give the global weighted mean.
  weights = np.ones((n, 2), np.float32)
  weights[5:] = 0.0
  weights[4, 1] = 0.25
  return x, params, labels, weights


def _loss(params, x, labels, weights, config, axis_name):
  outputs = {h: jnp.einsum('nf,ftc->ntc', x, params[h]) for h in HEADS}
  return losses.supervised_loss(outputs, labels, config, weights, axis_name)


def _on_two_devices(driver, fn, params, *per_row):
  """fn(params, *rows, axis_name='d') on two devices (rows split in halves).

  Returns the pmean over devices of (loss, metrics, gradient with respect to params).
  """
  def step(p, *rows):
    (loss, metrics), grads = jax.value_and_grad(
        functools.partial(fn, axis_name='d'), has_aux=True)(p, *rows)
    return jax.lax.pmean((loss, metrics, grads), 'd')

  if driver == 'pmap':
    split = jax.tree.map(lambda a: a.reshape((2, -1) + a.shape[1:]), per_row)
    out = jax.pmap(step, axis_name='d', in_axes=(None,) + (0,) * len(per_row))(
        params, *split)
    return jax.tree.map(lambda a: a[0], out)
  mesh = Mesh(np.asarray(jax.devices()[:2]), ('d',))
  # check_vma=False: per-device gradients, as under pmap (what global_mean assumes; with
  # check_vma on, the gradient of a replicated input arrives already summed over devices).
  mapped = jax.shard_map(step, mesh=mesh, in_specs=(P(),) + (P('d'),) * len(per_row),
                         out_specs=P(), check_vma=False)
  return jax.jit(mapped)(params, *per_row)


@pytest.mark.parametrize('driver', ['pmap', 'shard_map'])
def test_two_devices_give_the_loss_accuracy_and_gradient_of_the_whole_batch(driver):
  assert jax.device_count() >= 2  # tests/conftest.py asks for two host CPU devices.
  config = tiny_config()
  x, params, labels, weights = _problem()
  fn = lambda p, x, labels, w, axis_name: _loss(p, x, labels, w, config, axis_name)
  (loss, metrics), grads = jax.value_and_grad(
      functools.partial(fn, axis_name=None), has_aux=True)(params, x, labels, weights)
  loss2, metrics2, grads2 = _on_two_devices(driver, fn, params, x, labels, weights)
  np.testing.assert_allclose(float(loss2), float(loss), rtol=1e-5)
  for key in ('loss_fusion', 'loss_mel', 'loss_coch', 'valence/accuracy',
              'arousal/accuracy'):
    np.testing.assert_allclose(float(metrics2[key]), float(metrics[key]), rtol=1e-5,
                               err_msg=key)
  for head in HEADS:
    np.testing.assert_allclose(grads2[head], grads[head], rtol=1e-4, atol=1e-6,
                               err_msg=head)


def test_label_smoothing_mixes_the_one_hot_target_with_the_uniform():
  config = tiny_config(loss__label_smoothing=0.2)
  rng = np.random.default_rng(2)
  logits = rng.standard_normal((5, 2, 2)).astype(np.float32)
  values = rng.uniform(-1, 1, (5, 2)).astype(np.float32)
  one_hot = np.eye(2)[(values > config.label_threshold).astype(int)]
  target = 0.8 * one_hot + 0.2 / 2
  shifted = logits - logits.max(-1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  np.testing.assert_allclose(losses.pair_loss(logits, values, config),
                             -(target * log_p).sum(-1), rtol=1e-5)


def test_no_weights_means_every_pair_and_a_row_mask_covers_both_targets():
  config = tiny_config()
  rng = np.random.default_rng(3)
  outputs = {h: rng.standard_normal((4, 2, 2)).astype(np.float32) for h in HEADS}
  labels = {'valence': np.array([0.3, -0.2, 0.9, -0.7], np.float32),
            'arousal': np.array([-0.1, 0.4, 0.2, 0.6], np.float32)}
  unweighted, _ = losses.supervised_loss(outputs, labels, config)
  ones, _ = losses.supervised_loss(outputs, labels, config, np.ones((4, 2), np.float32))
  np.testing.assert_allclose(float(unweighted), float(ones), rtol=1e-6)
  mask = np.array([1, 0, 1, 1], np.float32)
  by_row, _ = losses.supervised_loss(outputs, labels, config, mask)
  by_pair, _ = losses.supervised_loss(outputs, labels, config, np.stack([mask, mask], -1))
  np.testing.assert_allclose(float(by_row), float(by_pair), rtol=1e-6)


def test_a_batch_without_weight_gives_zero_loss_and_zero_gradient():
  # E.g. a device whose rows all come from the unlabelled stream: the supervised loss
  # must stay finite (the weight sum is clamped at 1), not 0 / 0.
  config = tiny_config()
  x, params, labels, _ = _problem()
  zeros = np.zeros((len(x), 2), np.float32)
  (loss, metrics), grads = jax.value_and_grad(_loss, has_aux=True)(
      params, x, labels, zeros, config, None)
  assert float(loss) == 0.0 and float(metrics['valence/accuracy']) == 0.0
  for head in HEADS:
    assert np.all(np.asarray(grads[head]) == 0.0)


def test_regression_supervised_loss_is_the_weighted_squared_error_of_three_heads():
  config = tiny_config(task='regression')
  rng = np.random.default_rng(4)
  outputs = {h: rng.uniform(-1, 1, (6, 2)).astype(np.float32) for h in HEADS}
  labels = {'valence': rng.uniform(-1, 1, 6).astype(np.float32),
            'arousal': rng.uniform(-1, 1, 6).astype(np.float32)}
  values = np.stack([labels['valence'], labels['arousal']], -1)
  weights = rng.uniform(0, 1, (6, 2)).astype(np.float32)
  loss, metrics = losses.supervised_loss(outputs, labels, config, weights)
  part = {h: ((outputs[h] - values) ** 2 * weights).sum() / weights.sum() for h in HEADS}
  np.testing.assert_allclose(
      float(loss), part['fusion'] + config.loss.view_weight * (part['mel'] + part['coch']),
      rtol=1e-5)
  assert not any(key.endswith('/accuracy') for key in metrics)  # Classification only.
