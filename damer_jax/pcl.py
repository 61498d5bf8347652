"""Progressive Confidence Labelling (PCL): pseudo targets from the model's own EMA.

An EMA table holds every training example's predicted class probabilities (row = the
example's `index`). After a warm-up, each step sharpens the EMA rows of its batch with
a curriculum temperature tau(t) into pseudo targets (mixed with the ground truth),
scores every (example, target) by

  reliability = confidence * (1 - JS(p_mel, p_coch) / ln 2) * (1 - JS(p_ema, p) / ln 2),

keeps only the most reliable ones above a floor, at most a coverage share of the batch
that grows from coverage_start to coverage_end, and trains the fusion head on them
with a reliability-weighted cross entropy. Every replica updates its table with the
all-gathered batch, so the tables stay identical on all devices.

All functions are pure and jit-safe; `pcl_step` is the per-device piece of the train
step (inside `jax.pmap` or `jax.shard_map` with a named axis).
"""

from __future__ import annotations

import math
from typing import Any

import flax.struct
import jax
from jax import lax
import jax.numpy as jnp
import optax

from damer_jax import losses

EPS = 1e-12  # Floor of probabilities inside logarithms.
LN2 = math.log(2.0)  # Largest JS divergence in nats.
SCHEDULES = ('linear', 'cosine', 'constant')


@flax.struct.dataclass
class PCLState:
  """The EMA probability table; a pytree that lives in TrainState.pcl.

  Attributes:
    table: float32 [num_train, num_targets, num_classes] EMA of the fusion head's
      class probabilities per training example (row = the example's `index`).
    seen: bool [num_train] the row was written at least once.
  """

  table: jax.Array
  seen: jax.Array


def init_state(num_train: int, num_targets: int, num_classes: int) -> PCLState:
  """Uniform rows, none seen."""
  table = jnp.full((num_train, num_targets, num_classes), 1.0 / num_classes, jnp.float32)
  return PCLState(table=table, seen=jnp.zeros((num_train,), jnp.bool_))


def _kl(p: jax.Array, m: jax.Array, axis: int) -> jax.Array:
  """KL(p || m) in nats, 0 * log 0 = 0; finite gradients at p = 0."""
  terms = p * (jnp.log(jnp.maximum(p, EPS)) - jnp.log(jnp.maximum(m, EPS)))
  return jnp.sum(jnp.where(p > 0, terms, 0.0), axis=axis)


def js_divergence(p: jax.Array, q: jax.Array, axis: int = -1) -> jax.Array:
  """Jensen-Shannon divergence in nats (in [0, ln 2]) of distributions along `axis`.

  Args:
    p, q: probabilities of the same shape [..., C, ...]; each sums to 1 along `axis`.
    axis: the class axis.

  Returns:
    JS(p, q), the shape of p without `axis`.
  """
  p, q = jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32)
  m = 0.5 * (p + q)
  js = 0.5 * _kl(p, m, axis) + 0.5 * _kl(q, m, axis)
  return jnp.clip(js, 0.0, LN2)


def _schedule(step: jax.Array, start: float, end: float, cfg: Any,
              num_train_steps: int) -> jax.Array:
  """`start` until cfg.warmup_steps, then to `end` at num_train_steps (cfg.tau_schedule)."""
  if cfg.tau_schedule not in SCHEDULES:
    raise ValueError(f'config.pcl.tau_schedule={cfg.tau_schedule!r}; use one of '
                     f'{SCHEDULES}.')
  if cfg.tau_schedule == 'constant':
    return jnp.asarray(start, jnp.float32)
  span = max(num_train_steps - cfg.warmup_steps, 1)
  progress = jnp.clip((jnp.asarray(step, jnp.float32) - cfg.warmup_steps) / span, 0.0, 1.0)
  if cfg.tau_schedule == 'cosine':
    progress = 0.5 * (1.0 - jnp.cos(jnp.pi * progress))
  return start + (end - start) * progress


def temperature(step: jax.Array, cfg: Any, num_train_steps: int) -> jax.Array:
  """Sharpening temperature tau(t), float32 []: tau_start -> tau_end (cfg = config.pcl)."""
  return _schedule(step, cfg.tau_start, cfg.tau_end, cfg, num_train_steps)


def coverage(step: jax.Array, cfg: Any, num_train_steps: int) -> jax.Array:
  """Share of the batch PCL may use, float32 []: coverage_start -> coverage_end."""
  return _schedule(step, cfg.coverage_start, cfg.coverage_end, cfg, num_train_steps)


