"""Progressive Confidence Labelling: schedules, reliability, selection, the EMA table."""

import functools
import math

from flax import jax_utils
import jax
from jax.sharding import Mesh, PartitionSpec as P
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from damer_jax import pcl
from damer_jax import losses
from tests.conftest import rerun_with_production_compile
from tests.conftest import tiny_config

AXIS = 'batch'


def _distributions(rng, shape):
  x = rng.random(shape) + 1e-3
  return (x / x.sum(-1, keepdims=True)).astype(np.float32)


def _pcl_config(**overrides):
  base = dict(num_train_steps=100, pcl__warmup_steps=10, pcl__tau_start=1.0,
              pcl__tau_end=0.5, pcl__coverage_start=0.3, pcl__coverage_end=0.9)
  base.update(overrides)
  return tiny_config(**base)


# --- JS divergence -----------------------------------------------------------------


@pytest.mark.parametrize('shape', [(2,), (5, 3), (4, 2, 7)])
def test_js_divergence_matches_scipy(shape):
  rng = np.random.default_rng(0)
  p, q = _distributions(rng, shape), _distributions(rng, shape)
  expected = distance.jensenshannon(p.astype(np.float64), q.astype(np.float64),
                                    axis=-1, base=None) ** 2
  got = pcl.js_divergence(p, q)
  assert got.shape == shape[:-1]
  np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-5)


def test_js_divergence_along_another_axis():
  rng = np.random.default_rng(1)
  p, q = _distributions(rng, (3, 4)).T, _distributions(rng, (3, 4)).T
  expected = distance.jensenshannon(p, q, axis=0, base=None) ** 2
  np.testing.assert_allclose(pcl.js_divergence(p, q, axis=0), expected, atol=1e-6)


def test_js_divergence_extremes():
  p = _distributions(np.random.default_rng(2), (6, 3))
  np.testing.assert_allclose(pcl.js_divergence(p, p), 0.0, atol=1e-7)
  disjoint = pcl.js_divergence(jnp.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]]),
                               jnp.array([[0.0, 0.3, 0.7], [0.0, 0.0, 1.0]]))
  np.testing.assert_allclose(disjoint, math.log(2.0), rtol=1e-6)
  js_to_b = lambda x: pcl.js_divergence(x, jnp.array([0.0, 1.0]))
  grad = jax.grad(js_to_b)(jnp.array([1.0, 0.0]))  # Zeros in both: still finite.
  assert np.all(np.isfinite(grad))


# --- Schedules ---------------------------------------------------------------------


@pytest.mark.parametrize('fn,start,end', [(pcl.temperature, 1.0, 0.5),
                                          (pcl.coverage, 0.3, 0.9)])
