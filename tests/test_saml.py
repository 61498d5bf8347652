"""SAML: FIFO queue, anchors, InfoNCE against the queue (joint and per-target positives),
unlabelled rows, replicas in lockstep, global-batch normalisation."""

import functools

import jax
from jax.sharding import Mesh, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import pytest

from damer_jax import losses
from damer_jax import saml
from tests.conftest import tiny_config

AXIS = 'batch'


def _unit(x):
  x = np.asarray(x, np.float64)
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _queue(keys, labels, tracks, valid):
  """A per-target SAMLState whose queue holds exactly these entries (anchors unset)."""
  keys = np.asarray(keys, np.float32)
  labels = np.asarray(labels, np.int32)
  state = saml.init_state(len(keys), keys.shape[1], labels.shape[1], 2, 'per_target')
  return state.replace(queue_keys=jnp.asarray(keys), queue_labels=jnp.asarray(labels),
                       queue_tracks=jnp.asarray(tracks, jnp.int32),
                       queue_valid=jnp.asarray(valid, bool))


def _reference_info_nce(queries, labels, tracks, state, temperature):
  """Loop-by-loop numpy SupCon: candidates = valid entries of other tracks."""
  keys, q_labels = np.asarray(state.queue_keys, np.float64), np.asarray(state.queue_labels)
  q_tracks, q_valid = np.asarray(state.queue_tracks), np.asarray(state.queue_valid)
  per_pair = []
  for q, label, track in zip(np.asarray(queries, np.float64), labels, tracks):
    candidates = q_valid & (q_tracks != track)
    logits = keys @ q / temperature
    log_z = np.log(np.sum(np.exp(logits[candidates])))
    for t in range(len(label)):
      positives = candidates & (q_labels[:, t] == label[t])
      if positives.any():
        per_pair.append(-np.mean(logits[positives] - log_z))
  n_pairs = len(labels) * len(labels[0])
  return (np.mean(per_pair) if per_pair else 0.0), len(per_pair) / n_pairs


# --- FIFO queue -------------------------------------------------------------------------


def _reference_fifo(entries, pointer, rows, size):
  """Writes rows one by one into a Python list of `size` slots."""
  entries = list(entries)
  for row in rows:
    entries[pointer] = row
    pointer = (pointer + 1) % size
  return entries, pointer


def test_enqueue_is_fifo_wraps_around_and_skips_padding():
  size = 5
  state = saml.init_state(size, 2, 1, 2)
  enqueue = jax.jit(saml.enqueue)
  reference, pointer = [None] * size, 0
  batches = [  # (tracks, valid); key of a row = [track, -track], label = track % 2.
      ([10, 11, 12], [1, 1, 1]),
      ([13, 99, 14, 15], [1, 0, 1, 1]),  # Padding row 99 is not written.
      ([20, 21, 22, 23, 24, 25, 26], [1] * 7),  # N > K: only 22..26 survive.
      ([30, 31, 32], [0, 0, 0]),  # All padding: nothing changes.
      ([40, 98, 41, 42, 43, 44, 45], [1, 0, 1, 1, 1, 1, 1]),  # 6 valid > K.
  ]
  expected_tracks = [[10, 11, 12, -1, -1], [15, 11, 12, 13, 14], [24, 25, 26, 22, 23],
                     [24, 25, 26, 22, 23], [42, 43, 44, 45, 41]]
  expected_pointer = [3, 1, 3, 3, 4]
  for (tracks, valid), want_tracks, want_pointer in zip(batches, expected_tracks,
                                                        expected_pointer):
    tracks = np.asarray(tracks, np.int32)
    keys = np.stack([tracks, -tracks], -1).astype(np.float32)
    state = enqueue(state, keys, (tracks % 2)[:, None], tracks, np.asarray(valid, bool))
    reference, pointer = _reference_fifo(
        reference, pointer, [t for t, v in zip(tracks, valid) if v], size)

    np.testing.assert_array_equal(state.queue_tracks, want_tracks)
    assert [None if t == -1 else t for t in state.queue_tracks.tolist()] == reference
    assert int(state.pointer) == want_pointer == pointer
    np.testing.assert_array_equal(state.queue_valid, np.asarray(want_tracks) >= 0)
    filled = np.asarray(want_tracks) >= 0
    want_keys = np.stack([want_tracks, np.negative(want_tracks)], -1)
    np.testing.assert_array_equal(state.queue_keys[filled], want_keys[filled])
    np.testing.assert_array_equal(state.queue_labels[filled, 0],
                                  np.asarray(want_tracks)[filled] % 2)


