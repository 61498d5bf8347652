r"""Generates (or loads from its cache) the va_benchmark and prints its description.

    python benchmarks/make_benchmark.py --config=configs/benchmark.py \
        [--config.dataset.data_dir=DIR] [--config.dataset.num_workers=16]

Writes the arrays to the cache that training and ablation.py read
(config.dataset.data_dir, default ~/.cache/damer_jax), then prints the generation time
and `va_benchmark.describe()` (counts, label-noise rates, ceilings, standard errors);
the last line is a JSON summary.
"""

import json
import time

from absl import app
from ml_collections import config_flags

from input_pipeline import sources
from input_pipeline import va_benchmark

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Benchmark config file.')


def main(argv):
  del argv
  config = _CONFIG.value
  if config is None:
    raise app.UsageError('--config=configs/benchmark.py is required.')
  start = time.monotonic()
  data = sources.load_benchmark(config)
  summary = {'seconds': round(time.monotonic() - start, 1),
             'cache_dir': sources.benchmark_cache_dir(config),
             **va_benchmark.describe(data)}
  print(json.dumps(summary, default=float))


if __name__ == '__main__':
  app.run(main)
