"""A run ends when its work ends: dropping a started input stream is immediate.

tf.data's autotuning gave every iterator a thread that slept for periods growing to
60 s, and destroying the iterator waited for it: the demo sat 35-60 s after its last
checkpoint (issue 12). The bound below is a generous one on a hang, not a timing.
"""

import gc
import time

import numpy as np
import pytest

from tests.conftest import tiny_config

pytest.importorskip('tensorflow_datasets')

DROP_LIMIT_S = 10.0


def _read_for(stream, seconds: float) -> int:
  """Reads batches like a training loop (a pause per step) for `seconds`; returns count."""
  count, end = 0, time.monotonic() + seconds
  while time.monotonic() < end:
    batch = next(stream)
    assert np.all(np.isfinite(batch['mel']))
    count += 1
    time.sleep(0.05)
  return count


def _seconds_to(drop) -> float:
  start = time.monotonic()
  drop()
  gc.collect()
  return time.monotonic() - start


@pytest.fixture(scope='module')
def dataset(data_dir):
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  config = tiny_config(dataset__data_dir=data_dir)
  return config, pipeline.create_dataset(config)


def test_closing_the_training_stream_is_immediate(dataset):
  config, data = dataset
  stream = data.train_batches(config, seed=0, start_step=0)
  assert _read_for(stream, 4.0) > 4  # Several epochs of the 16 train examples.
  assert _seconds_to(stream.close) < DROP_LIMIT_S
  with pytest.raises(StopIteration):
    next(stream)


def test_deleting_a_resumed_stream_and_an_unfinished_evaluation_is_immediate(dataset):
  from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top
  config, data = dataset
  streams = {'train': pipeline.train_iterator(data.builder, config, seed=1, start_step=5),
             'eval': data.eval_batches(config, 'test')}
  _read_for(streams['train'], 2.0)
  next(streams['eval'])  # Started, never finished.
  assert _seconds_to(streams.clear) < DROP_LIMIT_S