def test_enqueue_without_valid_writes_every_row():
  state = saml.enqueue(saml.init_state(4, 2, 2, 2, 'per_target'), jnp.ones((3, 2)),
                       jnp.ones((3, 2), jnp.int32), jnp.arange(3))
  np.testing.assert_array_equal(state.queue_valid, [True, True, True, False])
  assert int(state.pointer) == 3


# --- InfoNCE ----------------------------------------------------------------------------


def _same_track_queue():
  """Query track 0, labels [1, 0]; queue has same-track copies of the query."""
  rng = np.random.default_rng(0)
  query = _unit(rng.standard_normal(4))
  others = _unit(rng.standard_normal((3, 4)))
  keys = np.stack([query, others[0], others[1], others[2], query, query])
  labels = [[1, 0], [1, 1], [0, 0], [1, 0], [1, 0], [1, 0]]
  tracks = [0, 1, 2, 3, 5, 0]
  valid = [1, 1, 1, 1, 0, 1]  # Entry 4 is an empty slot.
  return query, _queue(keys, labels, tracks, valid)


def test_info_nce_matches_hand_computation_without_same_track_entries():
  query, state = _same_track_queue()
  tau = 0.1
  loss, fraction = saml.info_nce(jnp.asarray(query[None], jnp.float32),
                                 jnp.asarray([[1, 0]]), jnp.asarray([0]), state, tau)
  # By hand: candidates are entries 1, 2, 3 (0 and 5 share the track, 4 is empty).
  logits = np.asarray(state.queue_keys, np.float64)[1:4] @ query / tau
  log_p = logits - np.log(np.sum(np.exp(logits)))  # log p of entries 1, 2, 3.
  valence = -np.mean([log_p[0], log_p[2]])  # Class 1: entries 1 and 3.
  arousal = -np.mean([log_p[1], log_p[2]])  # Class 0: entries 2 and 3.
  np.testing.assert_allclose(loss, (valence + arousal) / 2, rtol=1e-5)
  assert float(fraction) == 1.0


def test_same_track_entries_are_neither_positives_nor_in_the_denominator():
  query, state = _same_track_queue()
  args = (jnp.asarray(query[None], jnp.float32), jnp.asarray([[1, 0]]), jnp.asarray([0]))
  base, _ = saml.info_nce(*args, state, 0.1)
  rng = np.random.default_rng(1)
  for entry in (0, 5, 4):  # Same-track entries and the empty slot.
    moved = state.replace(queue_keys=state.queue_keys.at[entry].set(
        jnp.asarray(_unit(rng.standard_normal(4)), jnp.float32)))
    np.testing.assert_allclose(saml.info_nce(*args, moved, 0.1)[0], base, rtol=1e-6)
  # A different-track entry does matter (the check above is not vacuous).
  moved = state.replace(queue_keys=state.queue_keys.at[2].set(-state.queue_keys[2]))
  assert abs(float(saml.info_nce(*args, moved, 0.1)[0]) - float(base)) > 1e-3
  # Only same-track entries left: no positive, no loss.
  only_own = state.replace(queue_valid=jnp.asarray([1, 0, 0, 0, 0, 1], bool))
  loss, fraction = saml.info_nce(*args, only_own, 0.1)
  assert float(loss) == 0.0 and float(fraction) == 0.0


