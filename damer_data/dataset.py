"""What the trainer needs from a dataset, and an in-memory implementation of it.

The trainer never builds data itself: an entry point (main.py, ablation.py) creates a
`Dataset` and hands it to `train.train_and_evaluate`. `input_pipeline` implements it
over TFDS records (tf.data); `ArrayDataset` implements it over numpy arrays held in
memory (the generated benchmark, tests), with no TensorFlow anywhere.

Batches are numpy dicts shaped [local_devices, per_device_batch, ...]. A training
batch holds the labelled examples of the step followed, on every device, by the
examples of the unlabelled stream (config.pcl.unlabelled_batch_size > 0):

| key                      | per device | meaning                                      |
|--------------------------|------------|----------------------------------------------|
| mel, coch                | [b, F, T]  | the two views                                |
| valence, arousal         | [b]        | annotation (0.0 on unlabelled rows)          |
| valence_std, arousal_std | [b]        | raters' std of the annotation; < 0 = unknown |
| labelled                 | [b]        | 1 = annotated row, 0 = unlabelled stream     |
| index                    | [b]        | PCL table row: train i -> i, unlabelled j -> num_train + j |
| track_id, style_id, start_s | [b]     | as in the records                            |

Every stream is a pure function of (seed, step), so a resumed run reads exactly what an
uninterrupted one reads.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol, Sequence

import jax
import numpy as np

# Keys a training or evaluation batch carries to the devices.
MODEL_KEYS = ('mel', 'coch', 'valence', 'arousal', 'track_id', 'style_id', 'index',
              'start_s')
STD_KEYS = ('valence_std', 'arousal_std')
UNKNOWN_STD = -1.0  # 'valence_std' / 'arousal_std' value of an unknown spread.


class Dataset(Protocol):
  """The data a training run reads (see the module docstring for batch layouts)."""

  num_train: int  # Examples in the labelled training split.
  num_unlabelled: int  # Examples in the unlabelled pool (0: none).
  eval_splits: tuple[str, ...]  # Splits evaluated during training, in order.

  def train_batches(self, config: Any, *, seed: int, start_step: int
                    ) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches from step start_step + 1 on (labelled + unlabelled)."""

  def eval_batches(self, config: Any, split: str) -> Iterator[dict[str, np.ndarray]]:
    """Every example of `split` once, padded, with a float 'mask' (1 = real)."""


def per_device_batch_size(global_batch_size: int, what: str = 'config.batch_size'
                          ) -> tuple[int, int]:
  """(per-process, per-device) batch sizes; raises if the devices do not divide it."""
  processes, local_devices = jax.process_count(), jax.local_device_count()
  if global_batch_size % (processes * local_devices):
    raise ValueError(
        f'{what}={global_batch_size} must be divisible by the number of devices '
        f'({processes} processes x {local_devices} local devices); pick a multiple of '
        f'{processes * local_devices}.')
  per_process = global_batch_size // processes
  return per_process, per_process // local_devices


def stream_rows(num_rows: int, batch_size: int, seed: int, step: int) -> np.ndarray:
  """Rows [batch_size] of step `step` (1-based) of an endless shuffled stream.

  Epoch e is a permutation of range(num_rows) seeded by (seed, e); batches run across
  epoch boundaries. A pure function of its arguments.
  """
  first = (step - 1) * batch_size
  positions = np.arange(first, first + batch_size, dtype=np.int64)
  epochs, offsets = np.divmod(positions, num_rows)
  rows = np.empty(batch_size, np.int64)
  for epoch in np.unique(epochs):
    order = np.random.default_rng([seed, int(epoch)]).permutation(num_rows)
    at = epochs == epoch
    rows[at] = order[offsets[at]]
  return rows