@pytest.mark.parametrize('shape', ['linear', 'cosine'])
def test_schedule_goes_from_start_after_warmup_to_end(fn, start, end, shape):
  config = _pcl_config(pcl__tau_schedule=shape)
  value = lambda step: float(fn(step, config.pcl, config.num_train_steps))
  assert value(0) == pytest.approx(start)
  assert value(10) == pytest.approx(start)
  assert value(100) == pytest.approx(end)
  assert value(1000) == pytest.approx(end)
  assert value(55) == pytest.approx(0.5 * (start + end))  # Midpoint of both shapes.
  quarter = value(10 + 90 // 4 + 0.5)
  linear_quarter = start + 0.25 * (end - start)
  cosine_quarter = start + 0.5 * (1 - math.cos(math.pi / 4)) * (end - start)
  assert quarter == pytest.approx(linear_quarter if shape == 'linear' else cosine_quarter)


def test_constant_schedule_and_traced_step():
  config = _pcl_config(pcl__tau_schedule='constant')
  for step in (0, 10, 55, 100):
    assert float(pcl.temperature(step, config.pcl, 100)) == pytest.approx(1.0)
    assert float(pcl.coverage(step, config.pcl, 100)) == pytest.approx(0.3)
  config = _pcl_config(pcl__tau_schedule='linear')
  jitted = jax.jit(lambda s: pcl.temperature(s, config.pcl, config.num_train_steps))
  assert float(jitted(jnp.int32(55))) == pytest.approx(0.75)


def test_unknown_schedule_fails_clearly():
  config = _pcl_config(pcl__tau_schedule='exponential')
  with pytest.raises(ValueError, match='tau_schedule'):
    pcl.temperature(0, config.pcl, 100)


# --- Reliability and pseudo targets -------------------------------------------------


def test_reliability_is_one_for_agreeing_confident_views_and_lower_otherwise():
  one_hot = jax.nn.one_hot(jnp.array([[0, 1], [1, 1], [0, 0]]), 2)
  np.testing.assert_allclose(pcl.reliability(one_hot, one_hot, one_hot, one_hot), 1.0)
  soft = jnp.full_like(one_hot, 0.5)
  flipped = 1.0 - one_hot
  views_disagree = pcl.reliability(one_hot, one_hot, flipped, one_hot)
  np.testing.assert_allclose(views_disagree, 0.0, atol=1e-6)
  partly = pcl.reliability(one_hot, one_hot, 0.7 * one_hot + 0.3 * flipped, one_hot)
  unstable = pcl.reliability(one_hot, one_hot, one_hot, 0.7 * one_hot + 0.3 * flipped)
  unsure = pcl.reliability(0.8 * one_hot + 0.2 * flipped, one_hot, one_hot, one_hot)
  for r in (partly, unstable, unsure):
    assert r.shape == (3, 2)
    assert np.all((np.asarray(r) > 0) & (np.asarray(r) < 1))
  # Confidence 0.8, consistent views, stability 1 - JS(ema, p) / ln 2.
  stability = 1 - pcl.js_divergence(one_hot, 0.8 * one_hot + 0.2 * flipped) / math.log(2)
  np.testing.assert_allclose(unsure, 0.8 * stability, rtol=1e-6)
  np.testing.assert_allclose(pcl.reliability(soft, soft, soft, soft), 0.5, rtol=1e-6)


def test_pseudo_targets_sharpen_sum_to_one_and_mix_the_truth():
  p_ema = _distributions(np.random.default_rng(3), (4, 2, 2))
  labels = jnp.array([[0, 1], [1, 1], [0, 0], [1, 0]])
  plain = pcl.pseudo_targets(p_ema, labels, 1.0, 0.0, 2)
  np.testing.assert_allclose(plain, p_ema, atol=1e-6)
  sharp = pcl.pseudo_targets(p_ema, labels, 0.5, 0.0, 2)
  np.testing.assert_allclose(sharp.sum(-1), 1.0, atol=1e-6)
  assert np.all(np.asarray(sharp.max(-1)) > np.asarray(p_ema.max(-1)))
  squared = p_ema ** 2  # tau = 0.5: p^2, renormalised.
  np.testing.assert_allclose(sharp, squared / squared.sum(-1, keepdims=True), atol=1e-6)
  truth = pcl.pseudo_targets(p_ema, labels, 0.5, 1.0, 2)
  np.testing.assert_array_equal(truth, jax.nn.one_hot(labels, 2))
  mixed = pcl.pseudo_targets(p_ema, labels, 0.5, 0.3, 2)
  expected = 0.3 * jax.nn.one_hot(labels, 2) + 0.7 * sharp
  np.testing.assert_allclose(mixed, expected, atol=1e-6)
  np.testing.assert_allclose(mixed.sum(-1), 1.0, atol=1e-6)


def test_pseudo_targets_take_a_mix_per_pair():
  p_ema = _distributions(np.random.default_rng(11), (3, 2, 2))
  labels = jnp.array([[0, 1], [1, 1], [0, 0]])
  mix = jnp.array([[0.0, 1.0], [0.25, 0.5], [1.0, 0.0]])
  got = pcl.pseudo_targets(p_ema, labels, 0.5, mix, 2)
  for i in range(3):
    for t in range(2):
      expected = pcl.pseudo_targets(p_ema[i:i + 1, t:t + 1], labels[i:i + 1, t:t + 1],
                                    0.5, float(mix[i, t]), 2)
      np.testing.assert_allclose(got[i, t], expected[0, 0], atol=1e-7)


# --- Annotation trust and target modes ----------------------------------------------


def test_annotation_trust_is_high_for_low_std_far_from_the_threshold():
  values = jnp.array([[0.8, 0.05], [0.8, -0.6], [0.3, 0.0], [0.5, 0.5]])
  stds = jnp.array([[0.1, 0.5], [0.9, -1.0], [0.0, 0.0], [0.1, -1.0]])
  labelled = jnp.array([True, True, True, False])
  trust = np.asarray(pcl.annotation_trust(values, stds, labelled, 0.0, 10, 0.4))
  z = lambda v, s: abs(v) / (s / math.sqrt(10))
  # 2 P(annotated side right) - 1, P from the mean of 10 ratings.
  assert trust[0, 0] == pytest.approx(2 * stats.norm.cdf(z(0.8, 0.1)) - 1, abs=1e-6)
  assert trust[0, 0] > 0.999  # Low std, far from the threshold.
  assert trust[0, 1] == pytest.approx(2 * stats.norm.cdf(z(0.05, 0.5)) - 1, abs=1e-6)
  assert trust[0, 1] < 0.3  # Near the threshold, raters spread: doubted.
  assert trust[1, 0] == pytest.approx(2 * stats.norm.cdf(z(0.8, 0.9)) - 1, abs=1e-6)
  assert trust[0, 1] < trust[1, 0] < trust[0, 0]  # Farther: higher; wider: lower.
  assert trust[1, 1] == pytest.approx(0.4)  # Unknown std: config.pcl.label_trust.
  assert trust[2, 0] == 1.0 and trust[2, 1] == 0.0  # std 0: sure, unless on threshold.
  np.testing.assert_array_equal(trust[3], 0.0)  # Unlabelled row: no trust.
  assert trust.dtype == np.float32
  # A higher assumed rater count narrows the mean's error: more trust.
  more = pcl.annotation_trust(values, stds, labelled, 0.0, 40, 0.4)
  assert float(more[0, 1]) > trust[0, 1]


def test_annotation_trust_uses_the_label_threshold():
  values, stds = jnp.array([[0.55, 0.5]]), jnp.array([[0.2, 0.2]])
  trust = pcl.annotation_trust(values, stds, jnp.array([True]), 0.5, 4, 0.4)
  expected = 2 * stats.norm.cdf(0.05 / 0.1) - 1
  np.testing.assert_allclose(trust, [[expected, 0.0]], atol=1e-6)


def _doubted_ema():
  """EMA rows [4, 2, 2] that say class 1 of valence with 0.98, agree on arousal."""
  valence = np.array([[0.02, 0.98]] * 4, np.float32)
  arousal = np.array([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.9, 0.1]], np.float32)
  return jnp.asarray(np.stack([valence, arousal], axis=1))


