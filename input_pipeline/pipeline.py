"""tf.data readers: per-process shard, seeded shuffle, batch, reshape for the devices.

Batches come out as numpy dicts shaped [num_local_devices, per_device_batch, ...], the
layout `jax.pmap` takes. TensorFlow is kept off the GPU/TPU.
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from damer_audio import features as features_lib
from damer_data import dataset as data_lib  # TF-free: the trainer's Dataset interface.
from damer_data import hosts  # TF-free: cross-process helpers.

tf.config.set_visible_devices([], 'GPU')  # TensorFlow never takes an accelerator.

# Real datasets read from a manual download (config.dataset.manual_dir).
MANUAL_DATASETS = ('memo2496', 'pmemo', 'emomusic')

MODEL_KEYS = data_lib.MODEL_KEYS  # What a batch carries to the devices.
PREFETCH_BATCHES = 2  # Batches prepared ahead of the training step.


def get_builder(config: Any) -> tfds.core.DatasetBuilder:
  """The TFDS builder named by `config.dataset.name`, configured by `config`."""
  name = config.dataset.name
  spec = features_lib.FeatureSpec.from_config(config.features)
  data_dir = config.dataset.data_dir or None
  if name == 'synthetic_va':
    from input_pipeline.datasets.synthetic_va import synthetic_va_dataset_builder as sv
    builder_config = sv.make_config(
        num_tracks=config.dataset.num_tracks, track_seconds=config.dataset.track_seconds,
        generator_seed=config.dataset.generator_seed,
        test_fraction=config.dataset.test_fraction, split_seed=config.dataset.split_seed,
        feature_spec=spec, split_by=config.dataset.split_by,
        test_styles=sv.parse_styles(config.dataset.test_styles))
    if builder_config.name in sv.Builder.builder_configs:  # TFDS wants the registered one.
      builder_config = builder_config.name
    return sv.Builder(config=builder_config, data_dir=data_dir,
                      num_workers=config.dataset.get('num_workers', 1))
  if name in MANUAL_DATASETS:
    import importlib  # pylint: disable=g-import-not-at-top
    from input_pipeline import manual_builder  # pylint: disable=g-import-not-at-top
    module = importlib.import_module(
        f'input_pipeline.datasets.{name}.{name}_dataset_builder')
    builder_config = manual_builder.config_from(config.dataset, config.features, module)
    if builder_config.name in module.Builder.builder_configs:  # The registered one.
      builder_config = builder_config.name
    return module.Builder(config=builder_config, data_dir=data_dir,
                          num_workers=config.dataset.get('num_workers', 0))
  raise ValueError(f'Unknown config.dataset.name={name!r}. Available: synthetic_va, '
                   f'{", ".join(MANUAL_DATASETS)}.')


def prepare(config: Any) -> tfds.core.DatasetBuilder:
  """Returns the builder with its records written (built now if they are missing)."""
  builder = get_builder(config)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(
          manual_dir=config.dataset.get('manual_dir') or None))
  return builder


def _select(example):
  return {k: example[k] for k in MODEL_KEYS}


def _without_autotune(ds: tf.data.Dataset) -> tf.data.Dataset:
  """`ds` without tf.data's autotuning thread, so that dropping its iterator is instant.

  With autotuning, an iterator owns a thread that re-tunes the pipeline at periods
  doubling up to 60 s, and destroying the iterator waits for that thread: a run that
  dropped its training stream waited up to a minute before it could exit. These
  pipelines are light (decode once, then cache, shuffle and batch in memory), so the
  default parallelism (the CPU count) and a fixed prefetch do as well.
  """
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.with_options(options)


def train_iterator(builder: tfds.core.DatasetBuilder, config: Any, *, seed: int,
                   start_step: int = 0, split: str = 'train', batch_size: int = 0
                   ) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of `split` [local_devices, per_device_batch, ...].

  `batch_size` is the global batch (0: config.batch_size).

  The stream is a pure function of (`seed`, position), so a run resumed at
  `start_step` reads exactly the batches an uninterrupted run reads from there on:

  * each process reads its own shard of the 'train' split, in the records' order
    (TFDS writes examples in a hashed, track-mixing order);
  * epoch e is that shard shuffled through a buffer of `config.dataset.shuffle_buffer`
    with seed (seed, e); epochs follow each other and batches run across their
    boundaries;
  * resuming skips to epoch start_step * batch // n and then the remainder within it,
    so the cost of a resume is reading at most one epoch, not the whole history.
  """
  per_process, per_device = data_lib.per_device_batch_size(
      batch_size or config.batch_size,
      'config.pcl.unlabelled_batch_size' if batch_size else 'config.batch_size')
  base = builder.as_dataset(split=tfds.split_for_jax_process(split, drop_remainder=True),
                            shuffle_files=False)
  base = base.map(_select, num_parallel_calls=tf.data.AUTOTUNE)
  if config.dataset.cache:
    base = base.cache()
  n = int(base.cardinality())
  if n <= 0:
    n = sum(1 for _ in base)  # Unknown cardinality: count once.
  if n == 0:
    raise ValueError(f'The {split} split of {builder.name} is empty on process '
                     f'{jax.process_index()}; rebuild the records or add data.')
  first_epoch, offset = divmod(start_step * per_process, n)
  buffer = config.dataset.shuffle_buffer

  def epoch(e):
    epoch_seed = tf.cast(seed, tf.int64) * 1_000_003 + e
    return base.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)

  ds = tf.data.Dataset.range(first_epoch, 2 ** 62).flat_map(epoch).skip(offset)
  ds = ds.batch(per_process, drop_remainder=True)
  local_devices = jax.local_device_count()
  ds = ds.map(lambda b: {k: tf.reshape(v, (local_devices, per_device) + tuple(v.shape[1:]))
                         for k, v in b.items()})
  ds = _without_autotune(ds.prefetch(PREFETCH_BATCHES))
  return ds.as_numpy_iterator()