def test_info_nce_averages_over_pairs_with_positives_and_skips_padding():
  rng = np.random.default_rng(2)
  queue_keys = _unit(rng.standard_normal((8, 4)))
  labels = rng.integers(0, 2, (8, 2))
  labels[:, 1] = 0  # Nobody in the queue is high-arousal.
  state = _queue(queue_keys, labels, [1, 1, 2, 2, 3, 3, 4, 4], [1] * 7 + [0])
  queries = _unit(rng.standard_normal((3, 4)))
  q_labels = np.asarray([[1, 1], [0, 0], [1, 0]])  # Query 0 has no arousal positive.
  q_tracks = np.asarray([1, 3, 7])
  loss, fraction = saml.info_nce(jnp.asarray(queries, jnp.float32), jnp.asarray(q_labels),
                                 jnp.asarray(q_tracks), state, 0.2)
  want_loss, want_fraction = _reference_info_nce(queries, q_labels, q_tracks, state, 0.2)
  np.testing.assert_allclose(loss, want_loss, rtol=1e-5)
  assert float(fraction) == pytest.approx(want_fraction) == 5 / 6
  # A padding query (valid False) changes nothing, whatever its content.
  padded = saml.info_nce(
      jnp.asarray(np.concatenate([queries, queries[:1]]), jnp.float32),
      jnp.asarray(np.concatenate([q_labels, [[1, 0]]])), jnp.asarray([1, 3, 7, 2]), state,
      0.2, valid=jnp.asarray([True, True, True, False]))
  np.testing.assert_allclose(padded[0], loss, rtol=1e-6)
  assert float(padded[1]) == pytest.approx(5 / 6)


def test_info_nce_on_an_empty_queue_is_zero_with_a_finite_gradient():
  state = saml.init_state(6, 4, 2, 2, 'per_target')
  queries = jnp.asarray(_unit(np.random.default_rng(3).standard_normal((3, 4))), jnp.float32)

  def loss_fn(q):
    return saml.info_nce(q, jnp.zeros((3, 2), jnp.int32), jnp.arange(3), state, 0.1)[0]

  loss, grad = jax.value_and_grad(loss_fn)(queries)
  assert float(loss) == 0.0
  assert np.all(np.isfinite(grad)) and not np.any(grad)


# --- Anchors ----------------------------------------------------------------------------


def test_anchor_update_first_fill_then_ema_and_absent_classes_kept():
  m = 0.9
  state = saml.init_state(4, 3, 2, 2, 'per_target')
  keys1 = np.asarray([[1, 0, 0], [0, 1, 0], [0, 0, 1], [50, 50, 50]], np.float32)
  labels1 = np.asarray([[0, 0], [0, 0], [1, 0], [1, 1]])  # Last row is padding.
  state = saml.update_anchors(state, keys1, labels1, m, valid=np.asarray([1, 1, 1, 0], bool))
  np.testing.assert_array_equal(state.anchors_valid, [[True, True], [True, False]])
  np.testing.assert_allclose(state.anchors[0, 0], _unit([0.5, 0.5, 0]), rtol=1e-6)
  np.testing.assert_allclose(state.anchors[0, 1], [0, 0, 1], rtol=1e-6)
  np.testing.assert_allclose(state.anchors[1, 0], _unit([1, 1, 1]), rtol=1e-6)
  np.testing.assert_array_equal(state.anchors[1, 1], 0)  # Never seen.

  before = np.asarray(state.anchors)
  keys2 = np.asarray([[0, 2, 0], [0, 0, 4]], np.float32)
  labels2 = np.asarray([[1, 1], [1, 1]])  # Only class 1 of both targets.
  state = saml.update_anchors(state, keys2, labels2, m)
  mean = np.asarray([0, 1, 2])
  np.testing.assert_allclose(state.anchors[0, 1], _unit(m * before[0, 1] + (1 - m) * mean),
                             rtol=1e-6)
  np.testing.assert_allclose(state.anchors[1, 1], _unit(mean), rtol=1e-6)  # First fill.
  np.testing.assert_array_equal(state.anchors[0, 0], before[0, 0])  # Absent: unchanged.
  np.testing.assert_array_equal(state.anchors[1, 0], before[1, 0])
  assert bool(state.anchors_valid.all())