def reliability(p_fusion: jax.Array, p_mel: jax.Array, p_coch: jax.Array,
                p_ema: jax.Array) -> jax.Array:
  """Confidence x cross-view consistency x temporal stability, in [0, 1].

  Args:
    p_fusion, p_mel, p_coch: the heads' class probabilities [B, T, C].
    p_ema: the EMA table rows of the batch [B, T, C].

  Returns:
    reliability [B, T].
  """
  confidence = p_fusion.max(axis=-1)
  consistency = 1.0 - js_divergence(p_mel, p_coch) / LN2
  stability = 1.0 - js_divergence(p_ema, p_fusion) / LN2
  return confidence * consistency * stability


def pseudo_targets(p_ema: jax.Array, labels: jax.Array, tau: jax.Array, label_mix: float,
                   num_classes: int) -> jax.Array:
  """EMA sharpened by tau, mixed with the one-hot ground truth.

  Args:
    p_ema: EMA probabilities [B, T, C].
    labels: ground-truth classes int [B, T].
    tau: temperature [] (> 0; < 1 sharpens).
    label_mix: weight of the one-hot truth.
    num_classes: C.

  Returns:
    label_mix * onehot + (1 - label_mix) * p^(1/tau) / sum(p^(1/tau)), [B, T, C].
  """
  sharpened = jax.nn.softmax(jnp.log(jnp.maximum(p_ema, EPS)) / tau, axis=-1)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=sharpened.dtype)
  return label_mix * one_hot + (1.0 - label_mix) * sharpened


def _rank_descending(score: jax.Array) -> jax.Array:
  """Rank int [B, T] of each row along axis 0 (0 = highest; ties by position)."""
  order = jnp.argsort(-score, axis=0, stable=True)
  return jnp.argsort(order, axis=0, stable=True)


def select(rel: jax.Array, pseudo_class: jax.Array, eligible: jax.Array, cov: jax.Array,
           floor: float, class_balance: bool, num_classes: int) -> jax.Array:
  """Weights of the most reliable eligible examples, per target.

  For each target, the eligible examples with rel >= floor are ranked by reliability
  (ties: lower batch position first) and the top round(cov * B) are kept; with
  `class_balance`, each pseudo class keeps its own top round(cov * B / num_classes)
  (unused budget is not passed on). `round` is half-to-even, as Python's.

  Args:
    rel: reliability [B, T].
    pseudo_class: argmax class of the pseudo target int [B, T].
    eligible: bool [B, T] (row seen, past warm-up, not padding).
    cov: coverage share [] (may be traced).
    floor: minimum reliability.
    class_balance: per-class budgets (static).
    num_classes: C (static).

  Returns:
    float32 weights [B, T]: rel where selected, 0 elsewhere.
  """
  batch = rel.shape[0]
  candidate = eligible & (rel >= floor)
  if class_balance:
    groups = [candidate & (pseudo_class == c) for c in range(num_classes)]
    budget = jnp.round(cov * batch / num_classes)
  else:
    groups = [candidate]
    budget = jnp.round(cov * batch)
  selected = jnp.zeros(rel.shape, jnp.bool_)
  for group in groups:
    rank = _rank_descending(jnp.where(group, rel, -jnp.inf))
    selected |= group & (rank < budget)
  return jnp.where(selected, rel, 0.0).astype(jnp.float32)


def pcl_loss(fusion_logits: jax.Array, targets: jax.Array, weights: jax.Array) -> jax.Array:
  """Reliability-weighted soft cross entropy, scalar; 0 when nothing is selected.

  Args:
    fusion_logits: the fusion head's logits [B, T, C].
    targets: pseudo targets [B, T, C] (no gradient flows into them).
    weights: [B, T] from `select`.

  Returns:
    sum(w * CE) / max(sum(w), 1).
  """
  ce = optax.softmax_cross_entropy(fusion_logits, lax.stop_gradient(targets))
  weights = lax.stop_gradient(weights)
  return (weights * ce).sum() / jnp.maximum(weights.sum(), 1.0)


def _last_occurrence(indices: jax.Array) -> jax.Array:
  """bool [N]: True at the last position of each distinct value of `indices` [N]."""
  order = jnp.argsort(indices, stable=True)
  ordered = indices[order]
  is_last = jnp.append(ordered[:-1] != ordered[1:], True)
  return jnp.zeros(indices.shape, jnp.bool_).at[order].set(is_last)


