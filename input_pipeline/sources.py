"""The dataset a run reads, made from its config: the one place entry points ask.

`create_dataset(config)` returns a `damer_data.dataset.Dataset`:

* `va_benchmark`: the generated benchmark (input_pipeline/va_benchmark.py), held in
  memory as numpy arrays, with no TensorFlow anywhere (it runs on machines that have
  only JAX); evaluated on 'validation', 'test_track' and 'test_chain'.
* every other name: TFDS records built by the dataset's builder and read by tf.data
  (input_pipeline/pipeline.py), evaluated on 'test'.
"""

from __future__ import annotations

import os
import time
from typing import Any

from absl import logging

from damer_data import dataset as data_lib

IN_MEMORY = ('va_benchmark',)  # Datasets generated into memory (no TensorFlow).
BENCHMARK_EVAL_SPLITS = ('validation', 'test_track', 'test_chain')


def benchmark_cache_dir(config: Any) -> str:
  """Where the generated benchmark's arrays are cached (config.dataset.data_dir or
  ~/.cache/damer_jax)."""
  return config.dataset.data_dir or os.path.join(os.path.expanduser('~'), '.cache',
                                                   'damer_jax')


def load_benchmark(config: Any) -> dict[str, dict[str, Any]]:
  """The benchmark's split arrays for `config` (generated once, then cached)."""
  from damer_audio import features  # pylint: disable=g-import-not-at-top
  from input_pipeline import va_benchmark  # pylint: disable=g-import-not-at-top
  spec = va_benchmark.BenchmarkSpec.from_config(config.dataset)
  return va_benchmark.generate(spec, features.FeatureSpec.from_config(config.features),
                               num_workers=config.dataset.get('num_workers', 0),
                               cache_dir=benchmark_cache_dir(config))


def create_dataset(config: Any) -> data_lib.Dataset:
  """The dataset named by config.dataset.name, ready to hand to the trainer."""
  start = time.monotonic()
  if config.dataset.name in IN_MEMORY:
    data = data_lib.ArrayDataset(load_benchmark(config), eval_splits=BENCHMARK_EVAL_SPLITS,
                                 unlabelled_split='unlabelled')
  else:
    from input_pipeline import pipeline  # pylint: disable=g-import-not-at-top  # TensorFlow.
    data = pipeline.create_dataset(config)
  logging.info('Data %s ready in %.1f s.', config.dataset.name, time.monotonic() - start)
  return data