def test_pseudo_mode_targets_overrule_only_doubted_annotations():
  config = _pcl_config(pcl__target_mode='pseudo')
  # Valence annotations: class 0 doubted, class 0 trusted, class 1 (agrees), class 0
  # with unknown std (label_trust 0.4); arousal annotations agree with the EMA.
  values = jnp.array([[-0.05, -0.5], [-0.8, 0.5], [0.7, -0.5], [-0.05, -0.5]])
  stds = jnp.array([[0.5, 0.1], [0.1, 0.1], [0.2, 0.1], [-1.0, 0.1]])
  labelled = jnp.ones((4,), bool)
  targets, contradicts = pcl.mode_targets(_doubted_ema(), values, stds, labelled, 1.0,
                                          config)
  np.testing.assert_allclose(targets.sum(-1), 1.0, atol=1e-6)
  np.testing.assert_array_equal(targets.argmax(-1)[:, 0], [1, 0, 1, 1])
  np.testing.assert_array_equal(contradicts, [[True, False], [False, False],
                                              [False, False], [True, False]])
  trust = pcl.annotation_trust(values, stds, labelled, 0.0, 10, 0.4)
  np.testing.assert_allclose(targets[0, 0], float(trust[0, 0]) * np.array([1, 0]) +
                             (1 - float(trust[0, 0])) * np.array([0.02, 0.98]), atol=1e-6)
  # label_trust 0.6 > 0.5: where the std is unknown, the annotation always wins.
  config.pcl.label_trust = 0.6
  _, contradicts = pcl.mode_targets(_doubted_ema(), values, stds, labelled, 1.0, config)
  assert not contradicts[3, 0] and contradicts[0, 0]
  # hard_targets: the one-hot of the same argmax.
  config.pcl.hard_targets = True
  hard, _ = pcl.mode_targets(_doubted_ema(), values, stds, labelled, 1.0, config)
  np.testing.assert_array_equal(hard, jax.nn.one_hot(hard.argmax(-1), 2))
  np.testing.assert_array_equal(hard[0, 0], [0.0, 1.0])


def test_soft_mode_targets_are_todays_and_never_contradict():
  config = _pcl_config(pcl__target_mode='soft')
  values = jnp.array([[-0.05, -0.5], [-0.8, 0.5], [0.7, -0.5], [-0.05, -0.5]])
  stds = jnp.full((4, 2), 0.5)
  p_ema = _doubted_ema()
  labelled = jnp.ones((4,), bool)
  targets, contradicts = pcl.mode_targets(p_ema, values, stds, labelled, 0.5, config)
  labels = losses.class_labels(values, config)
  np.testing.assert_array_equal(targets, pcl.pseudo_targets(p_ema, labels, 0.5, 0.5, 2))
  np.testing.assert_array_equal(targets.argmax(-1), labels)  # The annotation wins.
  assert not contradicts.any()


@pytest.mark.parametrize('mode', ['soft', 'pseudo'])
def test_unlabelled_rows_get_a_pure_pseudo_target(mode):
  config = _pcl_config(pcl__target_mode=mode)
  p_ema = jnp.asarray(_distributions(np.random.default_rng(12), (3, 2, 2)))
  values, stds = jnp.zeros((3, 2)), jnp.full((3, 2), 0.1)  # 0.0: unlabelled rows.
  labelled = jnp.array([True, False, False])
  targets, contradicts = pcl.mode_targets(p_ema, values, stds, labelled, 0.5, config)
  sharpened = pcl.pseudo_targets(p_ema, jnp.zeros((3, 2), int), 0.5, 0.0, 2)
  np.testing.assert_allclose(targets[1:], sharpened[1:], atol=1e-7)
  assert not contradicts[1:].any()  # Nothing to overrule on an unlabelled row.


# --- Selection ---------------------------------------------------------------------


def _column(values):
  return jnp.asarray(values, jnp.float32)[:, None]


def test_select_respects_floor_coverage_and_eligibility():
  rel = _column([0.9, 0.1, 0.8, 0.7, 0.95, 0.6, 0.3, 0.15])
  classes = jnp.zeros((8, 1), jnp.int32)
  eligible = jnp.ones((8, 1), bool).at[4, 0].set(False)  # The most reliable is ineligible.
  w = pcl.select(rel, classes, eligible, 0.5, 0.2, False, 2)  # Budget round(4) = 4.
  np.testing.assert_allclose(w[:, 0], [0.9, 0, 0.8, 0.7, 0, 0.6, 0, 0])
  w = pcl.select(rel, classes, eligible, 1.0, 0.2, False, 2)  # Budget 8; floor binds.
  np.testing.assert_allclose(w[:, 0], [0.9, 0, 0.8, 0.7, 0, 0.6, 0.3, 0])
  w = pcl.select(rel, classes, eligible, 0.25, 0.2, False, 2)  # Budget 2.
  np.testing.assert_allclose(w[:, 0], [0.9, 0, 0.8, 0, 0, 0, 0, 0])
  w = pcl.select(rel, classes, jnp.zeros((8, 1), bool), 1.0, 0.0, False, 2)
  np.testing.assert_array_equal(w, 0.0)


def test_select_class_budgets_are_separate_and_not_shared():
  rel = _column([0.9, 0.85, 0.8, 0.75, 0.7, 0.3, 0.25, 0.5])
  classes = jnp.array([0, 0, 0, 0, 0, 1, 1, 0])[:, None]
  eligible = jnp.ones((8, 1), bool)
  # Budget per class round(0.5 * 8 / 2) = 2: class 0 keeps its best two, class 1 its
  # two; class 1's unused budget is not given to class 0.
  w = pcl.select(rel, classes, eligible, 0.5, 0.2, True, 2)
  np.testing.assert_allclose(w[:, 0], [0.9, 0.85, 0, 0, 0, 0.3, 0.25, 0])
  w = pcl.select(rel, classes, eligible, 0.5, 0.28, True, 2)  # Floor drops one of class 1.
  np.testing.assert_allclose(w[:, 0], [0.9, 0.85, 0, 0, 0, 0.3, 0, 0])
  w = pcl.select(rel, classes, eligible, 0.5, 0.2, False, 2)  # No balance: best four.
  np.testing.assert_allclose(w[:, 0], [0.9, 0.85, 0.8, 0.75, 0, 0, 0, 0])