def update_table(state: PCLState, indices: jax.Array, probs: jax.Array, momentum: float,
                 enabled: jax.Array) -> PCLState:
  """EMA update of the rows `indices` with `probs`.

  Seen rows become m * old + (1 - m) * p, unseen rows p; all are marked seen.
  Indices < 0 (padding) or >= num_train are ignored. When an index occurs more than
  once, its last occurrence wins (applied to the old row, not chained); the scatter
  then has unique indices, so the result is deterministic on every backend.

  Args:
    state: the PCL state.
    indices: int [N] table rows (the whole all-gathered batch).
    probs: class probabilities [N, T, C].
    momentum: EMA momentum m.
    enabled: bool [] (may be traced); False returns the state unchanged.

  Returns:
    The new PCLState.
  """
  num_train = state.seen.shape[0]
  indices = jnp.asarray(indices, jnp.int32)
  valid = enabled & (indices >= 0) & (indices < num_train) & _last_occurrence(indices)
  rows = jnp.clip(indices, 0, num_train - 1)
  old = state.table[rows]
  probs = probs.astype(state.table.dtype)
  new = jnp.where(state.seen[rows][:, None, None],
                  momentum * old + (1.0 - momentum) * probs, probs)
  targets = jnp.where(valid, indices, num_train)  # Out of bounds: dropped.
  return state.replace(table=state.table.at[targets].set(new, mode='drop'),
                       seen=state.seen.at[targets].set(True, mode='drop'))


def pcl_step(state: PCLState, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             step: jax.Array, config: Any, axis_name: str
             ) -> tuple[jax.Array, PCLState, dict[str, jax.Array]]:
  """PCL loss of one device's batch and the table update with the gathered batch.

  Args:
    state: this device's PCLState (identical on all devices).
    outputs: the model's logits 'fusion', 'mel', 'coch' [b, T, C]; only 'fusion'
      receives gradient (through the loss).
    batch: 'index' int [b], the label fields of config.targets [b], optionally
      'mask' [b] (1 = real example; absent = all real).
    step: int [] the training step (may be traced).
    config: the experiment config (config.pcl, targets, num_classes, ...).
    axis_name: the mapped device axis.

  Returns:
    (this device's PCL loss [], not yet scaled by config.pcl.weight; the new state,
    identical on all devices; this device's metrics 'pcl/loss', 'pcl/selected_fraction',
    'pcl/mean_reliability', 'pcl/tau', 'pcl/coverage', to be averaged by the caller).
  """
  if config.task != 'classification':
    raise ValueError(f"PCL needs config.task='classification', got {config.task!r}; run "
                     'with --config.pcl.enabled=False.')
  cfg = config.pcl
  probs = {h: jax.nn.softmax(lax.stop_gradient(outputs[h]), axis=-1)
           for h in ('fusion', 'mel', 'coch')}
  index = jnp.asarray(batch['index'], jnp.int32)
  mask = batch.get('mask')
  real = jnp.ones(index.shape, jnp.bool_) if mask is None else jnp.asarray(mask) > 0
  real &= index >= 0
  rows = jnp.clip(index, 0, state.seen.shape[0] - 1)
  p_ema = state.table[rows]
  past_warmup = step >= cfg.warmup_steps

  tau = temperature(step, cfg, config.num_train_steps)
  cov = coverage(step, cfg, config.num_train_steps)
  rel = reliability(probs['fusion'], probs['mel'], probs['coch'], p_ema)
  labels = losses.class_labels(losses.targets(batch, config), config)
  targets = pseudo_targets(p_ema, labels, tau, cfg.label_mix, config.num_classes)
  eligible = jnp.broadcast_to((state.seen[rows] & real & past_warmup)[:, None], rel.shape)
  weights = select(rel, targets.argmax(-1), eligible, cov, cfg.reliability_floor,
                   cfg.class_balance, config.num_classes)
  loss = pcl_loss(outputs['fusion'], targets, weights)

  # to='invarying': the gathered batch, hence the table, is typed as replicated, so
  # shard_map can return the state with out_specs P(); under pmap it is a plain gather.
  gather = lambda x: lax.all_gather(x, axis_name, tiled=True, to='invarying')
  new_state = update_table(state, gather(jnp.where(real, index, -1)),
                           gather(probs['fusion']), cfg.ema_momentum, past_warmup)

  real_pairs = jnp.maximum(real.sum() * rel.shape[1], 1)
  metrics = {
      'pcl/loss': loss,
      'pcl/selected_fraction': (weights > 0).sum() / real_pairs,
      'pcl/mean_reliability': (rel * real[:, None]).sum() / real_pairs,
      'pcl/tau': tau,
      'pcl/coverage': cov,
  }
  return loss, new_state, metrics