def to_devices(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """[per_process, ...] -> [local_devices, per_device, ...] (contiguous per device)."""
  devices = jax.local_device_count()
  return {k: v.reshape((devices, v.shape[0] // devices) + v.shape[1:])
          for k, v in batch.items()}


def labelled_part(batch: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A labelled batch [..., n] with 'labelled' = 1 and std fields (unknown if absent).

  Works on flat [n, ...] and device-shaped [devices, n, ...] batches alike.
  """
  n = np.shape(batch['index'])
  out = {k: batch[k] for k in MODEL_KEYS}
  for key in STD_KEYS:
    std = batch.get(key)
    out[key] = (np.full(n, UNKNOWN_STD, np.float32) if std is None else
                np.where(np.isfinite(std), std, UNKNOWN_STD).astype(np.float32))
  out['labelled'] = np.ones(n, np.float32)
  return out


def unlabelled_part(batch: Mapping[str, np.ndarray], num_train: int
                    ) -> dict[str, np.ndarray]:
  """An unlabelled batch: labels 0, std unknown, 'labelled' 0, rows offset by num_train.

  Works on flat [n, ...] and device-shaped [devices, n, ...] batches alike.
  """
  n = np.shape(batch['index'])
  out = {k: batch[k] for k in MODEL_KEYS}
  for key in ('valence', 'arousal'):
    out[key] = np.zeros(n, np.float32)
  for key in STD_KEYS:
    out[key] = np.full(n, UNKNOWN_STD, np.float32)
  out['index'] = np.asarray(batch['index'], np.int64) + num_train
  out['labelled'] = np.zeros(n, np.float32)
  return out


def merge_streams(labelled: Mapping[str, np.ndarray],
                  unlabelled: Mapping[str, np.ndarray] | None) -> dict[str, np.ndarray]:
  """Per device: the labelled rows, then the unlabelled rows ([devices, b_l + b_u, ...]).

  Both inputs are already [local_devices, per_device, ...]; dtypes follow `labelled`.
  """
  if unlabelled is None:
    return dict(labelled)
  return {k: np.concatenate([v, unlabelled[k].astype(v.dtype)], axis=1)
          for k, v in labelled.items()}


def pad_to(batch: Mapping[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
  """`batch` [n, ...] zero-padded to [batch_size, ...], with 'mask' (1 = real row)."""
  real = len(next(iter(batch.values())))
  mask = np.zeros(batch_size, np.float32)
  mask[:real] = 1.0
  padded = {k: np.concatenate([v, np.zeros((batch_size - real,) + v.shape[1:], v.dtype)])
            for k, v in batch.items()}
  padded['mask'] = mask
  return padded


def pad_batches(arrays: Mapping[str, np.ndarray], batch_size: int
                ) -> Iterator[dict[str, np.ndarray]]:
  """Every row once in batches [batch_size, ...], the last padded; 'mask' 1 = real."""
  n = len(next(iter(arrays.values())))
  for start in range(0, n, batch_size):
    yield pad_to({k: v[start:start + batch_size] for k, v in arrays.items()}, batch_size)


class ArrayDataset:
  """A `Dataset` over numpy arrays in memory (one process: multi-host uses TFDS).

  Args:
    splits: split name -> field -> array [N, ...] with at least MODEL_KEYS (std keys
      optional; labels of the unlabelled split are ignored).
    eval_splits: splits to evaluate, in order.
    train_split: the labelled training split.
    unlabelled_split: the unlabelled pool, or None.
  """

  def __init__(self, splits: Mapping[str, Mapping[str, np.ndarray]],
               eval_splits: Sequence[str] = ('test',), train_split: str = 'train',
               unlabelled_split: str | None = None):
    missing = [s for s in (train_split, *eval_splits, unlabelled_split)
               if s is not None and s not in splits]
    if missing:
      raise ValueError(f'ArrayDataset: no split(s) {missing}; have {sorted(splits)}.')
    self.splits = splits
    self.train_split, self.unlabelled_split = train_split, unlabelled_split
    self.eval_splits = tuple(eval_splits)
    self.num_train = len(splits[train_split]['mel'])
    self.num_unlabelled = (len(splits[unlabelled_split]['mel'])
                           if unlabelled_split else 0)
    if self.num_train == 0:
      raise ValueError(f'ArrayDataset: the {train_split!r} split is empty.')

  def _fields(self, split: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    arrays = self.splits[split]
    return {k: arrays[k][rows] for k in (*MODEL_KEYS, *STD_KEYS) if k in arrays}

  def train_rows(self, config: Any, seed: int, step: int
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """(train rows [batch_size], unlabelled rows [unlabelled_batch_size] or None)."""
    rows = stream_rows(self.num_train, config.batch_size, seed, step)
    u_size = unlabelled_batch_size(config)
    if not u_size:
      return rows, None
    if not self.num_unlabelled:
      raise ValueError('config.pcl.unlabelled_batch_size > 0 but the dataset has no '
                       'unlabelled split; set it to 0.')
    return rows, stream_rows(self.num_unlabelled, u_size, seed + 7_919, step)

  def train_batches(self, config: Any, *, seed: int, start_step: int = 0
                    ) -> Iterator[dict[str, np.ndarray]]:
    per_device_batch_size(config.batch_size)
    per_device_batch_size(unlabelled_batch_size(config) or jax.local_device_count(),
                          'config.pcl.unlabelled_batch_size')
    step = start_step
    while True:
      step += 1
      rows, u_rows = self.train_rows(config, seed, step)
      labelled = to_devices(labelled_part(self._fields(self.train_split, rows)))
      unlabelled = None if u_rows is None else to_devices(unlabelled_part(
          self._fields(self.unlabelled_split, u_rows), self.num_train))
      yield merge_streams(labelled, unlabelled)

  def eval_batches(self, config: Any, split: str) -> Iterator[dict[str, np.ndarray]]:
    per_process, _ = per_device_batch_size(config.eval_batch_size,
                                           'config.eval_batch_size')
    arrays = {k: v for k, v in self.splits[split].items() if k in MODEL_KEYS}
    for batch in pad_batches(arrays, per_process):
      yield to_devices(batch)


def unlabelled_batch_size(config: Any) -> int:
  """Examples of the unlabelled stream per step (0 unless PCL is on and asks for it)."""
  if not config.pcl.enabled:
    return 0
  return int(config.pcl.get('unlabelled_batch_size', 0))
