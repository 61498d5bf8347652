"""SAML, Style Anchored Memory Learning: a memory queue and class anchors.

A FIFO queue holds K L2-normalised projected embeddings ("keys", stop-gradient, from
the key encoder) with their class per target and their track id. The current
encoder's projections ("queries") are trained with a supervised InfoNCE loss against
the queue whose positives are same-class entries from *other* tracks, plus an anchor
term pulling each query to the EMA anchor of its class. Segments of one emotion from
different tracks are thereby pulled together, which counters cross-track drift.

Everything here is a pure function of a `SAMLState`. `saml_step` is the per-device
piece of the train step: under data parallelism it all-gathers the keys, labels,
track ids and mask over the named axis and every replica enqueues the same gathered
batch, so the queues and anchors stay identical on all devices.

Shapes: K queue size, P projection width, T targets, C classes per target,
N / B / b batch sizes.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from damer_jax import losses

_MASKED_LOGIT = -1e9  # Finite "minus infinity": no NaN in softmax or its gradient.


@flax.struct.dataclass
class SAMLState:
  """The queue and the anchors; every field is an array (checkpointable).

  Attributes:
    queue_keys: float32 [K, P] L2-normalised key embeddings.
    queue_labels: int32 [K, T] class of each entry per target.
    queue_tracks: int32 [K] track id of each entry (-1 while empty).
    queue_valid: bool [K] whether the slot has been written.
    pointer: int32 [] next write position.
    anchors: float32 [T, C, P] L2-normalised EMA of the class-mean keys.
    anchors_valid: bool [T, C] whether the anchor has been set.
  """

  queue_keys: jax.Array
  queue_labels: jax.Array
  queue_tracks: jax.Array
  queue_valid: jax.Array
  pointer: jax.Array
  anchors: jax.Array
  anchors_valid: jax.Array


def init_state(queue_size: int, dim: int, num_targets: int, num_classes: int) -> SAMLState:
  """An empty queue of `queue_size` entries of width `dim`, no anchors yet."""
  return SAMLState(
      queue_keys=jnp.zeros((queue_size, dim), jnp.float32),
      queue_labels=jnp.zeros((queue_size, num_targets), jnp.int32),
      queue_tracks=jnp.full((queue_size,), -1, jnp.int32),
      queue_valid=jnp.zeros((queue_size,), bool),
      pointer=jnp.zeros((), jnp.int32),
      anchors=jnp.zeros((num_targets, num_classes, dim), jnp.float32),
      anchors_valid=jnp.zeros((num_targets, num_classes), bool))


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-6) -> jax.Array:
  """x / max(||x||, eps) along `axis`; zero vectors stay zero (finite gradient)."""
  squared = jnp.sum(jnp.square(x), axis=axis, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(squared, eps * eps))


def _valid_mask(valid: jax.Array | None, n: int) -> jax.Array:
  """bool [n]: `valid` as a mask, all True when None."""
  if valid is None:
    return jnp.ones((n,), bool)
  return jnp.asarray(valid).astype(bool)


def enqueue(state: SAMLState, keys: jax.Array, labels: jax.Array, tracks: jax.Array,
            valid: jax.Array | None = None) -> SAMLState:
  """Writes the valid rows of a batch into the FIFO queue; jit-safe, static shapes.

  Valid rows are compacted (kept in order, padding skipped) and written one after
  another from `pointer`, wrapping modulo K; the pointer advances by the number of
  valid rows only. If more than K rows are valid only the last K are written, into
  the slots a row-by-row write would have left them in.

  Args:
    state: the current state.
    keys: float [N, P] L2-normalised keys (stop-gradient is applied here).
    labels: int [N, T] class per target.
    tracks: int [N] track ids.
    valid: optional bool [N]; False rows (padding) are not written.

  Returns:
    The state with the queue fields and pointer updated (anchors unchanged).
  """
  size = state.queue_keys.shape[0]
  valid = _valid_mask(valid, keys.shape[0])
  rank = jnp.cumsum(valid.astype(jnp.int32)) - 1  # Position among the valid rows.
  num_valid = jnp.sum(valid.astype(jnp.int32))
  keep = valid & (rank >= num_valid - size)
  slot = jnp.where(keep, (state.pointer + rank) % size, size)  # size = dropped.
  write = lambda queue, rows: queue.at[slot].set(rows.astype(queue.dtype), mode='drop')
  return state.replace(
      queue_keys=write(state.queue_keys, jax.lax.stop_gradient(keys)),
      queue_labels=write(state.queue_labels, labels),
      queue_tracks=write(state.queue_tracks, tracks),
      queue_valid=write(state.queue_valid, jnp.ones_like(valid)),
      pointer=((state.pointer + num_valid) % size).astype(jnp.int32))


def update_anchors(state: SAMLState, keys: jax.Array, labels: jax.Array, momentum: float,
                   valid: jax.Array | None = None) -> SAMLState:
  """EMA of the class-mean keys, per target and class.

  For each target t and class c with members among the valid rows:
  anchor <- normalize(m * anchor + (1 - m) * mean(keys of class c)), or
  normalize(mean) the first time. Classes absent from the batch keep their anchor.

  Args:
    state: the current state.
    keys: float [N, P] keys (stop-gradient is applied here).
    labels: int [N, T] class per target.
    momentum: m in [0, 1].
    valid: optional bool [N]; False rows are ignored.
  """
  num_classes = state.anchors.shape[1]
  keys = jax.lax.stop_gradient(keys).astype(jnp.float32)
  valid = _valid_mask(valid, keys.shape[0])
  members = jax.nn.one_hot(labels, num_classes) * valid[:, None, None]  # [N, T, C]
  counts = members.sum(axis=0)  # [T, C]
  sums = jnp.einsum('ntc,np->tcp', members, keys, precision=jax.lax.Precision.HIGHEST)
  means = sums / jnp.maximum(counts, 1.0)[..., None]
  blended = momentum * state.anchors + (1.0 - momentum) * means
  updated = l2_normalize(jnp.where(state.anchors_valid[..., None], blended, means))
  present = counts > 0
  return state.replace(anchors=jnp.where(present[..., None], updated, state.anchors),
                       anchors_valid=state.anchors_valid | present)


def info_nce(queries: jax.Array, labels: jax.Array, tracks: jax.Array, state: SAMLState,
             temperature: float, valid: jax.Array | None = None
             ) -> tuple[jax.Array, jax.Array]:
  """Supervised (SupCon-style) InfoNCE of the queries against the queue.

  For target t and query i the candidates are the valid queue entries from tracks
  other than track i; entries of the query's own track are excluded entirely (not
  positives and not in the softmax denominator either): in the memory they are the
  same piece's style, so as positives they would be trivial and as negatives they
  would push segments of one track apart. Positives are the candidates of the same
  class for target t. With logits = q . k / temperature over the candidates,
  loss(i, t) = -mean over positives p of log_softmax(logits)[p].

  The loss averages loss(i, t) over the (valid query, target) pairs that have at
  least one positive; pairs without positives contribute nothing, and the loss is 0
  (with a finite, zero gradient) when no pair has one, e.g. with an empty queue.

  Args:
    queries: float [B, P] L2-normalised, with gradient.
    labels: int [B, T] class per target.
    tracks: int [B] track ids.
    state: the queue (stop-gradient is applied to its keys).
    temperature: softmax temperature.
    valid: optional bool [B]; False rows (padding) are ignored.

  Returns:
    (scalar loss, fraction of valid (query, target) pairs that had a positive).
  """
  valid = _valid_mask(valid, queries.shape[0])
  queue_keys = jax.lax.stop_gradient(state.queue_keys)
  logits = queries.astype(jnp.float32) @ queue_keys.T / temperature  # [B, K]
  candidates = state.queue_valid[None, :] & (state.queue_tracks[None, :] != tracks[:, None])
  log_prob = jax.nn.log_softmax(jnp.where(candidates, logits, _MASKED_LOGIT), axis=-1)
  same_class = labels[:, :, None] == state.queue_labels.T[None, :, :]  # [B, T, K]
  positives = (same_class & candidates[:, None, :]).astype(jnp.float32)
  num_positives = positives.sum(axis=-1)  # [B, T]
  has_positive = (num_positives > 0) & valid[:, None]
  per_pair = -(positives * log_prob[:, None, :]).sum(-1) / jnp.maximum(num_positives, 1.0)
  weight = has_positive.astype(jnp.float32)
  loss = (per_pair * weight).sum() / jnp.maximum(weight.sum(), 1.0)
  num_pairs = jnp.maximum(valid.sum() * labels.shape[1], 1).astype(jnp.float32)
  return loss, weight.sum() / num_pairs


def anchor_loss(queries: jax.Array, labels: jax.Array, state: SAMLState,
                valid: jax.Array | None = None) -> jax.Array:
  """Mean of 1 - cos(query, anchors[t, label]) over valid (query, target) pairs.

  Pairs whose class anchor is not set yet are left out; 0 when no pair remains.
  Anchors are stop-gradient.

  Args:
    queries: float [B, P], with gradient.
    labels: int [B, T] class per target.
    state: holds the anchors [T, C, P].
    valid: optional bool [B]; False rows are ignored.
  """
  valid = _valid_mask(valid, queries.shape[0])
  num_targets = labels.shape[1]
  target_index = jnp.arange(num_targets)[None, :]
  anchors = jax.lax.stop_gradient(state.anchors)[target_index, labels]  # [B, T, P]
  weight = (state.anchors_valid[target_index, labels] & valid[:, None]).astype(jnp.float32)
  cosine = jnp.einsum('bp,btp->bt', l2_normalize(queries.astype(jnp.float32)),
                      l2_normalize(anchors))
  return ((1.0 - cosine) * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def ema_params(ema: Any, params: Any, momentum: float) -> Any:
  """ema <- momentum * ema + (1 - momentum) * params, leaf by leaf (dtypes kept)."""
  return jax.tree.map(lambda e, p: (momentum * e + (1.0 - momentum) * p).astype(e.dtype),
                      ema, params)


def _gather(x: jax.Array, axis_name: str | None) -> jax.Array:
  """x [b, ...] from every device along `axis_name`, concatenated -> [devices * b, ...]."""
  if axis_name is None:
    return x
  # 'invarying': the result is the same on every device, so under shard_map (with its
  # replication check on) the updated state may leave with out_specs P().
  return jax.lax.all_gather(x, axis_name, tiled=True, to='invarying')


def saml_step(state: SAMLState, queries: jax.Array, keys: jax.Array,
              batch: dict[str, jax.Array], config: Any, axis_name: str | None
              ) -> tuple[jax.Array, SAMLState, dict[str, jax.Array]]:
  """SAML loss of one device's batch, then the queue and anchor update.

  The loss uses the queue and anchors *before* this step's update. The update
  all-gathers keys, labels, track ids and mask over `axis_name` and every replica
  enqueues the same gathered batch and updates the anchors with it, so the state stays
  identical on all devices. Call inside jax.pmap / shard_map with that axis (or with
  axis_name=None on a single device).

  Args:
    state: this device's SAMLState.
    queries: float [b, P] current encoder's L2-normalised projections, with gradient.
    keys: float [b, P] L2-normalised key-encoder projections (stop-gradient applied).
    batch: 'track_id' int [b], the label fields of config.targets (floats, class =
      value > config.label_threshold) and optionally 'mask' float [b] (1 = real).
    config: the experiment config (config.saml.*, targets, label_threshold).
    axis_name: the mapped device axis.

  Returns:
    (loss = info_nce + anchor_weight * anchor, not multiplied by config.saml.weight;
    the new state; this device's metrics 'saml/loss', 'saml/info_nce', 'saml/anchor',
    'saml/positive_fraction' and 'saml/queue_fill' (share of the queue filled after
    this step's enqueue)).
  """
  keys = jax.lax.stop_gradient(keys)
  labels = losses.class_labels(losses.targets(batch, config), config)
  tracks = batch['track_id'].astype(jnp.int32)
  mask = batch.get('mask')
  mask = jnp.ones(tracks.shape, jnp.float32) if mask is None else mask.astype(jnp.float32)
  valid = mask > 0

  nce, positive_fraction = info_nce(queries, labels, tracks, state,
                                    config.saml.temperature, valid)
  anchor = anchor_loss(queries, labels, state, valid)
  loss = nce + config.saml.anchor_weight * anchor

  all_keys, all_labels, all_tracks, all_valid = (
      _gather(x, axis_name) for x in (keys, labels, tracks, mask))
  all_valid = all_valid > 0
  state = enqueue(state, all_keys, all_labels, all_tracks, all_valid)
  state = update_anchors(state, all_keys, all_labels, config.saml.anchor_momentum, all_valid)
  metrics = {'saml/loss': loss, 'saml/info_nce': nce, 'saml/anchor': anchor,
             'saml/positive_fraction': positive_fraction,
             'saml/queue_fill': state.queue_valid.astype(jnp.float32).mean()}
  return loss, state, metrics