def test_anchor_loss_is_zero_at_the_anchor_and_skips_unset_anchors():
  rng = np.random.default_rng(4)
  keys = jnp.asarray(_unit(rng.standard_normal((2, 5))), jnp.float32)
  labels = jnp.asarray([[0, 1], [1, 0]])  # Each key is the only member of its classes.
  state = saml.update_anchors(saml.init_state(4, 5, 2, 2, 'per_target'), keys, labels, 0.9)
  np.testing.assert_allclose(saml.anchor_loss(keys, labels, state), 0.0, atol=1e-6)
  # Orthogonal to its anchors: 1 - cos = 1.
  e0, e1 = np.eye(5, dtype=np.float32)[:2]
  state = state.replace(anchors=jnp.broadcast_to(e0, (2, 2, 5)))
  assert float(saml.anchor_loss(e1[None], jnp.asarray([[0, 0]]), state)) == pytest.approx(1)
  # Unset anchors and padding rows do not count; nothing left -> 0.
  partial = state.replace(anchors_valid=jnp.asarray([[True, False], [False, False]]))
  assert float(saml.anchor_loss(
      jnp.stack([e0, e1]), jnp.asarray([[0, 0], [1, 1]]), partial)) == pytest.approx(0)
  unset = saml.init_state(4, 5, 2, 2, 'per_target')
  assert float(saml.anchor_loss(keys, labels, unset)) == 0.0
  assert float(saml.anchor_loss(keys, labels, state, valid=jnp.zeros(2, bool))) == 0.0


def test_ema_params_blends_every_leaf():
  ema = {'a': jnp.zeros(3), 'b': {'c': jnp.full((2,), 10.0)}}
  params = {'a': jnp.ones(3), 'b': {'c': jnp.zeros(2)}}
  out = saml.ema_params(ema, params, 0.9)
  np.testing.assert_allclose(out['a'], 0.1, rtol=1e-6)
  np.testing.assert_allclose(out['b']['c'], 9.0, rtol=1e-6)


# --- saml_step under data parallelism -----------------------------------------------------


def _config():
  return tiny_config(saml__enabled=True, saml__queue_size=16, saml__projection_dim=8)


def _device_batches(step, num_devices=2, per_device=3, dim=8):
  """[devices, b, ...] inputs; every device gets different tracks, keys and labels."""
  rng = np.random.default_rng(100 + step)
  n = num_devices * per_device
  queries = _unit(rng.standard_normal((n, dim))).astype(np.float32)
  keys = _unit(queries + 0.1 * rng.standard_normal((n, dim))).astype(np.float32)
  device = np.repeat(np.arange(num_devices), per_device)
  batch = {
      'track_id': (1000 * (device + 1) + rng.integers(0, 4, n)).astype(np.int32),
      'valence': rng.choice([-0.5, 0.5], n).astype(np.float32),
      'arousal': rng.choice([-0.5, 0.5], n).astype(np.float32),
      'mask': np.ones(n, np.float32),
  }
  if step % 2:
    batch['mask'][-1] = 0.0  # Padding on the last device every other step.
  if step % 3 == 1:
    batch['labelled'] = np.ones(n, np.float32)
    batch['labelled'][[0, per_device + 1]] = 0.0  # Unlabelled-stream rows on both.
  shape = lambda x: x.reshape((num_devices, per_device) + x.shape[1:])
  return shape(queries), shape(keys), jax.tree.map(shape, batch)


def _replicate(state, num_devices=2):
  return jax.tree.map(lambda x: jnp.stack([x] * num_devices), state)