def test_select_treats_targets_independently_and_jits():
  rng = np.random.default_rng(4)
  rel = rng.random((16, 2)).astype(np.float32)
  classes = rng.integers(0, 2, (16, 2))
  eligible = rng.random((16, 2)) > 0.2
  fn = jax.jit(pcl.select, static_argnums=(5, 6))
  w = np.asarray(fn(rel, classes, eligible, jnp.float32(0.5), 0.1, True, 2))
  for t in range(2):
    cols = (rel[:, t:t + 1], classes[:, t:t + 1], eligible[:, t:t + 1])
    np.testing.assert_allclose(w[:, t], pcl.select(*cols, 0.5, 0.1, True, 2)[:, 0])
    chosen = w[:, t] > 0
    assert not np.any(chosen & ~eligible[:, t])
    for c in range(2):
      in_class = classes[:, t] == c
      taken = chosen & in_class
      assert taken.sum() <= 4  # round(0.5 * 16 / 2).
      left = eligible[:, t] & in_class & (rel[:, t] >= 0.1) & ~taken
      if taken.any() and left.any():  # The chosen are the most reliable of their class.
        assert rel[taken, t].min() >= rel[left, t].max()


def test_select_gives_each_stream_its_own_budget():
  # Labelled rows (0-5) are all more reliable than unlabelled ones (6-9).
  rel = _column([0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.5, 0.45, 0.4, 0.6])
  classes = jnp.zeros((10, 1), jnp.int32)
  eligible = jnp.ones((10, 1), bool)
  unlabelled = jnp.arange(10) >= 6
  w = pcl.select(rel, classes, eligible, 0.5, 0.0, False, 2, unlabelled)
  # Budgets round(0.5 * 6) = 3 and round(0.5 * 4) = 2, each of its own stream.
  np.testing.assert_allclose(w[:, 0], [0.9, 0.85, 0.8, 0, 0, 0, 0.5, 0, 0, 0.6])
  joint = pcl.select(rel, classes, eligible, 0.5, 0.0, False, 2)  # One budget of 5.
  np.testing.assert_allclose(joint[:, 0], [0.9, 0.85, 0.8, 0.75, 0.7, 0, 0, 0, 0, 0])
  w = pcl.select(rel, classes, eligible, 0.5, 0.0, True, 2, unlabelled)  # Per class too.
  np.testing.assert_allclose(w[:, 0], [0.9, 0.85, 0, 0, 0, 0, 0, 0, 0, 0.6])


# --- Loss --------------------------------------------------------------------------


def test_pcl_loss_is_weighted_and_its_gradient_reaches_the_fusion_logits():
  rng = np.random.default_rng(5)
  logits = jnp.asarray(rng.standard_normal((4, 2, 2)), jnp.float32)
  targets = jnp.asarray(_distributions(rng, (4, 2, 2)))
  weights = jnp.array([[0.9, 0.0], [0.0, 0.0], [0.5, 0.7], [0.0, 0.0]])
  ce = -(targets * jax.nn.log_softmax(logits)).sum(-1)
  expected = (weights * ce).sum() / weights.sum()
  loss = float(pcl.pcl_loss(logits, targets, weights))
  assert loss == pytest.approx(float(expected), rel=1e-5)
  grad = jax.grad(pcl.pcl_loss)(logits, targets, weights)
  assert np.abs(np.asarray(grad)[weights > 0]).sum() > 0
  np.testing.assert_array_equal(np.asarray(grad)[weights == 0], 0.0)
  # Small total weight: divided by 1, not by the weight sum.
  small = weights * 0.1
  loss = float(pcl.pcl_loss(logits, targets, small))
  assert loss == pytest.approx(float((small * ce).sum()), rel=1e-5)
  zero = jnp.zeros_like(weights)
  assert float(pcl.pcl_loss(logits, targets, zero)) == 0.0
  np.testing.assert_array_equal(jax.grad(pcl.pcl_loss)(logits, targets, zero), 0.0)


# --- The EMA table -----------------------------------------------------------------


def test_init_state_is_uniform_and_unseen():
  state = pcl.init_state(5, 2, 2)
  assert state.table.shape == (5, 2, 2) and state.table.dtype == jnp.float32
  np.testing.assert_array_equal(state.table, 0.5)
  assert state.seen.shape == (5,) and not state.seen.any()


def test_update_table_first_visit_copies_revisit_is_ema_padding_ignored():
  rng = np.random.default_rng(6)
  state = pcl.init_state(6, 2, 2)
  p1 = jnp.asarray(_distributions(rng, (3, 2, 2)))
  state = pcl.update_table(state, jnp.array([1, -1, 4]), p1, 0.9, jnp.bool_(True))
  np.testing.assert_array_equal(state.seen, [False, True, False, False, True, False])
  np.testing.assert_array_equal(state.table[1], p1[0])
  np.testing.assert_array_equal(state.table[4], p1[2])
  untouched = np.array([0, 2, 3, 5])  # -1 did not wrap round to row 5.
  np.testing.assert_array_equal(state.table[untouched], 0.5)
  p2 = jnp.asarray(_distributions(rng, (2, 2, 2)))
  state = pcl.update_table(state, jnp.array([4, 0]), p2, 0.9, jnp.bool_(True))
  np.testing.assert_allclose(state.table[4], 0.9 * p1[2] + 0.1 * p2[0], rtol=1e-6)
  np.testing.assert_array_equal(state.table[0], p2[1])
  np.testing.assert_array_equal(state.table[1], p1[0])
  assert int(state.seen.sum()) == 3


