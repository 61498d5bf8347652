"""damer_jax/metrics.py on random arrays against definitions written out here, and the
padding the evaluation drops before computing them (fast tier)."""

import math
import warnings

import numpy as np
import pytest

from damer_data import dataset as data_lib
from damer_jax import evaluate
from damer_jax import metrics
from tests.conftest import tiny_config


def _auc(truth, score):
  """P(score of a high example > score of a low one), ties counting one half."""
  pos, neg = score[truth == 1], score[truth == 0]
  greater = (pos[:, None] > neg[None, :]).sum()
  ties = (pos[:, None] == neg[None, :]).sum()
  return (greater + 0.5 * ties) / (len(pos) * len(neg))


def _macro_f1(truth, pred):
  scores = []
  for c in (0, 1):
    tp = np.sum((pred == c) & (truth == c))
    fp = np.sum((pred == c) & (truth != c))
    fn = np.sum((pred != c) & (truth == c))
    scores.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
  return float(np.mean(scores))


def test_each_target_reads_its_own_column_and_the_high_class_probability():
  rng = np.random.default_rng(0)
  n = 40
  values = rng.uniform(-1, 1, (n, 2))
  # Scores rounded to one decimal: ties between high and low examples occur.
  p_high = np.round(rng.uniform(0, 1, (n, 2)), 1)
  probs = np.stack([1 - p_high, p_high], -1)  # [n, 2 targets, 2 classes]
  got = metrics.classification_metrics(probs, values, ['valence', 'arousal'], threshold=0.1)
  for i, name in enumerate(['valence', 'arousal']):
    truth = (values[:, i] > 0.1).astype(int)
    pred = probs[:, i].argmax(-1)
    assert got[f'{name}/accuracy'] == pytest.approx(np.mean(truth == pred))
    assert got[f'{name}/f1'] == pytest.approx(_macro_f1(truth, pred))
    assert got[f'{name}/auc'] == pytest.approx(_auc(truth, p_high[:, i]))


def test_predicting_one_class_only_scores_zero_f1_for_the_other_without_warnings():
  values = np.array([[0.5], [0.5], [0.5], [-0.5]])  # Classes 1, 1, 1, 0.
  probs = np.array([[[0.2, 0.8]], [[0.3, 0.7]], [[0.4, 0.6]], [[0.1, 0.9]]])  # All 1.
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # sklearn's UndefinedMetricWarning would be one.
    got = metrics.classification_metrics(probs, values, ['valence'])
  assert got['valence/accuracy'] == 0.75
  assert got['valence/f1'] == pytest.approx((2 * 3 / (2 * 3 + 1)) / 2)  # (6/7 + 0) / 2.
  assert got['valence/auc'] == 0.0  # The one low example has the highest score.


def test_regression_extremes():
  t = np.linspace(-0.9, 0.9, 7)[:, None]
  perfect = metrics.regression_metrics(t, t, ['valence'])
  assert perfect == {'valence/rmse': 0.0, 'valence/r2': 1.0, 'valence/ccc': 1.0}
  flipped = metrics.regression_metrics(-t, t, ['valence'])  # Zero-mean t: CCC = -1.
  assert flipped['valence/ccc'] == pytest.approx(-1.0)
  assert flipped['valence/r2'] == pytest.approx(1 - np.sum((2 * t) ** 2) / np.sum(t ** 2))
  one = metrics.regression_metrics(np.array([[0.2]]), np.array([[0.5]]), ['arousal'])
  assert one['arousal/rmse'] == pytest.approx(0.3)
  assert math.isnan(one['arousal/r2'])  # Undefined for a single example.
  assert one['arousal/ccc'] == 0.0  # No covariance; the means differ.


class _EchoDriver:
  """Eval outputs [devices, b, 2, 2] with P(high) = 0.9 where the row's label is high
  (0.1 where low), and 0.9 on padding rows (labels exactly 0, i.e. low): wrong there."""

  def eval_step(self, state, batch):
    del state
    values = np.stack([batch['valence'], batch['arousal']], -1)  # [devices, b, 2]
    padding = (values == 0).all(-1, keepdims=True)  # [devices, b, 1]
    p_high = np.where((values > 0) | padding, 0.9, 0.1)
    fusion = np.stack([1 - p_high, p_high], -1)
    return {'fusion': fusion, 'mel': fusion, 'coch': fusion,
            'embedding': np.zeros(values.shape[:2] + (3,))}


def test_evaluation_drops_the_padding_rows_before_the_metrics():
  rng = np.random.default_rng(1)
  n = 11  # Two eval batches of 8: the second holds 5 padding rows.
  arrays = {'valence': rng.uniform(-1, 1, n).astype(np.float32),
            'arousal': rng.uniform(-1, 1, n).astype(np.float32),
            'track_id': (np.arange(n) % 4).astype(np.int32)}
  arrays['valence'][0], arrays['arousal'][0] = 0.5, -0.5  # Both classes present.
  arrays['valence'][1], arrays['arousal'][1] = -0.5, 0.5
  config = tiny_config(eval_batch_size=8)
  batches = [data_lib.to_devices(b) for b in data_lib.pad_batches(arrays, 8)]
  assert sum(float(b['mask'].sum()) for b in batches) == n
  got = evaluate.split_metrics(
      evaluate.collect(_EchoDriver(), None, iter(batches), config, heads=('fusion',)), config)
  # Padding rows are low-labelled and predicted high: kept, they would cost accuracy.
  assert got['valence/accuracy'] == 1.0 and got['arousal/accuracy'] == 1.0
  assert got['valence/auc'] == 1.0 and got['arousal/auc'] == 1.0
  assert got['num_examples'] == n and got['num_tracks'] == 4