def test_pmapped_saml_step_keeps_replicas_identical_and_gathers_both_devices():
  config = _config()
  state = saml.init_state(16, 8, 2, 2)
  step = jax.pmap(functools.partial(saml.saml_step, config=config, axis_name=AXIS),
                  axis_name=AXIS)
  single = jax.jit(functools.partial(saml.saml_step, config=config, axis_name=None))
  replicated, reference = _replicate(state), state
  for i in range(6):  # 6 x up to 6 rows > K = 16: the queue wraps around.
    queries, keys, batch = _device_batches(i)
    loss, replicated, metrics = step(replicated, queries, keys, batch)
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    _, reference, _ = single(reference, flat(queries), flat(keys), jax.tree.map(flat, batch))

    for field, leaf in vars(replicated).items():
      np.testing.assert_array_equal(leaf[0], leaf[1], err_msg=field)
      # Same as one device enqueueing the whole global batch (device 0 rows first).
      np.testing.assert_array_equal(leaf[0], getattr(reference, field), err_msg=field)
    assert np.all(np.isfinite(loss))
    if i == 0:  # The loss sees the queue before this step's enqueue: empty.
      np.testing.assert_array_equal(metrics['saml/info_nce'], 0.0)
  tracks = np.asarray(replicated.queue_tracks[0])
  assert bool(replicated.queue_valid[0].all())
  assert np.any((tracks >= 1000) & (tracks < 2000)) and np.any(tracks >= 2000)
  assert bool(replicated.anchors_valid[0].all())
  assert np.all(metrics['saml/positive_fraction'] > 0)
  assert not np.allclose(loss[0], loss[1])  # Different data, different local losses.
  for name, value in metrics.items():  # Metrics are global: the same on every device.
    np.testing.assert_allclose(value[0], value[1], rtol=1e-6, err_msg=name)
  assert set(metrics) == {'saml/loss', 'saml/info_nce', 'saml/anchor',
                          'saml/positive_fraction', 'saml/queue_fill'}
  np.testing.assert_array_equal(metrics['saml/queue_fill'], 1.0)


def test_shard_mapped_saml_step_matches_pmap():
  config = _config()
  mesh = Mesh(np.asarray(jax.devices()[:2]), (AXIS,))

  def per_device(state, queries, keys, batch):
    local = lambda x: x[0]
    loss, state, _ = saml.saml_step(state, local(queries), local(keys),
                                    jax.tree.map(local, batch), config, AXIS)
    return jax.lax.pmean(loss, AXIS), state

  mapped = jax.jit(jax.shard_map(per_device, mesh=mesh,
                                 in_specs=(P(), P(AXIS), P(AXIS), P(AXIS)),
                                 out_specs=(P(), P())))
  pmapped = jax.pmap(functools.partial(saml.saml_step, config=config, axis_name=AXIS),
                     axis_name=AXIS)
  state = saml.init_state(16, 8, 2, 2)
  replicated = _replicate(state)
  for i in range(4):
    inputs = _device_batches(i)
    loss, state = mapped(state, *inputs)
    p_loss, replicated, _ = pmapped(replicated, *inputs)
    np.testing.assert_allclose(loss, np.mean(p_loss), rtol=1e-5)
  for field, leaf in vars(state).items():
    np.testing.assert_array_equal(leaf, getattr(replicated, field)[0], err_msg=field)


def test_saml_step_gradient_wrt_queries_is_finite_and_nonzero_with_positives():
  config = _config()

  def loss_fn(queries, state, keys, batch):
    loss, _, _ = saml.saml_step(state, queries, keys, batch, config, AXIS)
    return loss

  grad_step = jax.pmap(jax.value_and_grad(loss_fn), axis_name=AXIS)
  update = jax.pmap(functools.partial(saml.saml_step, config=config, axis_name=AXIS),
                    axis_name=AXIS)
  state = _replicate(saml.init_state(16, 8, 2, 2))
  queries, keys, batch = _device_batches(0)
  loss, grad = grad_step(queries, state, keys, batch)  # Empty queue: 0, finite.
  assert np.all(np.asarray(loss) == 0) and np.all(np.isfinite(grad))
  _, state, _ = update(state, queries, keys, batch)
  _, state, _ = update(state, *_device_batches(1))
  queries, keys, batch = _device_batches(2)
  loss, grad = grad_step(queries, state, keys, batch)
  assert np.all(np.isfinite(loss)) and np.all(np.asarray(loss) > 0)
  assert np.all(np.isfinite(grad))
  assert np.all(np.abs(np.asarray(grad)).reshape(2, -1).max(-1) > 1e-4)


# --- Joint positives, unlabelled rows, global normalisation --------------------------------


