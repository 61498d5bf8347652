"""Track-level train/test splits: no track is ever in two splits."""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np


def _natural(track_id: Hashable):
  """Sort key: numbers in numeric order, then everything else as text."""
  if isinstance(track_id, (int, np.integer)):
    return (0, int(track_id), '')
  return (1, 0, str(track_id))


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
  ids = sorted(set(track_ids), key=_natural)
  if len(ids) != len(track_ids):
    raise ValueError('track_ids must be unique.')
  num_test = int(round(test_fraction * len(ids)))
  if test_fraction > 0 and len(ids) >= 2:
    num_test = min(max(num_test, 1), len(ids) - 1)
  order = np.random.default_rng(seed).permutation(len(ids))
  test = {ids[i] for i in order[:num_test]}
  return {'train': [t for t in ids if t not in test], 'test': [t for t in ids if t in test]}


def split_by_group(track_ids: Sequence[Hashable], groups: Sequence[Hashable],
                   test_fraction: float, seed: int,
                   test_groups: Sequence[Hashable] | None = None
                   ) -> dict[str, list[Hashable]]:
  """Holds out whole groups (e.g. styles): every track of a test group is in 'test'.

  Args:
    track_ids: unique track identifiers.
    groups: the group of each track (same order).
    test_fraction: share of *groups* held out when test_groups is None (at least one,
      and at least one group is left for training).
    seed: seed of the group choice.
    test_groups: the held-out groups, if chosen by hand.
  """
  if len(track_ids) != len(groups):
    raise ValueError('track_ids and groups must have the same length.')
  if test_groups is None:
    test_groups = split_tracks(sorted(set(groups), key=_natural), test_fraction,
                               seed)['test']
  unknown = set(test_groups) - set(groups)
  if unknown:
    raise ValueError(f'Held-out groups {sorted(unknown, key=_natural)} have no tracks.')
  if set(test_groups) >= set(groups):
    raise ValueError('Every group is held out; leave at least one for training.')
  held = set(test_groups)
  pairs = sorted(zip(track_ids, groups), key=lambda p: _natural(p[0]))
  return {'train': [t for t, g in pairs if g not in held],
          'test': [t for t, g in pairs if g in held]}


def split_segments_stratified(keys: Sequence[Hashable], strata: Sequence[Hashable],
                              test_fraction: float, seed: int
                              ) -> dict[str, list[Hashable]]:
  """The authors' segment-level split, stratified by class. LEAKY: one track's
  segments land in both splits, so test scores overstate generalisation to new music.

  Args:
    keys: unique segment keys, e.g. (track_id, segment_number).
    strata: the stratum of each key (e.g. the (valence > 0, arousal > 0) quadrant).
    test_fraction: share of each stratum held out, in [0, 1).
    seed: permutation seed.

  Returns:
    {'train': [...], 'test': [...]}, each sorted.
  """
  if not 0.0 <= test_fraction < 1.0:
    raise ValueError(f'test_fraction must be in [0, 1), got {test_fraction}.')
  if len(keys) != len(strata):
    raise ValueError('keys and strata must have the same length.')
  by_stratum: dict[Hashable, list[Hashable]] = {}
  for key, stratum in zip(keys, strata):
    by_stratum.setdefault(stratum, []).append(key)
  rng = np.random.default_rng(seed)
  test = set()
  for stratum in sorted(by_stratum, key=repr):
    members = sorted(by_stratum[stratum], key=repr)
    order = rng.permutation(len(members))
    test.update(members[i] for i in order[:int(round(test_fraction * len(members)))])
  ordered = sorted(keys, key=repr)
  return {'train': [k for k in ordered if k not in test],
          'test': [k for k in ordered if k in test]}
