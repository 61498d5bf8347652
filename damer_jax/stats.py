"""Statistics of an ablation: accuracies and paired differences with bootstrap CIs.

Everything works on per-track counts, so a bootstrap replicate is a weighting of the
test tracks (segments of one track are not independent: they share a piece, a
recording and its annotators). The unit of resampling is the track; seeds are
resampled too, so an interval covers both the test sample and training randomness.

Shapes: S seeds, N segments, T targets, C classes, K test tracks, B replicates.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def track_counts(probs: np.ndarray, labels: np.ndarray, tracks: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
  """Correct predictions per seed, target and track, and segments per track.

  Args:
    probs: class probabilities [S, N, T, C].
    labels: true classes int [N, T].
    tracks: track id of each segment [N].

  Returns:
    (correct float64 [S, T, K], segments float64 [K]), tracks in sorted id order.
  """
  _, track_index = np.unique(tracks, return_inverse=True)
  num_tracks = int(track_index.max()) + 1
  correct = (probs.argmax(-1) == labels[None]).astype(np.float64)  # [S, N, T]
  per_track = np.zeros(correct.shape[:1] + correct.shape[2:] + (num_tracks,))
  for t in range(correct.shape[2]):
    for s in range(correct.shape[0]):
      per_track[s, t] = np.bincount(track_index, correct[s, :, t], minlength=num_tracks)
  return per_track, np.bincount(track_index, minlength=num_tracks).astype(np.float64)


def _replicates(num_seeds: int, num_tracks: int, num_samples: int, seed: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Seed draws int [B, S] and track weights (multinomial counts) [B, K]."""
  rng = np.random.default_rng(seed)
  seed_draws = rng.integers(0, num_seeds, (num_samples, num_seeds))
  track_weights = rng.multinomial(num_tracks, np.full(num_tracks, 1.0 / num_tracks),
                                  num_samples).astype(np.float64)
  return seed_draws, track_weights


def _accuracy(correct: np.ndarray, segments: np.ndarray, seed_draws: np.ndarray,
              track_weights: np.ndarray) -> np.ndarray:
  """Mean-over-drawn-seeds accuracy per replicate and target [B, T]."""
  per_seed = np.einsum('stk,bk->bst', correct, track_weights) / (
      track_weights @ segments)[:, None, None]  # [B, S, T]
  drawn = np.take_along_axis(per_seed, seed_draws[:, :, None], axis=1)
  return drawn.mean(axis=1)


def accuracy_interval(correct: np.ndarray, segments: np.ndarray, num_samples: int = 2000,
                      seed: int = 0) -> dict[str, np.ndarray]:
  """Accuracy (mean over seeds) with a 95% bootstrap interval and standard error.

  Returns 'mean', 'low', 'high', 'se', each float64 [T].
  """
  mean = (correct.sum(-1) / segments.sum()).mean(0)
  draws, weights = _replicates(correct.shape[0], len(segments), num_samples, seed)
  boot = _accuracy(correct, segments, draws, weights)
  return {'mean': mean, 'low': np.percentile(boot, 2.5, axis=0),
          'high': np.percentile(boot, 97.5, axis=0), 'se': boot.std(axis=0, ddof=1)}


def paired_difference(correct_a: np.ndarray, correct_b: np.ndarray, segments: np.ndarray,
                      num_samples: int = 2000, seed: int = 0) -> dict[str, np.ndarray]:
  """Accuracy of a minus b (paired by seed and track) with a 95% bootstrap interval.

  Both variants see the same replicates (the same drawn seeds and track weights), so
  the interval is of the paired difference.

  Returns 'mean', 'low', 'high', 'se' float64 [T] and 'p_le_0': share of replicates
  with a difference <= 0 (a one-sided bootstrap p-value for "a beats b").
  """
  mean = ((correct_a - correct_b).sum(-1) / segments.sum()).mean(0)
  draws, weights = _replicates(correct_a.shape[0], len(segments), num_samples, seed)
  boot = (_accuracy(correct_a, segments, draws, weights) -
          _accuracy(correct_b, segments, draws, weights))
  return {'mean': mean, 'low': np.percentile(boot, 2.5, axis=0),
          'high': np.percentile(boot, 97.5, axis=0), 'se': boot.std(axis=0, ddof=1),
          'p_le_0': (boot <= 0).mean(axis=0)}


def neighbour_drift(embeddings: np.ndarray, classes: np.ndarray, tracks: np.ndarray,
                    k: int = 10) -> dict[str, float]:
  """How much an embedding's neighbours follow emotion rather than the track.

  For each segment, its k nearest neighbours by cosine similarity among the segments
  of *other* tracks (fewer when fewer exist), and separately among all other segments.

  Args:
    embeddings: [N, D].
    classes: emotion class int [N] (e.g. the valence-arousal quadrant, or one target's
      high/low).
    tracks: track id [N].
    k: neighbours (at most N - 1 are used).

  Returns:
    'class_agreement': share of the other-track neighbours in the segment's class
      (chance = the class shares; high = classes line up across tracks, what SAML aims
      at); 'same_track_share': share of all neighbours from the segment's own track
      (high = the embedding mostly encodes which track a segment came from); 'chance':
      the class agreement of random segments; 'k': the neighbours used. NaN (k 0) for
      fewer than two segments.
  """
  x = np.asarray(embeddings, np.float64)
  classes, tracks = np.asarray(classes), np.asarray(tracks)
  n = len(x)
  if n < 2:
    return {'class_agreement': float('nan'), 'same_track_share': float('nan'),
            'chance': float('nan'), 'k': 0}
  k = min(k, n - 1)
  x = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-9)
  sim = x @ x.T
  np.fill_diagonal(sim, -np.inf)
  same_track = tracks[:, None] == tracks[None, :]
  nearest_all = np.argsort(-sim, axis=1, kind='stable')[:, :k]
  same_share = same_track[np.arange(n)[:, None], nearest_all].mean()
  other = np.where(same_track, -np.inf, sim)
  nearest_other = np.argsort(-other, axis=1, kind='stable')[:, :k]
  real = np.take_along_axis(other, nearest_other, axis=1) > -np.inf  # Other-track only.
  agree = (classes[nearest_other] == classes[:, None]) & real
  has = real.any(axis=1)
  agreement = (agree.sum(1)[has] / real.sum(1)[has]).mean() if has.any() else np.nan
  shares = np.bincount(classes) / len(classes)
  return {'class_agreement': float(agreement), 'same_track_share': float(same_share),
          'chance': float((shares ** 2).sum()), 'k': int(k)}


def summarise(values: Any) -> str:
  """'+1.2 [+0.3, +2.1]' from a dict with mean/low/high (in points, one target)."""
  return (f"{100 * values['mean']:+.1f} [{100 * values['low']:+.1f}, "
          f"{100 * values['high']:+.1f}]")
