"""Evaluation metrics on the host (numpy / scikit-learn), per target.

Classification: accuracy, macro-F1, ROC-AUC of the high class probability.
Regression: RMSE, R^2 and Lin's concordance correlation coefficient (CCC).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm


def concordance_correlation(y_true: np.ndarray, y_pred: np.ndarray) -> float:
  """Lin's CCC = 2 cov / (var_t + var_p + (mean_t - mean_p)^2)."""
  mt, mp = y_true.mean(), y_pred.mean()
  cov = ((y_true - mt) * (y_pred - mp)).mean()
  denom = y_true.var() + y_pred.var() + (mt - mp) ** 2
  return float(2 * cov / denom) if denom > 0 else math.nan


def classification_metrics(probs: np.ndarray, values: np.ndarray, target_names: Sequence[str],
                           threshold: float = 0.0) -> dict[str, float]:
  """probs [N, T, C] (class probabilities), values [N, T] continuous labels."""
  result = {}
  for i, name in enumerate(target_names):
    truth = (values[:, i] > threshold).astype(np.int64)
    pred = probs[:, i].argmax(-1)
    result[f'{name}/accuracy'] = float(skm.accuracy_score(truth, pred))
    result[f'{name}/f1'] = float(skm.f1_score(truth, pred, average='macro', zero_division=0))
    both = len(np.unique(truth)) == 2  # AUC is undefined with one class present.
    result[f'{name}/auc'] = float(skm.roc_auc_score(truth, probs[:, i, 1])) if both else math.nan
  return result


def regression_metrics(preds: np.ndarray, values: np.ndarray,
                       target_names: Sequence[str]) -> dict[str, float]:
  """preds and values [N, T] in [-1, 1]."""
  result = {}
  for i, name in enumerate(target_names):
    t, p = values[:, i].astype(np.float64), preds[:, i].astype(np.float64)
    result[f'{name}/rmse'] = float(np.sqrt(np.mean((t - p) ** 2)))
    result[f'{name}/r2'] = float(skm.r2_score(t, p)) if len(t) > 1 else math.nan
    result[f'{name}/ccc'] = concordance_correlation(t, p)
  return result


def head_metrics(outputs: np.ndarray, values: np.ndarray, config: Any) -> dict[str, float]:
  """Metrics of one head's outputs against annotated values [N, T], for config.task.

  outputs: class probabilities [N, T, C] (classification) or values [N, T] (regression).
  """
  targets = tuple(config.targets)
  if config.task == 'classification':
    return classification_metrics(outputs, values, targets, config.label_threshold)
  return regression_metrics(outputs, values, targets)
