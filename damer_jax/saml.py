"""SAML, Style Anchored Memory Learning: a memory queue and class anchors.

A FIFO queue holds K L2-normalised projected embeddings ("keys", stop-gradient, from
the key encoder) with their SAML labels and their track id. The current encoder's
projections ("queries") are trained with a supervised InfoNCE loss against the queue
whose positives are same-label entries from *other* tracks, plus an anchor term
pulling each query to the EMA anchor of its label. Segments of one emotion from
different tracks are thereby pulled together, which counters cross-track drift.

SAML labels (config.saml.positives):
* 'joint': one label set, the joint emotion class over all targets (the
  valence-arousal quadrant for two binary targets), class = sum_t class_t * C**t;
  one softmax per query; C**T anchors.
* 'per_target': one label set per target (the class of that target); a separate
  softmax per (query, target); T * C anchors.
A "label set" is one of the A columns of the labels (A = 1 joint, A = T per target),
with G classes each (G = C**T joint, G = C per target).

Rows of the unlabelled stream ('labelled' = 0) and padding ('mask' = 0) are neither
queries nor enqueued nor used for the anchors. The InfoNCE and anchor losses average
over the (query, label set) terms of the *global* batch: `saml_step`'s per-device loss
is n_devices * local sum / global count (lax.psum over the axis), so the mean of the
per-device gradients is the gradient of the global-batch loss, whatever the number of
devices.

Everything here is a pure function of a `SAMLState`. `saml_step` is the per-device
piece of the train step: under data parallelism it all-gathers the keys, labels,
track ids and mask over the named axis and every replica enqueues the same gathered
batch, so the queues and anchors stay identical on all devices.

Shapes: K queue size, P projection width, T targets, C classes per target, A label
sets, G classes per label set, N / B / b batch sizes.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
from jax import lax
import jax.numpy as jnp

from damer_jax import losses

POSITIVES = ('joint', 'per_target')
_MASKED_LOGIT = -1e9  # Finite "minus infinity": no NaN in softmax or its gradient.


@flax.struct.dataclass
class SAMLState:
  """The queue and the anchors; every field is an array (checkpointable).

  Attributes:
    queue_keys: float32 [K, P] L2-normalised key embeddings.
    queue_labels: int32 [K, A] SAML label of each entry per label set.
    queue_tracks: int32 [K] track id of each entry (-1 while empty).
    queue_valid: bool [K] whether the slot has been written.
    pointer: int32 [] next write position.
    anchors: float32 [A, G, P] L2-normalised EMA of the label-mean keys.
    anchors_valid: bool [A, G] whether the anchor has been set.
  """

  queue_keys: jax.Array
  queue_labels: jax.Array
  queue_tracks: jax.Array
  queue_valid: jax.Array
  pointer: jax.Array
  anchors: jax.Array
  anchors_valid: jax.Array


def label_sets(num_targets: int, num_classes: int, positives: str) -> tuple[int, int]:
  """(A, G): label sets and classes per set of the positives mode (see module doc)."""
  if positives == 'joint':
    return 1, num_classes ** num_targets
  if positives == 'per_target':
    return num_targets, num_classes
  raise ValueError(f'config.saml.positives must be one of {POSITIVES}, got {positives!r}.')


def saml_labels(classes: jax.Array, num_classes: int, positives: str) -> jax.Array:
  """int32 [N, A] SAML labels from the classes per target int [N, T].

  'joint': [N, 1] joint class sum_t classes[:, t] * C**t; 'per_target': the classes.
  """
  classes = jnp.asarray(classes, jnp.int32)
  label_sets(classes.shape[1], num_classes, positives)  # Validates `positives`.
  if positives == 'per_target':
    return classes
  powers = num_classes ** jnp.arange(classes.shape[1], dtype=jnp.int32)
  return (classes * powers).sum(axis=1, keepdims=True)


def init_state(queue_size: int, dim: int, num_targets: int, num_classes: int,
               positives: str = 'joint') -> SAMLState:
  """An empty queue of `queue_size` entries of width `dim`, no anchors yet.

  The label fields take the shapes of `positives` (config.saml.positives): labels
  [K, A] and anchors [A, G, P] with (A, G) = label_sets(num_targets, num_classes,
  positives).
  """
  sets, groups = label_sets(num_targets, num_classes, positives)
  return SAMLState(
      queue_keys=jnp.zeros((queue_size, dim), jnp.float32),
      queue_labels=jnp.zeros((queue_size, sets), jnp.int32),
      queue_tracks=jnp.full((queue_size,), -1, jnp.int32),
      queue_valid=jnp.zeros((queue_size,), bool),
      pointer=jnp.zeros((), jnp.int32),
      anchors=jnp.zeros((sets, groups, dim), jnp.float32),
      anchors_valid=jnp.zeros((sets, groups), bool))


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
    labels: int [N, A] SAML labels (`saml_labels`).
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
  """EMA of the label-mean keys, per label set and label.

  For each label set a and label g with members among the valid rows:
  anchor <- normalize(m * anchor + (1 - m) * mean(keys of label g)), or
  normalize(mean) the first time. Labels absent from the batch keep their anchor.

  Args:
    state: the current state.
    keys: float [N, P] keys (stop-gradient is applied here).
    labels: int [N, A] SAML labels.
    momentum: m in [0, 1].
    valid: optional bool [N]; False rows are ignored.
  """
  num_labels = state.anchors.shape[1]
  keys = jax.lax.stop_gradient(keys).astype(jnp.float32)
  valid = _valid_mask(valid, keys.shape[0])
  members = jax.nn.one_hot(labels, num_labels) * valid[:, None, None]  # [N, A, G]
  counts = members.sum(axis=0)  # [A, G]
  sums = jnp.einsum('nag,np->agp', members, keys, precision=jax.lax.Precision.HIGHEST)
  means = sums / jnp.maximum(counts, 1.0)[..., None]
  blended = momentum * state.anchors + (1.0 - momentum) * means
  updated = l2_normalize(jnp.where(state.anchors_valid[..., None], blended, means))
  present = counts > 0
  return state.replace(anchors=jnp.where(present[..., None], updated, state.anchors),
                       anchors_valid=state.anchors_valid | present)


def _global_ratio(numerator: jax.Array, denominator: jax.Array, axis_name: str | None
                  ) -> jax.Array:
  """sum(numerator) / max(sum(denominator), 1) over the global batch."""
  numerator, denominator = numerator.sum(), denominator.sum()
  if axis_name is not None:
    numerator, denominator = lax.psum((numerator, denominator), axis_name)
  return numerator / jnp.maximum(denominator, 1.0)


def info_nce(queries: jax.Array, labels: jax.Array, tracks: jax.Array, state: SAMLState,
             temperature: float, valid: jax.Array | None = None,
             axis_name: str | None = None) -> tuple[jax.Array, jax.Array]:
  """Supervised (SupCon-style) InfoNCE of the queries against the queue.

  For label set a and query i the candidates are the valid queue entries from tracks
  other than track i; entries of the query's own track are excluded entirely (not
  positives and not in the softmax denominator either): in the memory they are the
  same piece's style, so as positives they would be trivial and as negatives they
  would push segments of one track apart. Positives are the candidates with the
  query's label in set a (the same joint class, or the same class of target a).
  With logits = q . k / temperature over the candidates,
  loss(i, a) = -mean over positives p of log_softmax(logits)[p].

  The loss averages loss(i, a) over the (valid query, label set) pairs that have at
  least one positive; pairs without positives contribute nothing, and the loss is 0
  (with a finite, zero gradient) when no pair has one, e.g. with an empty queue.

  Args:
    queries: float [B, P] L2-normalised, with gradient.
    labels: int [B, A] SAML labels (`saml_labels`), the queue's labelling.
    tracks: int [B] track ids.
    state: the queue (stop-gradient is applied to its keys).
    temperature: softmax temperature.
    valid: optional bool [B]; False rows (padding, unlabelled) are not queries.
    axis_name: the mapped device axis, or None. With an axis the average is over the
      global batch: the loss is this device's share n_devices * local sum / global
      count (its mean over devices is the global loss) and the fraction is global.

  Returns:
    (scalar loss, fraction of valid (query, label set) pairs that had a positive).
  """
  valid = _valid_mask(valid, queries.shape[0])
  queue_keys = jax.lax.stop_gradient(state.queue_keys)
  logits = jnp.matmul(queries.astype(jnp.float32), queue_keys.T,
                      precision=lax.Precision.HIGHEST) / temperature  # [B, K]
  candidates = state.queue_valid[None, :] & (state.queue_tracks[None, :] != tracks[:, None])
  log_prob = jax.nn.log_softmax(jnp.where(candidates, logits, _MASKED_LOGIT), axis=-1)
  same_label = labels[:, :, None] == state.queue_labels.T[None, :, :]  # [B, A, K]
  positives = (same_label & candidates[:, None, :]).astype(jnp.float32)
  num_positives = positives.sum(axis=-1)  # [B, A]
  has_positive = ((num_positives > 0) & valid[:, None]).astype(jnp.float32)
  per_pair = -(positives * log_prob[:, None, :]).sum(-1) / jnp.maximum(num_positives, 1.0)
  loss = losses.global_mean(per_pair, has_positive, axis_name)
  pairs = jnp.broadcast_to(valid[:, None], has_positive.shape).astype(jnp.float32)
  return loss, _global_ratio(has_positive, pairs, axis_name)


def anchor_loss(queries: jax.Array, labels: jax.Array, state: SAMLState,
                valid: jax.Array | None = None, axis_name: str | None = None
                ) -> jax.Array:
  """Mean of 1 - cos(query, anchors[a, label]) over valid (query, label set) pairs.

  Pairs whose anchor is not set yet are left out; 0 when no pair remains. Anchors are
  stop-gradient.

  Args:
    queries: float [B, P], with gradient.
    labels: int [B, A] SAML labels.
    state: holds the anchors [A, G, P].
    valid: optional bool [B]; False rows are ignored.
    axis_name: the mapped device axis, or None; with an axis the mean is over the
      global batch and the value is this device's share (as in `info_nce`).
  """
  valid = _valid_mask(valid, queries.shape[0])
  set_index = jnp.arange(labels.shape[1])[None, :]
  anchors = jax.lax.stop_gradient(state.anchors)[set_index, labels]  # [B, A, P]
  weight = (state.anchors_valid[set_index, labels] & valid[:, None]).astype(jnp.float32)
  cosine = jnp.einsum('bp,bap->ba', l2_normalize(queries.astype(jnp.float32)),
                      l2_normalize(anchors), precision=lax.Precision.HIGHEST)
  return losses.global_mean(1.0 - cosine, weight, axis_name)


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


def _row_mask(batch: dict[str, jax.Array], n: int) -> jax.Array:
  """float32 [n]: 1 for annotated real rows ('mask' and 'labelled' both > 0 or absent)."""
  mask = jnp.ones((n,), jnp.float32)
  for name in ('mask', 'labelled'):
    if name in batch:
      mask = mask * (jnp.asarray(batch[name]) > 0).astype(jnp.float32)
  return mask


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
    state: this device's SAMLState, made by `init_state(..., config.saml.positives)`.
    queries: float [b, P] current encoder's L2-normalised projections, with gradient.
    keys: float [b, P] L2-normalised key-encoder projections (stop-gradient applied).
    batch: 'track_id' int [b], the label fields of config.targets (floats, class =
      value > config.label_threshold), optionally 'mask' float [b] (1 = real) and
      'labelled' float [b] (0 = unlabelled-stream row: not a query, not enqueued).
    config: the experiment config (config.saml.*, targets, num_classes,
      label_threshold).
    axis_name: the mapped device axis.

  Returns:
    (this device's loss = info_nce + anchor_weight * anchor, not multiplied by
    config.saml.weight, normalised over the global batch: its mean over devices is
    the global loss; the new state; metrics identical on every device: 'saml/loss',
    'saml/info_nce', 'saml/anchor' (global-batch values), 'saml/positive_fraction'
    and 'saml/queue_fill' (share of the queue filled after this step's enqueue)).
  """
  positives = config.saml.get('positives', 'joint')
  sets, groups = label_sets(len(config.targets), config.num_classes, positives)
  if state.anchors.shape[:2] != (sets, groups):
    raise ValueError(
        f'The SAML state holds anchors {state.anchors.shape[:2]} but '
        f'config.saml.positives={positives!r} needs {(sets, groups)}: build it with '
        f'saml.init_state(..., positives=config.saml.positives).')
  keys = jax.lax.stop_gradient(keys)
  classes = losses.class_labels(losses.targets(batch, config), config)
  labels = saml_labels(classes, config.num_classes, positives)
  tracks = batch['track_id'].astype(jnp.int32)
  mask = _row_mask(batch, tracks.shape[0])
  valid = mask > 0

  nce, positive_fraction = info_nce(queries, labels, tracks, state,
                                    config.saml.temperature, valid, axis_name)
  anchor = anchor_loss(queries, labels, state, valid, axis_name)
  loss = nce + config.saml.anchor_weight * anchor

  all_keys, all_labels, all_tracks, all_valid = (
      _gather(x, axis_name) for x in (keys, labels, tracks, mask))
  all_valid = all_valid > 0
  state = enqueue(state, all_keys, all_labels, all_tracks, all_valid)
  state = update_anchors(state, all_keys, all_labels, config.saml.anchor_momentum, all_valid)
  device_mean = lambda x: (lax.pmean(lax.stop_gradient(x), axis_name) if axis_name
                           else lax.stop_gradient(x))
  metrics = {'saml/loss': device_mean(loss), 'saml/info_nce': device_mean(nce),
             'saml/anchor': device_mean(anchor),
             'saml/positive_fraction': positive_fraction,
             'saml/queue_fill': state.queue_valid.astype(jnp.float32).mean()}
  return loss, state, metrics