def test_joint_labels_are_the_quadrant_index():
  classes = np.asarray([[0, 0], [1, 0], [0, 1], [1, 1]])  # (valence, arousal) classes.
  np.testing.assert_array_equal(saml.saml_labels(classes, 2, 'joint'), [[0], [1], [2], [3]])
  np.testing.assert_array_equal(saml.saml_labels(classes, 2, 'per_target'), classes)
  np.testing.assert_array_equal(saml.saml_labels(np.asarray([[2, 1]]), 3, 'joint'), [[5]])
  assert saml.label_sets(2, 2, 'joint') == (1, 4)
  assert saml.label_sets(2, 2, 'per_target') == (2, 2)
  state = saml.init_state(8, 4, 2, 2)  # Default: joint.
  assert state.queue_labels.shape == (8, 1) and state.anchors.shape == (1, 4, 4)
  with pytest.raises(ValueError, match='positives'):
    saml.init_state(8, 4, 2, 2, 'quadrant')


def _step_config(positives, **overrides):
  return tiny_config(saml__positives=positives, saml__queue_size=8,
                     saml__projection_dim=4, **overrides)


def _memory(positives, keys, tracks, valence, arousal):
  """A state whose queue (and anchors) hold these rows, written by saml_step."""
  config = _step_config(positives)
  batch = {'track_id': np.asarray(tracks, np.int32),
           'valence': np.asarray(valence, np.float32),
           'arousal': np.asarray(arousal, np.float32)}
  keys = jnp.asarray(keys, jnp.float32)
  state = saml.init_state(8, 4, 2, 2, positives)
  return saml.saml_step(state, keys, keys, batch, config, None)[1]


def _quadrant_queue(query):
  """Query: track 0, high valence and high arousal. Queue entries, in order:

  0 track 0 (+, +): same quadrant, same track (a copy of the query: would dominate);
  1 track 1 (+, +) and 5 track 5 (+, +): same quadrant, other tracks;
  2 track 2 (+, -): same valence, other arousal; 3 track 3 (-, +): other valence, same
  arousal; 4 track 4 (-, -): the opposite quadrant.
  """
  rng = np.random.default_rng(7)
  keys = np.concatenate([query[None], _unit(rng.standard_normal((5, 4)))])
  tracks = [0, 1, 2, 3, 4, 5]
  valence = [0.5, 0.5, 0.5, -0.5, -0.5, 0.5]
  arousal = [0.5, 0.5, -0.5, 0.5, -0.5, 0.5]
  return keys, tracks, valence, arousal


def _hand_loss(keys, query, candidates, positive_sets, tau):
  """Mean over label sets of -mean log softmax over `candidates` at the positives."""
  logits = {i: float(keys[i] @ query) / tau for i in candidates}
  log_z = np.log(np.sum(np.exp(list(logits.values()))))
  return np.mean([-np.mean([logits[i] - log_z for i in positives])
                  for positives in positive_sets])


@pytest.mark.parametrize('positives', ['joint', 'per_target'])
def test_positives_follow_the_label_mode_and_never_the_same_track(positives):
  query = _unit(np.random.default_rng(8).standard_normal(4))
  keys, tracks, valence, arousal = _quadrant_queue(query)
  state = _memory(positives, keys, tracks, valence, arousal)
  config = _step_config(positives)
  tau = config.saml.temperature
  q = jnp.asarray(query[None], jnp.float32)
  batch = {'track_id': np.asarray([0], np.int32), 'valence': np.asarray([0.5], np.float32),
           'arousal': np.asarray([0.5], np.float32)}
  _, _, metrics = saml.saml_step(state, q, q, batch, config, None)

  candidates = [1, 2, 3, 4, 5]  # Entry 0 shares the query's track: not even a negative.
  if positives == 'joint':  # Only the same quadrant from other tracks.
    want = _hand_loss(keys, query, candidates, [[1, 5]], tau)
  else:  # Valence: same valence class; arousal: same arousal class; separate softmaxes.
    want = _hand_loss(keys, query, candidates, [[1, 2, 5], [1, 3, 5]], tau)
  np.testing.assert_allclose(metrics['saml/info_nce'], want, rtol=1e-5)
  assert float(metrics['saml/positive_fraction']) == 1.0
  if positives == 'joint':  # The modes differ on this queue (the check is not vacuous).
    other = _hand_loss(keys, query, candidates, [[1, 2, 5], [1, 3, 5]], tau)
    assert abs(want - other) > 0.1

  # The opposite quadrant's only entry is the query's own track: no positive, no loss.
  batch = {'track_id': np.asarray([4], np.int32), 'valence': np.asarray([-0.5], np.float32),
           'arousal': np.asarray([-0.5], np.float32)}
  _, _, metrics = saml.saml_step(state, q, q, batch, config, None)
  if positives == 'joint':
    assert float(metrics['saml/info_nce']) == 0.0
    assert float(metrics['saml/positive_fraction']) == 0.0
  else:  # Per target, (-, +) and (+, -) of other tracks are positives.
    assert float(metrics['saml/positive_fraction']) == 1.0