def test_update_table_disabled_leaves_state_unchanged_under_jit():
  rng = np.random.default_rng(7)
  first = jnp.asarray(_distributions(rng, (2, 2, 2)))
  state = pcl.update_table(pcl.init_state(4, 2, 2), jnp.array([0, 2]), first, 0.9,
                           jnp.bool_(True))
  update = jax.jit(pcl.update_table, static_argnums=(3,))
  probs = jnp.asarray(_distributions(rng, (3, 2, 2)))
  same = update(state, jnp.array([0, 1, 3]), probs, 0.9, jnp.bool_(False))
  np.testing.assert_array_equal(same.table, state.table)
  np.testing.assert_array_equal(same.seen, state.seen)
  changed = update(state, jnp.array([0, 1, 3]), probs, 0.9, jnp.bool_(True))
  assert changed.seen.all()


def test_update_table_duplicate_indices_last_write_wins():
  probs = jnp.stack([jnp.full((2, 2), v) for v in (0.1, 0.2, 0.3, 0.4)])
  state = pcl.update_table(pcl.init_state(3, 2, 2), jnp.array([2, 0, 2, 2]), probs, 0.9,
                           jnp.bool_(True))
  np.testing.assert_allclose(state.table[2], 0.4)
  np.testing.assert_allclose(state.table[0], 0.2)
  np.testing.assert_array_equal(state.seen, [True, False, True])


# --- The per-device step under pmap / shard_map ------------------------------------


def _device_batches(rng, num_devices, per_device, num_train, step):
  """Different indices and logits per device; the last example of device 1 is padding."""
  index = rng.permutation(num_train)[:num_devices * per_device]
  index = index.reshape(num_devices, per_device)
  mask = np.ones((num_devices, per_device), np.float32)
  mask[1, -1] = 0.0
  shape = (num_devices, per_device, 2, 2)
  outputs = {h: (rng.standard_normal(shape) * 2).astype(np.float32)
             for h in ('fusion', 'mel', 'coch')}
  batch = dict(index=index.astype(np.int32), mask=mask,
               valence=rng.choice([-0.6, 0.6], index.shape).astype(np.float32),
               arousal=rng.choice([-0.6, 0.6], index.shape).astype(np.float32))
  return outputs, batch, np.full((num_devices,), step, np.int32)


def _loss_and_state(state, outputs, batch, step, config, supervised=False):
  """pcl_step with the loss differentiated w.r.t. the fusion logits."""

  def loss_fn(fusion):
    loss, new_state, metrics, weights = pcl.pcl_step(
        state, {**outputs, 'fusion': fusion}, batch, step, config, AXIS)
    return loss, (new_state, metrics, weights)

  (_, (new_state, metrics, weights)), grad = jax.value_and_grad(loss_fn, has_aux=True)(
      outputs['fusion'])
  if supervised:
    return new_state, metrics, grad, weights
  return new_state, metrics, grad


def _pmapped_step(config, devices=None, supervised=False):
  """pcl_step under pmap; arrays [num_devices, b, ...], state replicated."""
  fn = functools.partial(_loss_and_state, config=config, supervised=supervised)
  return jax.pmap(fn, axis_name=AXIS, devices=devices)


def test_pcl_step_under_pmap_keeps_replica_tables_identical():
  assert jax.local_device_count() == 2
  config = _pcl_config(pcl__warmup_steps=2, num_train_steps=20, pcl__reliability_floor=0.0,
                       pcl__coverage_start=1.0, pcl__coverage_end=1.0)
  num_train = 24
  state = jax_utils.replicate(pcl.init_state(num_train, 2, 2))
  step_fn = _pmapped_step(config)
  rng = np.random.default_rng(8)
  written, selected = set(), []
  for step in range(8):
    # Different indices and logits on each device.
    outputs, batch, steps = _device_batches(rng, 2, 4, num_train, step)
    before = jax.device_get(state.table)
    state, metrics, grad = step_fn(state, outputs, batch, steps)
    if step < config.pcl.warmup_steps:  # Warm-up: no update, no loss.
      np.testing.assert_array_equal(state.table, before)
      np.testing.assert_array_equal(np.asarray(grad), 0.0)
    else:
      for d in range(2):
        written.update(batch['index'][d][batch['mask'][d] > 0].tolist())
    selected.append(float(metrics['pcl/selected_fraction'].mean()))
    np.testing.assert_allclose(metrics['pcl/tau'], pcl.temperature(step, config.pcl, 20))
  table, seen = np.asarray(state.table), np.asarray(state.seen)
  np.testing.assert_array_equal(table[0], table[1])  # Bit-identical replicas.
  np.testing.assert_array_equal(seen[0], seen[1])
  # Rows of both devices' (real) indices were written, and nothing else.
  assert set(np.flatnonzero(seen[0]).tolist()) == written
  for d in range(2):
    real = batch['index'][d][batch['mask'][d] > 0]
    assert seen[0][real].all()
  np.testing.assert_array_equal(table[0][~seen[0]], 0.5)
  assert max(selected[:config.pcl.warmup_steps + 1]) == 0.0  # Nothing seen yet.
  assert max(selected) > 0.0  # Revisited rows are selected.