def eval_batches(builder: tfds.core.DatasetBuilder, config: Any, split: str = 'test'
                 ) -> Iterator[dict[str, np.ndarray]]:
  """Every example of `split` once, in order, as [local_devices, per_device, ...].

  Each process reads its own part of the split. The last batch is padded with zeros and
  `mask` (float32) is 1 for real examples; a process with fewer batches than another
  adds all-padding batches, so that every process runs the same number of steps.
  """
  per_process, per_device = data_lib.per_device_batch_size(config.eval_batch_size,
                                                           'config.eval_batch_size')
  ds = builder.as_dataset(split=tfds.split_for_jax_process(split), shuffle_files=False)
  ds = ds.map(_select, num_parallel_calls=tf.data.AUTOTUNE)
  local = int(ds.cardinality())
  if local < 0:
    local = sum(1 for _ in ds)
  total_batches = hosts.max_over_processes(-(-local // per_process))
  ds = _without_autotune(ds.batch(per_process).prefetch(PREFETCH_BATCHES))
  local_devices = jax.local_device_count()
  shapes = {k: (v.shape, v.dtype.as_numpy_dtype) for k, v in ds.element_spec.items()}
  batches = ds.as_numpy_iterator()
  for _ in range(total_batches):
    batch = next(batches, None)
    if batch is None:  # This process ran out first: a batch of padding only.
      batch = {k: np.zeros((0,) + tuple(shape[1:]), dtype) for k, (shape, dtype)
               in shapes.items()}
    batch = data_lib.pad_to(batch, per_process)
    yield {k: v.reshape((local_devices, per_device) + v.shape[1:]) for k, v in batch.items()}


def num_examples(builder: tfds.core.DatasetBuilder, split: str) -> int:
  return builder.info.splits[split].num_examples


class TfdsDataset:
  """The trainer's `damer_data.dataset.Dataset` over a prepared TFDS builder.

  With config.pcl.unlabelled_batch_size > 0 the builder's 'unlabelled' split (real
  datasets built with config.dataset.unlabelled='split') is a second stream, merged
  into every training batch after the labelled rows (damer_data/dataset.py).
  """

  eval_splits = ('test',)

  def __init__(self, builder: tfds.core.DatasetBuilder, config: Any):
    self.builder = builder
    self.num_train = num_examples(builder, 'train')
    self.num_unlabelled = 0
    if data_lib.unlabelled_batch_size(config):
      if 'unlabelled' not in builder.info.splits:
        raise ValueError(
            f'config.pcl.unlabelled_batch_size={config.pcl.unlabelled_batch_size} but '
            f'{builder.name} has no unlabelled split: build it with '
            "--config.dataset.unlabelled=split (real datasets), or set "
            'config.pcl.unlabelled_batch_size=0.')
      self.num_unlabelled = num_examples(builder, 'unlabelled')

  def train_batches(self, config: Any, *, seed: int, start_step: int = 0
                    ) -> Iterator[dict[str, np.ndarray]]:
    labelled = train_iterator(self.builder, config, seed=seed, start_step=start_step)
    u_size = data_lib.unlabelled_batch_size(config)
    unlabelled = (train_iterator(self.builder, config, seed=seed + 7_919,
                                 start_step=start_step, split='unlabelled',
                                 batch_size=u_size) if u_size else None)
    for batch in labelled:
      batch = data_lib.labelled_part(batch)
      if unlabelled is not None:
        batch = data_lib.merge_streams(
            batch, data_lib.unlabelled_part(next(unlabelled), self.num_train))
      yield batch

  def eval_batches(self, config: Any, split: str) -> Iterator[dict[str, np.ndarray]]:
    return eval_batches(self.builder, config, split)


def create_dataset(config: Any) -> TfdsDataset:
  """Prepares the records of config.dataset (building them if missing) and wraps them."""
  builder = prepare(config)
  return TfdsDataset(builder, config)