def test_joint_anchors_are_per_quadrant():
  keys = np.eye(4, dtype=np.float32)
  state = _memory('joint', keys[:3], [1, 2, 3], [0.5, -0.5, 0.5], [-0.5, 0.5, -0.5])
  # Rows 0 and 2 are quadrant (+, -) = joint class 1; row 1 is (-, +) = class 2.
  np.testing.assert_array_equal(state.anchors_valid, [[False, True, True, False]])
  np.testing.assert_allclose(state.anchors[0, 1], _unit([1, 0, 1, 0]), rtol=1e-6)
  np.testing.assert_allclose(state.anchors[0, 2], [0, 1, 0, 0], rtol=1e-6)
  np.testing.assert_array_equal(state.queue_labels[:3, 0], [1, 2, 1])


def test_saml_step_rejects_a_state_of_the_other_mode():
  config = _step_config('per_target')
  q = jnp.asarray(_unit(np.ones((1, 4))), jnp.float32)
  batch = {'track_id': np.zeros(1, np.int32), 'valence': np.zeros(1, np.float32),
           'arousal': np.zeros(1, np.float32)}
  with pytest.raises(ValueError, match='positives'):
    saml.saml_step(saml.init_state(8, 4, 2, 2, 'joint'), q, q, batch, config, None)


def test_unlabelled_rows_are_neither_queries_nor_enqueued_nor_anchors():
  config = _step_config('joint')
  rng = np.random.default_rng(9)
  memory_keys = _unit(rng.standard_normal((4, 4)))
  state = _memory('joint', memory_keys, [1, 2, 3, 4], [0.5, -0.5, 0.5, -0.5],
                  [0.5, -0.5, 0.5, -0.5])
  queries = _unit(rng.standard_normal((4, 4))).astype(np.float32)
  batch = {'track_id': np.asarray([10, 11, 12, 13], np.int32),
           'valence': np.asarray([0.5, 0.5, -0.5, -0.5], np.float32),
           'arousal': np.asarray([0.5, -0.5, -0.5, 0.5], np.float32),
           'labelled': np.asarray([1, 0, 1, 0], np.float32)}
  loss, new, metrics = saml.saml_step(state, queries, queries, batch, config, None)

  # Enqueued: only rows 0 and 2, after the 4 memory rows.
  np.testing.assert_array_equal(new.queue_tracks, [1, 2, 3, 4, 10, 12, -1, -1])
  assert int(new.pointer) == 6
  np.testing.assert_allclose(new.queue_keys[4:6], queries[[0, 2]], rtol=1e-6)
  # Anchors: the unlabelled rows' quadrants (+, -) and (-, +) stay unset.
  np.testing.assert_array_equal(new.anchors_valid, [[True, False, False, True]])
  # The state and loss are those of the labelled rows alone, whatever the others hold.
  labelled = {k: v[[0, 2]] for k, v in batch.items() if k != 'labelled'}
  alone, alone_state, alone_metrics = saml.saml_step(
      state, queries[[0, 2]], queries[[0, 2]], labelled, config, None)
  for field, leaf in vars(new).items():
    np.testing.assert_array_equal(leaf, getattr(alone_state, field), err_msg=field)
  np.testing.assert_allclose(loss, alone, rtol=1e-6)
  moved = queries.copy()
  moved[[1, 3]] = -moved[[1, 3]]
  np.testing.assert_allclose(saml.saml_step(state, moved, moved, batch, config, None)[0],
                             loss, rtol=1e-6)
  assert float(loss) > 0 and float(metrics['saml/positive_fraction']) == 1.0
  np.testing.assert_allclose(metrics['saml/anchor'], alone_metrics['saml/anchor'], rtol=1e-6)


