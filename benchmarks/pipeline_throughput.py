r"""Is training input-bound? tf.data's delivery rate against the train step's appetite.

    python benchmarks/pipeline_throughput.py --config=configs/demo.py \
        [--config.dataset.data_dir=DIR] [--batches=100] [--steps=50]

Builds the config's records if they are missing (timed separately), then measures:
  * pipeline: examples/s that `pipeline.train_iterator` delivers, for the first
    `--batches` batches (records read from disk, cache filling) and for the next
    `--batches` (served from the in-memory cache when config.dataset.cache);
  * step: examples/s of the jitted train step of the same config on in-memory batches
    (benchmarks/train_throughput.py);
  * their ratio: >= 1 means the pipeline keeps up; the target is >= 5.
Both run on the same machine, one after the other. The last line is a JSON summary.
"""

import json
import time

from absl import app
from absl import flags

from benchmarks import train_throughput  # Defines --config and --steps.
from input_pipeline import pipeline

_CONFIG = train_throughput._CONFIG  # pylint: disable=protected-access
_STEPS = train_throughput._STEPS  # pylint: disable=protected-access
_BATCHES = flags.DEFINE_integer('batches', 100, 'Batches timed per phase.')


def _rate(iterator, batches: int, batch_size: int) -> float:
  start = time.perf_counter()
  for _ in range(batches):
    next(iterator)
  return batches * batch_size / (time.perf_counter() - start)


def main(argv):
  del argv
  config = _CONFIG.value
  start = time.perf_counter()
  builder = pipeline.prepare(config)
  prepare_s = time.perf_counter() - start
  train_examples = pipeline.num_examples(builder, 'train')

  start = time.perf_counter()
  iterator = pipeline.train_iterator(builder, config, seed=0)
  next(iterator)
  first_batch_s = time.perf_counter() - start
  cold = _rate(iterator, _BATCHES.value, config.batch_size)
  warm = _rate(iterator, _BATCHES.value, config.batch_size)
  step = train_throughput.measure(config, _STEPS.value)
  summary = {
      'config': config.dataset.name, 'train_examples': train_examples,
      'global_batch': config.batch_size, 'cache': bool(config.dataset.cache),
      'records_ready_s': round(prepare_s, 2), 'first_batch_s': round(first_batch_s, 2),
      'pipeline_examples_per_s_first': round(cold, 1),
      'pipeline_examples_per_s_next': round(warm, 1),
      'step_examples_per_s': step['examples_per_s'], 'step_ms': step['step_ms'],
      'device': step['device'], 'devices': step['devices'],
      'pipeline_over_step_first': round(cold / step['examples_per_s'], 2),
      'pipeline_over_step_next': round(warm / step['examples_per_s'], 2),
  }
  print(f"pipeline, first {_BATCHES.value} batches: {cold:10.1f} examples/s")
  print(f"pipeline, next {_BATCHES.value} batches:  {warm:10.1f} examples/s")
  print(f"train step:                  {step['examples_per_s']:10.1f} examples/s")
  print(json.dumps(summary))


if __name__ == '__main__':
  flags.mark_flags_as_required(['config'])
  app.run(main)
