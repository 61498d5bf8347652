"""stats.neighbour_drift: the one neighbour measure of the drift figure and the grid."""

import math

import numpy as np

from damer_jax import stats


def test_only_other_track_segments_count_towards_class_agreement():
  # Track 0 (class 0) has 5 segments, track 1 (class 1) one; with k=4 each track-0
  # segment has a single other-track neighbour, of the other class. Filling the rest of
  # its k with same-track segments (which agree) would report agreement > 0.
  rng = np.random.default_rng(0)
  embeddings = rng.normal(size=(6, 8))
  tracks = np.array([0, 0, 0, 0, 0, 1])
  classes = np.array([0, 0, 0, 0, 0, 1])
  got = stats.neighbour_drift(embeddings, classes, tracks, k=4)
  assert got['class_agreement'] == 0.0
  assert got['k'] == 4
  # Track-0 segments: their 4 nearest of 5 others are >= 3 from track 0; track 1's are
  # all from track 0.
  assert 0.5 < got['same_track_share'] < 1.0


def test_clusters_by_track_and_by_class_are_told_apart():
  rng = np.random.default_rng(1)
  tracks = np.repeat(np.arange(8), 6)
  classes = tracks % 2
  by_track = rng.normal(size=(8, 16))[tracks] * 3 + rng.normal(size=(48, 16))
  by_class = np.eye(16)[classes] * 4 + rng.normal(size=(48, 16)) * 0.3
  clustered = stats.neighbour_drift(by_track, classes, tracks, k=5)
  aligned = stats.neighbour_drift(by_class, classes, tracks, k=5)
  assert clustered['same_track_share'] > 0.9 > aligned['same_track_share']
  assert aligned['class_agreement'] == 1.0 > clustered['class_agreement']
  assert aligned['chance'] == 0.5


def test_too_few_segments_give_nan():
  got = stats.neighbour_drift(np.ones((1, 3)), np.array([0]), np.array([0]))
  assert math.isnan(got['class_agreement']) and got['k'] == 0
