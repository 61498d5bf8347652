"""damer_jax/metrics.py against hand-computed values (fast tier)."""

import math

import numpy as np

from damer_jax import metrics
from tests.conftest import tiny_config


def test_classification_metrics_by_hand():
  values = np.array([[0.5], [0.4], [-0.2], [-0.9]])  # Classes 1, 1, 0, 0.
  p_high = np.array([0.9, 0.3, 0.6, 0.1])  # Predicted 1, 0, 1, 0.
  probs = np.stack([1 - p_high, p_high], -1)[:, None, :]
  got = metrics.classification_metrics(probs, values, ['valence'])
  assert got['valence/accuracy'] == 0.5
  assert got['valence/f1'] == 0.5  # Both classes: precision = recall = 1/2.
  # AUC: of the 4 (high, low) pairs, high ranks above low in (0.9>0.6, 0.9>0.1, 0.3>0.1).
  assert got['valence/auc'] == 0.75


def test_auc_is_nan_when_the_split_holds_one_class():
  probs = np.full((3, 1, 2), 0.5)
  got = metrics.classification_metrics(probs, np.full((3, 1), 0.7), ['arousal'])
  assert math.isnan(got['arousal/auc']) and got['arousal/accuracy'] in (0.0, 1.0)


def test_threshold_moves_the_class_boundary():
  probs = np.array([[[0.2, 0.8]], [[0.8, 0.2]]])
  values = np.array([[0.3], [0.1]])
  assert metrics.classification_metrics(probs, values, ['v'], 0.0)['v/accuracy'] == 0.5
  assert metrics.classification_metrics(probs, values, ['v'], 0.2)['v/accuracy'] == 1.0


def test_regression_metrics_by_hand():
  t = np.array([[0.0], [0.5], [1.0]])
  p = np.array([[0.0], [0.5], [0.7]])
  got = metrics.regression_metrics(p, t, ['valence'])
  np.testing.assert_allclose(got['valence/rmse'], math.sqrt(0.09 / 3))
  np.testing.assert_allclose(got['valence/r2'], 1 - 0.09 / 0.5)
  mt, mp = 0.5, 0.4
  cov = np.mean((t[:, 0] - mt) * (p[:, 0] - mp))
  ccc = 2 * cov / (t.var() + p.var() + (mt - mp) ** 2)
  np.testing.assert_allclose(got['valence/ccc'], ccc)
  assert metrics.concordance_correlation(t[:, 0], t[:, 0]) == 1.0
  assert math.isnan(metrics.concordance_correlation(np.ones(3), np.ones(3)))


def test_head_metrics_follows_the_task():
  probs = np.full((4, 2, 2), 0.5)
  values = np.array([[0.5, -0.5]] * 4)
  assert set(metrics.head_metrics(probs, values, tiny_config())) == {
      f'{t}/{m}' for t in ('valence', 'arousal') for m in ('accuracy', 'f1', 'auc')}
  assert set(metrics.head_metrics(values, values, tiny_config(task='regression'))) == {
      f'{t}/{m}' for t in ('valence', 'arousal') for m in ('rmse', 'r2', 'ccc')}
