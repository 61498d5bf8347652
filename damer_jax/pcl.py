"""Progressive Confidence Labelling (PCL): pseudo labels from the model's own EMA.

An EMA table holds the fusion head's class probabilities for every row a step has
written: the labelled training examples (rows 0..num_train-1) and the examples of the
unlabelled stream (rows num_train + j). After a warm-up, each step sharpens its
batch's EMA rows with a curriculum temperature tau(t), builds targets by
config.pcl.target_mode, scores every (example, target) pair by

  reliability = confidence * (1 - JS(p_mel, p_coch) / ln 2) * (1 - JS(p_ema, p) / ln 2),

and trains the fusion head with a reliability-weighted cross entropy on the most
reliable pairs above a floor: per stream (labelled, unlabelled) and per pseudo class,
at most a coverage share (coverage_start -> coverage_end) of the stream's rows in the
*global* batch.

Target modes (annotation = one-hot of the annotated class, label > label_threshold):
  'soft':   label_mix * annotation + (1 - label_mix) * sharpened EMA. With two classes
            the annotation keeps >= label_mix = 0.5: a regulariser that never
            overrules (the authors' sibling code's soft mode).
  'pseudo': trust * annotation + (1 - trust) * sharpened EMA (with hard_targets, the
            one-hot of its argmax); trust in [0, 1] says how sure the raters are of
            the annotated side (`annotation_trust`). Where a selected pair's target
            argmax differs from the annotation, the annotation is overruled: its
            supervised weight is 0, so no head is trained against the pseudo label.
Rows of the unlabelled stream (batch['labelled'] == 0) have label_mix / trust 0 in
both modes (pure pseudo labels) and supervised weight 0.

Device-count independence: budgets, ranks and ties (lower global position first) are
computed on the all-gathered batch, and each device takes its own slice; the loss is
n_devices * (local weighted sum) / (global weight sum), so the pmean of the devices'
gradients is the gradient of the global-batch loss. Every replica updates its table
with the gathered batch, so the tables stay identical on all devices.

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
TARGET_MODES = ('soft', 'pseudo')


@flax.struct.dataclass
class PCLState:
  """The EMA probability table; a pytree that lives in TrainState.pcl.

  Attributes:
    table: float32 [num_rows, num_targets, num_classes] EMA of the fusion head's
      class probabilities per row (row = the example's `index`; labelled training
      examples first, then the unlabelled stream).
    seen: bool [num_rows] the row was written at least once.
  """

  table: jax.Array
  seen: jax.Array


def init_state(num_rows: int, num_targets: int, num_classes: int) -> PCLState:
  """Uniform rows, none seen; num_rows = num_train + num_unlabelled."""
  table = jnp.full((num_rows, num_targets, num_classes), 1.0 / num_classes, jnp.float32)
  return PCLState(table=table, seen=jnp.zeros((num_rows,), jnp.bool_))


def validate(config: Any) -> None:
  """Fails with an actionable message on PCL settings that cannot work.

  Nothing is checked when config.pcl.enabled is False. `pcl_step` runs the same checks
  when it is traced.
  """
  if config.pcl.enabled:
    _check(config)


def _check(config: Any) -> None:
  cfg = config.pcl
  if config.task != 'classification':
    raise ValueError(f"PCL needs config.task='classification', got {config.task!r}; run "
                     'with --config.pcl.enabled=False.')
  if cfg.target_mode not in TARGET_MODES:
    raise ValueError(f'config.pcl.target_mode={cfg.target_mode!r}; use one of '
                     f'{TARGET_MODES}.')
  if cfg.tau_schedule not in SCHEDULES:
    raise ValueError(f'config.pcl.tau_schedule={cfg.tau_schedule!r}; use one of '
                     f'{SCHEDULES}.')
  for name in ('label_mix', 'label_trust'):
    if not 0.0 <= cfg[name] <= 1.0:
      raise ValueError(f'config.pcl.{name}={cfg[name]!r}; use a value in [0, 1].')
  if cfg.num_raters < 1:
    raise ValueError(f'config.pcl.num_raters={cfg.num_raters!r}; use the number of '
                     'raters per annotated segment (>= 1).')
  if cfg.unlabelled_batch_size < 0:
    raise ValueError(f'config.pcl.unlabelled_batch_size={cfg.unlabelled_batch_size!r}; '
                     'use 0 (no unlabelled stream) or more.')


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



def annotation_trust(values: jax.Array, stds: jax.Array, labelled: jax.Array,
                     threshold: float, num_raters: float, default: float) -> jax.Array:
  """How sure the raters are of the annotated side of the threshold, in [0, 1].

  The annotation is the mean of `num_raters` ratings with spread `std`; with a flat
  prior, the raters' population mean is ~ N(value, std^2 / num_raters), so the
  annotated side is right with probability P = Phi(|value - threshold| / stderr).
  Trust is the part of that belief above a coin flip, 2 P - 1 = erf(z / sqrt(2)): the
  annotation is trust * one-hot + (1 - trust) * uniform, and PCL replaces the
  uninformative uniform part by its pseudo label. std 0 and value off the threshold:
  1; value on the threshold: 0.

  Args:
    values: annotations [B, T] (continuous, as in the batch).
    stds: the raters' std [B, T]; < 0 = unknown.
    labelled: bool [B]; False = row of the unlabelled stream.
    threshold: config.label_threshold.
    num_raters: assumed raters per annotation (config.pcl.num_raters).
    default: trust where the std is unknown (config.pcl.label_trust).

  Returns:
    float32 trust [B, T]; 0 on unlabelled rows.
  """
  values, stds = jnp.asarray(values, jnp.float32), jnp.asarray(stds, jnp.float32)
  stderr = jnp.maximum(stds, 0.0) / math.sqrt(num_raters)
  z = jnp.abs(values - threshold) / jnp.maximum(stderr, EPS)
  trust = jnp.where(stds >= 0, lax.erf(z / math.sqrt(2.0)), default)
  return jnp.where(labelled[:, None], trust, 0.0).astype(jnp.float32)


def pseudo_targets(p_ema: jax.Array, labels: jax.Array, tau: jax.Array,
                   label_mix: float | jax.Array, num_classes: int) -> jax.Array:
  """EMA sharpened by tau, mixed with the one-hot annotation.

  Args:
    p_ema: EMA probabilities [B, T, C].
    labels: annotated classes int [B, T].
    tau: temperature [] (> 0; < 1 sharpens).
    label_mix: weight of the one-hot annotation, a float or per pair [B, T] (soft
      mode: label_mix, 0 on unlabelled rows; pseudo mode: the trust).
    num_classes: C.

  Returns:
    label_mix * onehot + (1 - label_mix) * p^(1/tau) / sum(p^(1/tau)), [B, T, C].
  """
  sharpened = jax.nn.softmax(jnp.log(jnp.maximum(p_ema, EPS)) / tau, axis=-1)
  one_hot = jax.nn.one_hot(labels, num_classes, dtype=sharpened.dtype)
  mix = jnp.expand_dims(jnp.asarray(label_mix, sharpened.dtype), -1)
  return mix * one_hot + (1.0 - mix) * sharpened


def _rank_descending(score: jax.Array) -> jax.Array:
  """Rank int [B, T] of each row along axis 0 (0 = highest; ties by position)."""
  order = jnp.argsort(-score, axis=0, stable=True)
  return jnp.argsort(order, axis=0, stable=True)


def select(rel: jax.Array, pseudo_class: jax.Array, eligible: jax.Array, cov: jax.Array,
           floor: float, class_balance: bool, num_classes: int,
           unlabelled: jax.Array | None = None) -> jax.Array:
  """Weights of the most reliable eligible pairs, per target and per stream.

  For each target and stream, the eligible pairs with rel >= floor are ranked by
  reliability (ties: lower batch position first) and the top round(cov * S) are kept,
  S = the stream's rows in the batch (padding included); with `class_balance`, each
  pseudo class keeps its own top round(cov * S / num_classes) (unused budget is not
  passed on). `round` is half-to-even, as Python's. Called on the gathered global
  batch, so the budgets do not depend on how the batch is split over devices.

  The labelled and the unlabelled stream have separate budgets: labelled rows' EMA
  follows the annotations every head is trained on, so they are more confident than
  rows of unannotated audio and a joint budget would leave the unlabelled stream
  almost nothing; and the labelled selection stays the same whether or not an
  unlabelled stream is added (config.pcl.unlabelled_batch_size sets the mix).

  Args:
    rel: reliability [B, T].
    pseudo_class: argmax class of the target int [B, T].
    eligible: bool [B, T] (row seen, past warm-up, not padding).
    cov: coverage share [] (may be traced).
    floor: minimum reliability.
    class_balance: per-class budgets (static).
    num_classes: C (static).
    unlabelled: optional bool [B], True = row of the unlabelled stream; None = one
      stream.

  Returns:
    float32 weights [B, T]: rel where selected, 0 elsewhere.
  """
  batch = rel.shape[0]
  if unlabelled is None:
    streams = [jnp.ones((batch,), jnp.bool_)]
  else:
    streams = [~unlabelled, unlabelled]
  classes = range(num_classes) if class_balance else [None]
  candidate = eligible & (rel >= floor)
  selected = jnp.zeros(rel.shape, jnp.bool_)
  for stream in streams:
    budget = jnp.round(cov * stream.sum() / len(classes))
    for c in classes:
      group = candidate & stream[:, None]
      if c is not None:
        group &= pseudo_class == c
      rank = _rank_descending(jnp.where(group, rel, -jnp.inf))
      selected |= group & (rank < budget)
  return jnp.where(selected, rel, 0.0).astype(jnp.float32)


def pcl_loss(fusion_logits: jax.Array, targets: jax.Array, weights: jax.Array,
             axis_name: str | None = None) -> jax.Array:
  """Reliability-weighted soft cross entropy, scalar; 0 when nothing is selected.

  Args:
    fusion_logits: the fusion head's logits [b, T, C].
    targets: pseudo targets [b, T, C] (no gradient flows into them).
    weights: [b, T] from `select` (no gradient).
    axis_name: the mapped device axis; None = this batch alone.

  Returns:
    n_devices * sum(w * CE) / max(global sum(w), 1), the sum over w taken over all
    devices of `axis_name` (None: sum(w * CE) / max(sum(w), 1)); the mean of it over
    the devices is the global-batch loss, and so is the mean of its gradients.
  """
  ce = optax.softmax_cross_entropy(fusion_logits, lax.stop_gradient(targets))
  weights = lax.stop_gradient(weights)
  local, total = (weights * ce).sum(), weights.sum()
  if axis_name is None:
    return local / jnp.maximum(total, 1.0)
  return lax.psum(1, axis_name) * local / jnp.maximum(lax.psum(total, axis_name), 1.0)


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
  Indices < 0 (padding) or >= num_rows are ignored. When an index occurs more than
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
  num_rows = state.seen.shape[0]
  indices = jnp.asarray(indices, jnp.int32)
  valid = enabled & (indices >= 0) & (indices < num_rows) & _last_occurrence(indices)
  rows = jnp.clip(indices, 0, num_rows - 1)
  old = state.table[rows]
  probs = probs.astype(state.table.dtype)
  new = jnp.where(state.seen[rows][:, None, None],
                  momentum * old + (1.0 - momentum) * probs, probs)
  targets = jnp.where(valid, indices, num_rows)  # Out of bounds: dropped.
  return state.replace(table=state.table.at[targets].set(new, mode='drop'),
                       seen=state.seen.at[targets].set(True, mode='drop'))


def _stds(batch: dict[str, jax.Array], config: Any, shape: tuple[int, int]) -> jax.Array:
  """The raters' std [b, T] in config.targets order; -1 (unknown) where absent."""
  unknown = jnp.full(shape[:1], -1.0, jnp.float32)
  return jnp.stack([jnp.asarray(batch.get(f'{name}_std', unknown), jnp.float32)
                    for name in config.targets], axis=-1)


