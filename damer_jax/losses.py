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


def head_loss(prediction: jnp.ndarray, values: jnp.ndarray, config: Any) -> jnp.ndarray:
  """Per-example loss [B] of one head, averaged over targets.

  Classification: softmax cross entropy of logits [B, T, C] (optionally label
  smoothed). Regression: squared error of predictions [B, T].
  """
  if config.task == 'classification':
    one_hot = optax.smooth_labels(
        jax.nn.one_hot(class_labels(values, config), config.num_classes),
        config.loss.label_smoothing)
    return optax.softmax_cross_entropy(prediction, one_hot).mean(axis=-1)
  return jnp.square(prediction - values).mean(axis=-1)


def supervised_loss(outputs: dict[str, jnp.ndarray], batch: dict[str, Any], config: Any,
                    weights: jnp.ndarray | None = None
                    ) -> tuple[jnp.ndarray, dict[str, jnp.ndarray]]:
  """CE(fusion) + view_weight * (CE(mel) + CE(coch)) and its parts.

  Args:
    outputs: the model's dict ('mel', 'coch', 'fusion' head outputs).
    batch: holds the label fields named in config.targets, each [B].
    config: the experiment config.
    weights: optional per-example weights [B] (e.g. a padding mask).

  Returns:
    (scalar loss, metrics dict of scalars).
  """
  values = targets(batch, config)
  if weights is None:
    weights = jnp.ones(values.shape[:1], jnp.float32)
  denom = jnp.maximum(weights.sum(), 1.0)
  parts = {name: (head_loss(outputs[name], values, config) * weights).sum() / denom
           for name in ('fusion', 'mel', 'coch')}
  loss = parts['fusion'] + config.loss.view_weight * (parts['mel'] + parts['coch'])
  metrics = {'loss': loss, **{f'loss_{k}': v for k, v in parts.items()}}
  if config.task == 'classification':
    correct = outputs['fusion'].argmax(-1) == class_labels(values, config)
    for i, name in enumerate(config.targets):
      metrics[f'{name}/accuracy'] = (correct[:, i] * weights).sum() / denom
  return loss, metrics