def test_pcl_step_first_visit_copies_then_revisit_trains_the_fusion_head():
  config = _pcl_config(pcl__warmup_steps=0, pcl__reliability_floor=0.0,
                       pcl__coverage_start=1.0, pcl__coverage_end=1.0)
  outputs, batch, _ = _device_batches(np.random.default_rng(9), 2, 3, 10, 0)
  step_fn = _pmapped_step(config)
  state = jax_utils.replicate(pcl.init_state(10, 2, 2))
  state, _, grad = step_fn(state, outputs, batch, np.array([0, 0], np.int32))
  np.testing.assert_array_equal(np.asarray(grad), 0.0)  # Nothing seen yet: no loss.
  real = batch['mask'] > 0
  probs = np.asarray(jax.nn.softmax(outputs['fusion'], -1))
  np.testing.assert_allclose(state.table[0][batch['index'][real]], probs[real], rtol=1e-6)
  assert not state.seen[0][batch['index'][1, -1]]  # Padding is not written.
  # Same examples again: now seen and selected; the loss reaches the fusion logits.
  _, metrics, grad = step_fn(state, outputs, batch, np.array([1, 1], np.int32))
  grad = np.asarray(grad)
  assert np.abs(grad).sum() > 0
  assert float(metrics['pcl/selected_fraction'][0]) > 0
  np.testing.assert_array_equal(grad[1, -1], 0.0)  # Padding gets no gradient.


def test_pcl_step_under_shard_map_returns_a_replicated_state():
  config = _pcl_config(pcl__warmup_steps=0)
  mesh = Mesh(np.asarray(jax.devices()), (AXIS,))

  def per_device(state, outputs, batch):
    _, new_state, metrics, weights = pcl.pcl_step(
        state, jax.tree.map(lambda x: x[0], outputs), jax.tree.map(lambda x: x[0], batch),
        jnp.int32(3), config, AXIS)
    return new_state, jax.lax.pmean(metrics, AXIS), weights[None]

  step = jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(AXIS), P(AXIS)),
                               out_specs=(P(), P(), P(AXIS))))
  outputs, batch, _ = _device_batches(np.random.default_rng(10), 2, 4, 16, 3)
  state, _, weights = step(pcl.init_state(16, 2, 2), outputs, batch)
  np.testing.assert_array_equal(weights, np.repeat(batch['mask'][..., None], 2, -1))
  real = batch['index'][batch['mask'] > 0]
  np.testing.assert_array_equal(np.flatnonzero(np.asarray(state.seen)), np.sort(real))
  probs = jax.nn.softmax(outputs['fusion'], -1)[batch['mask'] > 0]
  np.testing.assert_allclose(np.asarray(state.table)[real], probs, rtol=1e-6)


def test_pcl_step_rejects_regression():
  config = _pcl_config(task='regression')
  with pytest.raises(ValueError, match='classification'):
    pcl.pcl_step(pcl.init_state(4, 2, 2), {}, {}, 0, config, AXIS)


def test_validate_names_a_bad_target_mode():
  config = _pcl_config(pcl__target_mode='hard')
  with pytest.raises(ValueError, match=r'config\.pcl\.target_mode'):
    pcl.validate(config)
  with pytest.raises(ValueError, match=r'config\.pcl\.target_mode'):
    pcl.pcl_step(pcl.init_state(4, 2, 2), {}, {}, 0, config, AXIS)
  config.pcl.enabled = False  # Nothing to check when PCL is off.
  pcl.validate(config)
  for field, value in [('label_trust', 1.5), ('num_raters', 0), ('label_mix', -0.1)]:
    config = _pcl_config(**{f'pcl__{field}': value})
    with pytest.raises(ValueError, match=rf'config\.pcl\.{field}'):
      pcl.validate(config)
  pcl.validate(_pcl_config(pcl__target_mode='pseudo'))


# --- Pseudo labels that overrule, the unlabelled stream -----------------------------


def _logits(probs):
  return jnp.log(jnp.asarray(probs, jnp.float32))


def _seen_state(num_rows, rows, p_ema):
  """A PCLState whose rows `rows` hold `p_ema` [n, T, C] and are seen."""
  table = np.full((num_rows,) + p_ema.shape[1:], 0.5, np.float32)
  table[rows] = p_ema
  seen = np.zeros((num_rows,), bool)
  seen[rows] = True
  return pcl.PCLState(table=jnp.asarray(table), seen=jnp.asarray(seen))


def _overrule_case():
  """Five labelled rows whose EMA says valence class 1 with 0.98 (see below)."""
  p_ema = np.concatenate([_doubted_ema(), _doubted_ema()[:1]])
  fusion = _logits(p_ema)  # Stability 1, confidence 0.98 / 0.9.
  coch = fusion.at[4].set(fusion[4, :, ::-1])  # Row 4: the views disagree.
  outputs = {'fusion': fusion, 'mel': fusion, 'coch': coch}
  # Valence: doubted class 0, trusted class 0, agreeing class 1, unknown std (trust
  # 0.4), doubted class 0 with unreliable views. Arousal agrees with the EMA.
  batch = dict(index=np.arange(5, dtype=np.int32),
               valence=np.array([-0.05, -0.8, 0.7, -0.05, -0.05], np.float32),
               arousal=np.array([-0.5, 0.5, -0.5, -0.5, -0.5], np.float32),
               valence_std=np.array([0.5, 0.1, 0.2, -1.0, 0.5], np.float32),
               arousal_std=np.full((5,), 0.1, np.float32))
  return _seen_state(8, np.arange(5), p_ema), outputs, batch


def _one_device(tree):
  return jax.tree.map(lambda x: np.asarray(x)[None], tree)