def _row_flag(batch: dict[str, jax.Array], key: str, size: int) -> jax.Array:
  """bool [b]: batch[key] > 0, or True everywhere where the key is absent."""
  flag = batch.get(key)
  return jnp.ones((size,), jnp.bool_) if flag is None else jnp.asarray(flag) > 0


def mode_targets(p_ema: jax.Array, values: jax.Array, stds: jax.Array,
                 labelled: jax.Array, tau: jax.Array, config: Any
                 ) -> tuple[jax.Array, jax.Array]:
  """PCL targets of config.pcl.target_mode and where they contradict the annotation.

  Args:
    p_ema: EMA rows of the batch [b, T, C].
    values: annotations [b, T] (continuous).
    stds: the raters' std [b, T]; < 0 = unknown.
    labelled: bool [b]; False = row of the unlabelled stream.
    tau: temperature [].
    config: the experiment config.

  Returns:
    (targets [b, T, C]; bool [b, T] True where a labelled pair's target argmax differs
    from its annotated class, always False in 'soft' mode).
  """
  cfg = config.pcl
  labels = losses.class_labels(values, config)
  if cfg.target_mode == 'soft':
    mix = jnp.broadcast_to(cfg.label_mix * labelled[:, None], labels.shape)
    targets = pseudo_targets(p_ema, labels, tau, mix, config.num_classes)
    return targets, jnp.zeros(labels.shape, jnp.bool_)
  trust = annotation_trust(values, stds, labelled, config.label_threshold,
                           cfg.num_raters, cfg.label_trust)
  targets = pseudo_targets(p_ema, labels, tau, trust, config.num_classes)
  if cfg.hard_targets:
    targets = jax.nn.one_hot(targets.argmax(-1), config.num_classes, dtype=targets.dtype)
  return targets, labelled[:, None] & (targets.argmax(-1) != labels)