def _gradient_setup():
  """A filled state, projection weights, and a global batch of 8 rows for 1 or 2 devices.

  The rows that count are spread unevenly over the two halves (device 0: 3 labelled rows
  with positives; device 1: 1), so a per-device mean would weight them differently.
  """
  rng = np.random.default_rng(10)
  state = _memory('joint', _unit(rng.standard_normal((6, 4))), [1, 2, 3, 4, 5, 6],
                  [0.5, -0.5, 0.5, -0.5, 0.5, -0.5], [0.5, 0.5, -0.5, -0.5, 0.5, 0.5])
  weights = jnp.asarray(rng.standard_normal((6, 4)), jnp.float32)
  inputs = rng.standard_normal((8, 6)).astype(np.float32)
  batch = {'track_id': np.asarray([10, 11, 12, 13, 14, 15, 16, 1], np.int32),
           'valence': rng.choice([-0.5, 0.5], 8).astype(np.float32),
           'arousal': rng.choice([-0.5, 0.5], 8).astype(np.float32),
           'labelled': np.asarray([1, 1, 1, 0, 1, 0, 0, 1], np.float32)}
  return state, weights, inputs, batch


def _device_gradients(num_devices, global_norm=True):
  """pmean over `num_devices` of the per-device gradients of SAML wrt projection weights."""
  config = _step_config('joint')
  state, weights, inputs, batch = _gradient_setup()

  def loss_fn(w, state, x, batch):
    q = saml.l2_normalize(x @ w)
    if global_norm:
      loss, _, metrics = saml.saml_step(state, q, q, batch, config, AXIS)
      return loss, metrics
    # The old normalisation: each device averages over its own rows.
    labels = saml.saml_labels(losses.class_labels(losses.targets(batch, config), config),
                              2, 'joint')
    valid = batch['labelled'] > 0
    nce, _ = saml.info_nce(q, labels, batch['track_id'], state, config.saml.temperature,
                           valid)
    return nce + config.saml.anchor_weight * saml.anchor_loss(q, labels, state, valid), {}

  def per_device(w, state, x, batch):
    grad, metrics = jax.grad(loss_fn, has_aux=True)(w, state, x, batch)
    return jax.lax.pmean(grad, AXIS), metrics

  split = lambda x: x.reshape((num_devices, -1) + x.shape[1:])
  stack = lambda x: jnp.stack([x] * num_devices)
  grad, metrics = jax.pmap(per_device, axis_name=AXIS, devices=jax.devices()[:num_devices])(
      stack(weights), jax.tree.map(stack, state), split(inputs), jax.tree.map(split, batch))
  return np.asarray(grad[0]), jax.tree.map(lambda m: np.asarray(m[0]), metrics)


def test_gradient_and_metrics_equal_on_one_and_two_devices():
  one, one_metrics = _device_gradients(1)
  two, two_metrics = _device_gradients(2)
  assert np.abs(one).max() > 1e-3
  np.testing.assert_allclose(two, one, rtol=1e-5, atol=1e-7)
  for name in one_metrics:
    np.testing.assert_allclose(two_metrics[name], one_metrics[name], rtol=1e-5, err_msg=name)
  assert float(one_metrics['saml/anchor']) > 0 and float(one_metrics['saml/info_nce']) > 0
  # Per-device means (the old normalisation) do depend on the split: not vacuous.
  local_one, _ = _device_gradients(1, global_norm=False)
  local_two, _ = _device_gradients(2, global_norm=False)
  np.testing.assert_allclose(local_one, one, rtol=1e-5, atol=1e-7)
  assert np.abs(local_two - one).max() > 1e-2 * np.abs(one).max()