@pytest.mark.parametrize('hard', [False, True])
def test_pseudo_mode_overrules_a_doubted_annotation_and_drops_its_supervision(hard):
  config = _pcl_config(pcl__warmup_steps=0, pcl__target_mode='pseudo',
                       pcl__hard_targets=hard, pcl__coverage_start=1.0,
                       pcl__coverage_end=1.0, pcl__class_balance=False,
                       pcl__reliability_floor=0.2)
  state, outputs, batch = _overrule_case()
  step_fn = _pmapped_step(config, jax.devices()[:1], supervised=True)
  _, metrics, grad, weights = step_fn(_one_device(state), *_one_device((outputs, batch)),
                                      np.array([5], np.int32))
  # Overruled: rows 0 (raters doubt) and 3 (no std, label_trust 0.4). Row 1 is trusted,
  # row 2 agrees, row 4 contradicts but is not selected (views disagree).
  np.testing.assert_array_equal(weights[0], [[0, 1], [1, 1], [1, 1], [0, 1], [1, 1]])
  assert float(metrics['pcl/overruled_fraction'][0]) == pytest.approx(2 / 10)
  grad = np.asarray(grad[0])
  np.testing.assert_array_equal(grad[4, 0], 0.0)  # Not selected: no PCL loss.
  if hard:  # The one-hot pseudo label pulls the fusion head to the EMA's class.
    assert grad[0, 0, 1] < 0 and grad[3, 0, 1] < 0
  # Soft mode, same batch: the annotation is never overruled.
  config.pcl.target_mode = 'soft'
  step_fn = _pmapped_step(config, jax.devices()[:1], supervised=True)
  _, metrics, grad, weights = step_fn(_one_device(state), *_one_device((outputs, batch)),
                                      np.array([5], np.int32))
  np.testing.assert_array_equal(weights, 1.0)
  assert float(metrics['pcl/overruled_fraction'][0]) == 0.0
  assert np.asarray(grad[0, 0, 0, 1]) > 0  # Soft target pulls back toward class 0.


@pytest.mark.parametrize('mode', ['soft', 'pseudo'])
def test_unlabelled_rows_are_written_selected_and_never_supervised(mode):
  config = _pcl_config(pcl__warmup_steps=0, pcl__target_mode=mode,
                       pcl__coverage_start=1.0, pcl__coverage_end=1.0,
                       pcl__class_balance=False, pcl__reliability_floor=0.0)
  num_train, rng = 6, np.random.default_rng(13)
  fusion = jnp.asarray(rng.standard_normal((4, 2, 2)) * 2, jnp.float32)
  outputs = {'fusion': fusion, 'mel': fusion, 'coch': fusion}
  # Labelled rows 2 and 5, then unlabelled rows num_train + 1 and num_train + 3 (0.0).
  batch = dict(index=np.array([2, 5, num_train + 1, num_train + 3], np.int32),
               labelled=np.array([1, 1, 0, 0], np.float32),
               valence=np.array([0.6, -0.6, 0.0, 0.0], np.float32),
               arousal=np.array([-0.6, 0.6, 0.0, 0.0], np.float32))
  # The labelled rows' raters agree (trust ~1), so no annotation is overruled.
  batch['valence_std'] = batch['arousal_std'] = np.array([0.05, 0.05, -1, -1], np.float32)
  step_fn = _pmapped_step(config, jax.devices()[:1], supervised=True)
  state = _one_device(pcl.init_state(num_train + 4, 2, 2))
  state, metrics, grad, weights = step_fn(state, *_one_device((outputs, batch)),
                                          np.array([1], np.int32))
  np.testing.assert_array_equal(weights[0], [[1, 1], [1, 1], [0, 0], [0, 0]])
  np.testing.assert_array_equal(np.asarray(grad), 0.0)  # First visit: nothing seen.
  probs = jax.nn.softmax(fusion, -1)
  np.testing.assert_allclose(state.table[0][batch['index']], probs, rtol=1e-6)
  np.testing.assert_array_equal(np.flatnonzero(state.seen[0]), batch['index'])
  # Revisit: every pair is selected (coverage 1); the unlabelled rows' loss is the CE
  # to the pure sharpened EMA, weighted by reliability over the global weight sum.
  step = 2
  _, metrics, grad, weights = step_fn(state, *_one_device((outputs, batch)),
                                      np.array([step], np.int32))
  np.testing.assert_array_equal(weights[0], [[1, 1], [1, 1], [0, 0], [0, 0]])
  assert float(metrics['pcl/unlabelled_selected_fraction'][0]) == 1.0
  assert float(metrics['pcl/selected_fraction'][0]) == 1.0
  rel = pcl.reliability(probs, probs, probs, probs)
  tau = pcl.temperature(step, config.pcl, config.num_train_steps)
  pseudo = pcl.pseudo_targets(probs, jnp.zeros((4, 2), int), tau, 0.0, 2)
  expected = rel[..., None] * (probs - pseudo) / rel.sum()
  np.testing.assert_allclose(grad[0, 2:], expected[2:], rtol=1e-4, atol=1e-7)


def _split_over_devices(tree, num_devices, labelled_per_device):
  """Global arrays [L + U, ...] (labelled, then unlabelled rows) -> [n, b, ...], each
  device holding its labelled part followed by its unlabelled part (the contract)."""
  unlabelled_per_device = (jax.tree.leaves(tree)[0].shape[0] -
                           num_devices * labelled_per_device) // num_devices
  split = labelled_per_device * num_devices

  def one(x):
    x = np.asarray(x)
    lab = x[:split].reshape((num_devices, labelled_per_device) + x.shape[1:])
    unl = x[split:].reshape((num_devices, unlabelled_per_device) + x.shape[1:])
    return np.concatenate([lab, unl], axis=1)

  return jax.tree.map(one, tree)


