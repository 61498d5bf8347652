"""The trainer's data interface: in-memory streams, the unlabelled stream, eval batches."""

import numpy as np
import pytest

from damer_data import dataset as data_lib
from tests.conftest import tiny_config


def fake_split(n, num_tracks, seed, labelled=True, n_mels=128, n_coch=84, frames=87):
  """Random arrays in the layout of a split (labels NaN when not labelled)."""
  rng = np.random.default_rng(seed)
  label = lambda: (rng.uniform(-1, 1, n) if labelled else np.full(n, np.nan)).astype(
      np.float32)
  return {'mel': rng.normal(size=(n, n_mels, frames)).astype(np.float32),
          'coch': rng.normal(size=(n, n_coch, frames)).astype(np.float32),
          'valence': label(), 'arousal': label(),
          'valence_std': rng.uniform(0.0, 0.4, n).astype(np.float32),
          'arousal_std': rng.uniform(0.0, 0.4, n).astype(np.float32),
          'track_id': (np.arange(n) % num_tracks).astype(np.int32),
          'style_id': np.zeros(n, np.int32), 'start_s': np.zeros(n, np.float32),
          'index': np.arange(n, dtype=np.int32)}


def fake_dataset(num_train=40, num_unlabelled=24, num_test=12):
  splits = {'train': fake_split(num_train, 10, 0),
            'unlabelled': fake_split(num_unlabelled, 6, 1, labelled=False),
            'test': fake_split(num_test, 3, 2)}
  return data_lib.ArrayDataset(splits, eval_splits=('test',), unlabelled_split='unlabelled')


def test_stream_rows_visit_every_row_once_per_epoch_and_are_pure():
  rows = np.concatenate([data_lib.stream_rows(10, 4, seed=3, step=s) for s in (1, 2, 3, 4, 5)])
  assert sorted(rows[:10]) == list(range(10)) and sorted(rows[10:20]) == list(range(10))
  np.testing.assert_array_equal(data_lib.stream_rows(10, 4, 3, 4), rows[12:16])
  assert not np.array_equal(data_lib.stream_rows(10, 4, 4, 1), rows[:4])


def test_train_batches_resume_exactly_and_merge_the_unlabelled_stream():
  data = fake_dataset()
  config = tiny_config(batch_size=8, pcl__unlabelled_batch_size=4)
  whole = data.train_batches(config, seed=5)
  batches = [next(whole) for _ in range(6)]
  resumed = next(data.train_batches(config, seed=5, start_step=4))
  for key in batches[4]:
    np.testing.assert_array_equal(resumed[key], batches[4][key])
  batch = batches[0]
  devices, per_device = batch['labelled'].shape
  assert (devices, per_device) == (2, 4 + 2)  # Two host devices: 4 labelled + 2 unlabelled.
  np.testing.assert_array_equal(batch['labelled'], [[1, 1, 1, 1, 0, 0]] * 2)
  unlabelled = batch['labelled'] == 0
  assert (batch['index'][unlabelled] >= data.num_train).all()
  assert (batch['index'][~unlabelled] < data.num_train).all()
  assert np.isfinite(batch['valence']).all() and (batch['valence'][unlabelled] == 0).all()
  assert (batch['valence_std'][unlabelled] == data_lib.UNKNOWN_STD).all()
  # The unlabelled rows are the pool's rows (offset), with their audio.
  pool = data.splits['unlabelled']
  row = batch['index'][0, 4] - data.num_train
  np.testing.assert_array_equal(batch['mel'][0, 4], pool['mel'][row])


def test_no_unlabelled_stream_without_pcl_or_a_pool():
  data = fake_dataset()
  batch = next(data.train_batches(tiny_config(batch_size=8, pcl__enabled=False,
                                              pcl__unlabelled_batch_size=4), seed=0))
  assert batch['labelled'].shape == (2, 4) and (batch['labelled'] == 1).all()
  no_pool = data_lib.ArrayDataset({'train': fake_split(8, 2, 0), 'test': fake_split(4, 1, 1)})
  with pytest.raises(ValueError, match='no unlabelled split'):
    next(no_pool.train_batches(tiny_config(batch_size=8, pcl__unlabelled_batch_size=4),
                               seed=0))


def test_eval_batches_cover_every_row_once_with_a_mask():
  data = fake_dataset(num_test=13)
  batches = list(data.eval_batches(tiny_config(eval_batch_size=8), 'test'))
  mask = np.concatenate([b['mask'].reshape(-1) for b in batches])
  index = np.concatenate([b['index'].reshape(-1) for b in batches])[mask > 0]
  np.testing.assert_array_equal(index, np.arange(13))


def test_bad_sizes_fail_naming_the_field():
  data = fake_dataset()
  with pytest.raises(ValueError, match='config.pcl.unlabelled_batch_size=3'):
    next(data.train_batches(tiny_config(batch_size=8, pcl__unlabelled_batch_size=3),
                            seed=0))
  with pytest.raises(ValueError, match='no split'):
    data_lib.ArrayDataset({'train': fake_split(4, 1, 0)}, eval_splits=('test',))
