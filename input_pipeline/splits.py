"""Track-level train/test splits: no track is ever in two splits."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np


def split_tracks(track_ids: Sequence[Hashable], test_fraction: float,
                 seed: int) -> dict[str, list[Hashable]]:
  """Splits whole tracks, seeded and reproducible.

  Args:
    track_ids: unique track identifiers (any order; they are sorted first, so the
      split does not depend on the order they were found in).
    test_fraction: share of tracks in 'test', in [0, 1). At least one track goes to
      each split when there are two or more tracks and test_fraction > 0.
    seed: permutation seed.

  Returns:
    {'train': [...], 'test': [...]}, each sorted.
  """
  if not 0.0 <= test_fraction < 1.0:
    raise ValueError(f'test_fraction must be in [0, 1), got {test_fraction}.')
  ids = sorted(set(track_ids), key=str)
  if len(ids) != len(track_ids):
    raise ValueError('track_ids must be unique.')
  num_test = int(round(test_fraction * len(ids)))
  if test_fraction > 0 and len(ids) >= 2:
    num_test = min(max(num_test, 1), len(ids) - 1)
  order = np.random.default_rng(seed).permutation(len(ids))
  test = {ids[i] for i in order[:num_test]}
  return {'train': [t for t in ids if t not in test], 'test': [t for t in ids if t in test]}