def _merge_devices(x, num_devices, labelled_per_device):
  """Inverse of `_split_over_devices` for one array [n, b, ...]."""
  x = np.asarray(x)
  lab = x[:, :labelled_per_device].reshape((-1,) + x.shape[2:])
  unl = x[:, labelled_per_device:].reshape((-1,) + x.shape[2:])
  return np.concatenate([lab, unl])


def _global_case(tied):
  """A global batch of 8 labelled and 4 unlabelled rows; seen table rows."""
  rng = np.random.default_rng(14)
  rows, shape = 12, (12, 2, 2)
  if tied:  # Every row the same: selection is decided by global position alone.
    fusion = np.broadcast_to(rng.standard_normal((1, 2, 2)) * 2, shape)
    mel = coch = ema = fusion
    valence = np.full((rows,), -0.05, np.float32)
    std = np.full((rows,), 0.5, np.float32)
  else:
    fusion = rng.standard_normal(shape) * 2
    mel = fusion + 0.5 * rng.standard_normal(shape)
    coch = fusion + 0.5 * rng.standard_normal(shape)
    ema = fusion + rng.standard_normal(shape)
    valence = rng.choice([-0.6, -0.05, 0.05, 0.6], rows).astype(np.float32)
    std = rng.choice([-1.0, 0.1, 0.5], rows).astype(np.float32)
  labelled = (np.arange(rows) < 8).astype(np.float32)
  index = np.concatenate([rng.permutation(8), 8 + rng.permutation(4)]).astype(np.int32)
  batch = dict(index=index, labelled=labelled, valence=valence * labelled,
               arousal=rng.choice([-0.6, 0.6], rows).astype(np.float32) * labelled,
               valence_std=std, arousal_std=np.full((rows,), -1.0, np.float32))
  outputs = {k: np.asarray(v, np.float32) for k, v in
             dict(fusion=fusion, mel=mel, coch=coch).items()}
  p_ema = np.zeros_like(outputs['fusion'])
  p_ema[index] = jax.nn.softmax(jnp.asarray(ema, jnp.float32), -1)
  state = pcl.PCLState(table=jnp.asarray(p_ema), seen=jnp.ones((rows,), bool))
  return state, outputs, batch


def _expected_selection(state, outputs, batch, config):
  """bool [B, T]: top round(cov * S / C) per (stream, pseudo class, target), numpy."""
  p = {k: jax.nn.softmax(jnp.asarray(v), -1) for k, v in outputs.items()}
  p_ema = state.table[batch['index']]
  rel = np.asarray(pcl.reliability(p['fusion'], p['mel'], p['coch'], p_ema))
  values = np.stack([batch['valence'], batch['arousal']], -1)
  stds = np.stack([batch['valence_std'], batch['arousal_std']], -1)
  tau = config.pcl.tau_start
  targets, _ = pcl.mode_targets(p_ema, values, stds, batch['labelled'] > 0, tau, config)
  classes = np.asarray(targets.argmax(-1))
  selected = np.zeros(rel.shape, bool)
  for stream in (batch['labelled'] > 0, batch['labelled'] == 0):
    budget = round(config.pcl.coverage_start * stream.sum() / 2)
    for t in range(2):
      for c in range(2):
        group = np.flatnonzero(stream & (classes[:, t] == c) &
                               (rel[:, t] >= config.pcl.reliability_floor))
        best = group[np.argsort(-rel[group, t], kind='stable')][:budget]
        selected[best, t] = True
  return selected


@pytest.mark.parametrize('tied', [False, True])
def test_global_selection_and_gradient_do_not_depend_on_the_device_count(tied, request):
  # Tied rows decide by global position only if they are bit-identical after the
  # model's arithmetic, as in a real (optimised) compile.
  if tied and rerun_with_production_compile(request):
    return
  config = _pcl_config(pcl__warmup_steps=0, pcl__target_mode='pseudo',
                       pcl__tau_schedule='constant', pcl__coverage_start=0.5,
                       pcl__reliability_floor=0.1, pcl__class_balance=True)
  state, outputs, batch = _global_case(tied)
  expected = _expected_selection(state, outputs, batch, config)
  assert 0 < expected.sum() < expected.size
  results = {}
  for n in (1, 2):
    step_fn = _pmapped_step(config, jax.devices()[:n], supervised=True)
    split = lambda tree: _split_over_devices(tree, n, 8 // n)
    new_state, metrics, grad, weights = step_fn(
        jax_utils.replicate(state, jax.devices()[:n]), split(outputs), split(batch),
        np.full((n,), 3, np.int32))
    merge = lambda x: _merge_devices(x, n, 8 // n)
    # The train step pmeans gradients: each device's share of the mean is grad / n.
    results[n] = dict(grad=merge(grad) / n, weights=merge(weights),
                      metrics=jax.tree.map(np.asarray, metrics),
                      table=np.asarray(new_state.table))
    for value in results[n]['metrics'].values():
      np.testing.assert_array_equal(value, value[0])  # Global: the same on every device.
    selected = np.abs(results[n]['grad']).sum(-1) > 0
    np.testing.assert_array_equal(selected, expected, err_msg=f'{n} devices')
  one, two = results[1], results[2]
  np.testing.assert_allclose(two['grad'], one['grad'], rtol=1e-5, atol=1e-8)
  np.testing.assert_array_equal(two['weights'], one['weights'])
  for name, value in one['metrics'].items():
    np.testing.assert_allclose(two['metrics'][name][0], value[0], rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(two['table'][0], one['table'][0], rtol=1e-6)
  assert float(one['metrics']['pcl/unlabelled_selected_fraction'][0]) > 0
  if tied:  # The lowest global positions: labelled rows 0-1, unlabelled row 8.
    np.testing.assert_array_equal(np.flatnonzero(expected.any(-1)), [0, 1, 8])