def pcl_step(state: PCLState, outputs: dict[str, jax.Array], batch: dict[str, jax.Array],
             step: jax.Array, config: Any, axis_name: str
             ) -> tuple[jax.Array, PCLState, dict[str, jax.Array], jax.Array]:
  """PCL loss of one device's batch, selected over the global batch, and the update.

  Args:
    state: this device's PCLState (identical on all devices).
    outputs: the model's logits 'fusion', 'mel', 'coch' [b, T, C]; only 'fusion'
      receives gradient (through the loss).
    batch: 'index' int [b], the label fields of config.targets [b]; optionally
      'labelled' [b] (0 = unlabelled stream; absent = all annotated), '<target>_std'
      [b] (raters' std, < 0 = unknown) and 'mask' [b] (1 = real; absent = all real).
    step: int [] the training step (may be traced).
    config: the experiment config (config.pcl, targets, num_classes, ...).
    axis_name: the mapped device axis.

  Returns:
    loss: this device's PCL loss [], n_devices * local / global (see `pcl_loss`), not
      yet scaled by config.pcl.weight; the caller pmeans its gradients.
    new_state: the new PCLState, identical on all devices.
    metrics: scalars, global (identical on every device): 'pcl/loss',
      'pcl/selected_fraction' (of real pairs), 'pcl/mean_reliability', 'pcl/tau',
      'pcl/coverage', 'pcl/overruled_fraction' (of labelled pairs),
      'pcl/unlabelled_selected_fraction' (of unlabelled pairs).
    supervised_weights: float32 [b, T], weights of the supervised CE of every head:
      1 where the annotation is trained on; 0 on unlabelled and padding rows and, in
      'pseudo' mode, where this step selected a pseudo label that overrules it.
  """
  _check(config)
  cfg = config.pcl
  probs = {h: jax.nn.softmax(lax.stop_gradient(outputs[h]), axis=-1)
           for h in ('fusion', 'mel', 'coch')}
  index = jnp.asarray(batch['index'], jnp.int32)
  size = index.shape[0]
  unpadded, labelled = _row_flag(batch, 'mask', size), _row_flag(batch, 'labelled', size)
  real = unpadded & (index >= 0)
  rows = jnp.clip(index, 0, state.seen.shape[0] - 1)
  p_ema = state.table[rows]
  past_warmup = step >= cfg.warmup_steps

  tau = temperature(step, cfg, config.num_train_steps)
  cov = coverage(step, cfg, config.num_train_steps)
  rel = reliability(probs['fusion'], probs['mel'], probs['coch'], p_ema)
  values = losses.targets(batch, config)
  targets, contradicts = mode_targets(p_ema, values, _stds(batch, config, rel.shape),
                                      labelled, tau, config)
  eligible = jnp.broadcast_to((state.seen[rows] & real & past_warmup)[:, None], rel.shape)

  gather = lambda x: lax.all_gather(x, axis_name, tiled=True)
  global_weights = select(gather(rel), gather(targets.argmax(-1)), gather(eligible), cov,
                          cfg.reliability_floor, cfg.class_balance, config.num_classes,
                          unlabelled=gather(~labelled))
  weights = lax.dynamic_slice_in_dim(global_weights, lax.axis_index(axis_name) * size,
                                     size)
  loss = pcl_loss(outputs['fusion'], targets, weights, axis_name)
  overruled = contradicts & (weights > 0)
  supervised = ((labelled & unpadded)[:, None] & ~overruled).astype(jnp.float32)

  # to='invarying': the gathered batch, hence the table, is typed as replicated, so
  # shard_map can return the state with out_specs P(); under pmap it is a plain gather.
  gather_replicated = lambda x: lax.all_gather(x, axis_name, tiled=True, to='invarying')
  new_state = update_table(state, gather_replicated(jnp.where(real, index, -1)),
                           gather_replicated(probs['fusion']), cfg.ema_momentum,
                           past_warmup)
  metrics = _metrics(loss, rel, weights, overruled, real, labelled, axis_name)
  metrics.update({'pcl/tau': tau, 'pcl/coverage': cov})
  return loss, new_state, metrics, supervised


def _metrics(loss: jax.Array, rel: jax.Array, weights: jax.Array, overruled: jax.Array,
             real: jax.Array, labelled: jax.Array, axis_name: str
             ) -> dict[str, jax.Array]:
  """Global PCL metrics from one device's [b, T] pairs and [b] row flags."""
  total = lambda x: lax.psum(jnp.sum(x, dtype=jnp.float32), axis_name)
  share = lambda part, whole: total(part) / jnp.maximum(total(whole), 1.0)
  pairs = jnp.broadcast_to(real[:, None], rel.shape)
  unlabelled_pairs = pairs & ~labelled[:, None]
  selected = weights > 0
  return {
      'pcl/loss': lax.pmean(loss, axis_name),
      'pcl/selected_fraction': share(selected & pairs, pairs),
      'pcl/mean_reliability': share(jnp.where(pairs, rel, 0.0), pairs),
      'pcl/overruled_fraction': share(overruled & pairs, pairs & labelled[:, None]),
      'pcl/unlabelled_selected_fraction': share(selected & unlabelled_pairs,
                                                unlabelled_pairs),
  }
