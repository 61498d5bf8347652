"""Supervised losses of the three heads: CE(fusion) + alpha * (CE(mel) + CE(coch))."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def targets(batch: dict[str, Any], config: Any) -> jnp.ndarray:
  """Continuous labels [B, num_targets] in `config.targets` order."""
  return jnp.stack([batch[name] for name in config.targets], axis=-1).astype(jnp.float32)


def class_labels(values: jnp.ndarray, config: Any) -> jnp.ndarray:
  """Binary high/low classes int32 [B, num_targets]: value > config.label_threshold."""
  return (values > config.label_threshold).astype(jnp.int32)


def pair_loss(prediction: jnp.ndarray, values: jnp.ndarray, config: Any) -> jnp.ndarray:
  """Loss [B, T] of one head per (example, target).

  Classification: softmax cross entropy of logits [B, T, C] (optionally label
  smoothed). Regression: squared error of predictions [B, T].
  """
  if config.task == 'classification':
    one_hot = optax.smooth_labels(
        jax.nn.one_hot(class_labels(values, config), config.num_classes),
        config.loss.label_smoothing)
    return optax.softmax_cross_entropy(prediction, one_hot)
  return jnp.square(prediction - values)


def head_loss(prediction: jnp.ndarray, values: jnp.ndarray, config: Any) -> jnp.ndarray:
  """Per-example loss [B] of one head, averaged over targets (see `pair_loss`)."""
  return pair_loss(prediction, values, config).mean(axis=-1)


def global_mean(terms: jnp.ndarray, weights: jnp.ndarray, axis_name: str | None
                ) -> jnp.ndarray:
  """Weighted mean over the *global* batch, written so that a pmean over devices of
  its gradient is the gradient of that global mean.

  Returns n_devices * sum(w * terms) / max(global sum(w), 1), where the sum over w is
  taken over every device of `axis_name` (None: this device only, n_devices = 1). The
  pmean of this value over the devices is the global weighted mean.
  """
  local = (terms * weights).sum()
  total = weights.sum()
  if axis_name is None:
    return local / jnp.maximum(total, 1.0)
  total = jax.lax.psum(jax.lax.stop_gradient(total), axis_name)
  devices = jax.lax.psum(1, axis_name)
  return devices * local / jnp.maximum(total, 1.0)


def supervised_loss(outputs: dict[str, jnp.ndarray], batch: dict[str, Any], config: Any,
                    weights: jnp.ndarray | None = None, axis_name: str | None = None
                    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """CE(fusion) + view_weight * (CE(mel) + CE(coch)) and its parts.

  Each head's loss is the weighted mean over (example, target) pairs. With
  `axis_name`, the mean is over the global batch in the sense of `global_mean` (the
  caller pmeans gradients and metrics), so the result does not depend on how the
  batch is split over devices.

  Args:
    outputs: the model's dict ('mel', 'coch', 'fusion' head outputs).
    batch: holds the label fields named in config.targets, each [B].
    config: the experiment config.
    weights: optional weights [B] (e.g. a padding mask, the labelled rows) or [B, T]
      (per target, e.g. annotations PCL overruled have weight 0).
    axis_name: the mapped device axis, or None for this device's batch alone.

  Returns:
    (scalar loss, metrics dict of scalars).
  """
  values = targets(batch, config)
  if weights is None:
    weights = jnp.ones(values.shape[:1], jnp.float32)
  weights = jnp.asarray(weights, jnp.float32)
  if weights.ndim == 1:
    weights = jnp.broadcast_to(weights[:, None], values.shape)
  weights = jax.lax.stop_gradient(weights)
  parts = {name: global_mean(pair_loss(outputs[name], values, config), weights, axis_name)
           for name in ('fusion', 'mel', 'coch')}
  loss = parts['fusion'] + config.loss.view_weight * (parts['mel'] + parts['coch'])
  metrics = {'loss': loss, **{f'loss_{k}': v for k, v in parts.items()}}
  if config.task == 'classification':
    correct = outputs['fusion'].argmax(-1) == class_labels(values, config)
    for i, name in enumerate(config.targets):
      metrics[f'{name}/accuracy'] = global_mean(correct[:, i].astype(jnp.float32),
                                                weights[:, i], axis_name)
  return loss, metrics
